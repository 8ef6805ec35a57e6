package wal

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// A tidwall upgrade that renames or retypes the fields presizeTail relies on
// turns presizing off (safely); this makes that loss visible. What tidwall
// does with the fields is not checked at run time: presizeTail was written
// against v1.2.1, so another version must be read again (does anything else
// alias ebuf or epos?) before this test is updated.
func TestTidwallLayoutFound(t *testing.T) {
	if twLayoutErr != nil {
		t.Fatalf("tail buffers are not presized: %v", twLayoutErr)
	}
	if twBatchErr != nil {
		t.Fatalf("batches are copied into tidwall's Batch: %v", twBatchErr)
	}
	// Test binaries carry no module list: read go.mod.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var version string
	for _, line := range strings.Split(string(gomod), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "github.com/tidwall/wal" {
			version = f[1]
		}
		if strings.Contains(line, "github.com/tidwall/wal") && strings.Contains(line, "=>") {
			t.Fatalf("go.mod replaces tidwall/wal (%s): check presizeTail against it", strings.TrimSpace(line))
		}
	}
	if version != "v1.2.1" {
		t.Fatalf("go.mod requires tidwall/wal %q: check presizeTail against it", version)
	}
}

// tidwall's tail buffers get a whole segment's room when the segment starts
// (at a rotation and at open), so they are never reallocated while it fills,
// and every record reads back as written, including those the rotating
// batch put in the new tail before its buffers were replaced.
func TestTailBuffersPresized(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncPeriodic} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Sync: mode, SegmentBytes: 64 << 10, MaxRecordBytes: 4 << 10}
			l := openT(t, dir, opts)
			type bufs struct {
				seg        uint64
				ebuf, epos unsafe.Pointer
				ecap       int
			}
			look := func() bufs {
				l.tlMu.Lock()
				defer l.tlMu.Unlock()
				ebuf, epos := tidwallTail(l.tl)
				return bufs{l.w.segs.tail().First, unsafe.Pointer(unsafe.SliceData(*ebuf)), unsafe.Pointer(unsafe.SliceData(*epos)), cap(*ebuf)}
			}
			want := int(opts.SegmentBytes) + opts.MaxRecordBytes + 10 // under an eighth of a segment
			var seq uint64
			appendSome := func(n int) {
				batch := make([]Record, n)
				for i := range batch {
					v := make([]byte, 900)
					binary.BigEndian.PutUint64(v, seq+uint64(i))
					batch[i] = Record{Topic: "t", Value: v}
				}
				if _, err := l.Append(bg, batch); err != nil {
					t.Fatal(err)
				}
				seq += uint64(n)
			}
			prev := look()
			segsSeen := 0
			for i := 0; i < 200; i++ {
				appendSome(1 + i%13) // batches straddle rotations
				cur := look()
				if cur.ecap < want {
					t.Fatalf("tail segment %d: buffer capacity %d, want at least %d", cur.seg, cur.ecap, want)
				}
				// The first segment's positions have no sealed segment to be
				// sized by (the log opened empty); its bytes are presized.
				if cur.seg == prev.seg && (cur.ebuf != prev.ebuf || cur.epos != prev.epos && segsSeen > 0) {
					t.Fatalf("tail segment %d: buffers reallocated while it filled", cur.seg)
				}
				if cur.seg != prev.seg {
					segsSeen++
				}
				prev = cur
			}
			if segsSeen < 10 {
				t.Fatalf("only %d rotations", segsSeen)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openT(t, dir, opts)
			defer l.Close()
			reopened := look()
			appendSome(3)
			if after := look(); after.ebuf != reopened.ebuf || after.epos != reopened.epos || after.ecap < want {
				t.Fatal("tail buffers not presized at open")
			}
			got, err := l.Read(1, make([]Entry, 0, seq+1), 1<<30)
			if err != nil || uint64(len(got)) != seq {
				t.Fatalf("read %d of %d records: %v", len(got), seq, err)
			}
			for i, e := range got {
				if n := binary.BigEndian.Uint64(e.Record.Value); n != uint64(i) {
					t.Fatalf("record %d holds %d", i+1, n)
				}
			}
		})
	}
}
