package recovery

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/kafkawal/kafkawal/wal"
)

// FuzzRepair puts arbitrary bytes in place of the last segment (sealed
// false) or of a sealed one (sealed true). Scan and Repair must not panic;
// a Repair that fails changes nothing; after a Repair that succeeds, wal
// opens the log and reads every entry, every record outside the fuzzed
// segment at its own sequence, and a second Repair finds nothing to do.
//
// An execution writes real files and fsyncs them, so keep minimization
// short:
//
//	go test -run '^$' -fuzz FuzzRepair -fuzzminimizetime 20x ./recovery/
func FuzzRepair(f *testing.F) {
	tmpl := templateLog(f)
	segs, err := wal.ListSegments(tmpl)
	if err != nil {
		f.Fatal(err)
	}
	last, err := os.ReadFile(segs[len(segs)-1].Path)
	if err != nil {
		f.Fatal(err)
	}
	sealed, err := os.ReadFile(segs[1].Path)
	if err != nil {
		f.Fatal(err)
	}
	// Short seeds keep minimization quick: a few records, then the rest of
	// the segment is missing, which is damage too in a sealed segment.
	last, sealed = last[:1500], sealed[:1500]
	for _, s := range []bool{false, true} {
		seg := last
		if s {
			seg = sealed
		}
		f.Add(seg, s)
		f.Add(seg[:len(seg)-7], s)
		f.Add(append(bytes.Clone(seg), make([]byte, 16)...), s)
		flipped := bytes.Clone(seg)
		flipped[len(flipped)/2] ^= 0x20
		f.Add(flipped, s)
		f.Add([]byte{}, s)
		f.Add(make([]byte, 64), s)
		f.Add(append([]byte{byte(len(hole))}, hole...), s)
	}
	f.Fuzz(func(t *testing.T, data []byte, sealed bool) {
		dir := t.TempDir()
		copyTree(t, tmpl, dir)
		segs, err := wal.ListSegments(dir)
		if err != nil {
			t.Fatal(err)
		}
		target := len(segs) - 1
		if sealed {
			target = 1
		}
		writeFile(t, segs[target].Path, data)

		if _, err := Scan(dir, ScanOptions{}); err != nil && !errors.Is(err, wal.ErrCorrupt) {
			t.Fatalf("Scan: %v", err)
		}
		for _, p := range []Policy{FailOnCorruption, QuarantineCorruption} {
			before := snapshot(t, dir)
			_, err := Repair(dir, Options{Policy: p, FullScan: sealed})
			if err != nil {
				var ce *CorruptionError
				if !errors.As(err, &ce) || !errors.Is(err, wal.ErrCorrupt) {
					t.Fatalf("%v: Repair: %v, want a *CorruptionError", p, err)
				}
				sameFiles(t, snapshot(t, dir), before)
				continue
			}
			entries, err := readBack(t, dir, walOpts)
			if err != nil {
				t.Fatalf("%v: wal after a successful Repair: %v", p, err)
			}
			for i, e := range entries {
				if e.Seq != uint64(i+1) {
					t.Fatalf("entry %d has seq %d", i, e.Seq)
				}
				inTarget := e.Seq >= segs[target].First && (target+1 == len(segs) || e.Seq < segs[target+1].First)
				if !inTarget {
					sameRecord(t, e.Seq, e.Record, testRecord(i))
				}
			}
			if want := segs[len(segs)-1].First - 1; !sealed && uint64(len(entries)) < want {
				t.Fatalf("%d entries after repair of the last segment, want at least %d", len(entries), want)
			}
			if sealed && len(entries) != templateRecords {
				t.Fatalf("%d entries after repair of a sealed segment, want %d", len(entries), templateRecords)
			}
			assertClean(t, dir)
			return
		}
	})
}

// FuzzCheckSegment drives the scanner and the rebuild in memory, fast: the
// damaged ranges it finds are ordered and in bounds, the bytes between them
// are intact entries, and rebuilding a repairable segment yields one that
// checks clean and holds exactly the entries its numbering needs.
func FuzzCheckSegment(f *testing.F) {
	tmpl := templateLog(f)
	segs, err := wal.ListSegments(tmpl)
	if err != nil {
		f.Fatal(err)
	}
	seg, err := os.ReadFile(segs[1].Path)
	if err != nil {
		f.Fatal(err)
	}
	n := uint16(segs[2].First - segs[1].First)
	f.Add(seg, n)
	f.Add(seg, uint16(0))
	f.Add(seg[:len(seg)-3], n)
	f.Add(append(bytes.Clone(seg[:900]), make([]byte, 40)...), uint16(9))
	f.Add([]byte{5, 0x80, 0x80}, uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, expected uint16) {
		const first = 1000
		var next uint64 // expected 0: the last segment
		if expected > 0 {
			next = first + uint64(expected)
		}
		s := wal.SegmentFile{Path: "seg", First: first, Bytes: int64(len(data))}
		c := checkSegment(s, data, next, watermark{})
		var at, intact int64
		for _, sp := range c.spans {
			if sp.off < at || sp.end < sp.off || sp.end > int64(len(data)) {
				t.Fatalf("span [%d,%d) out of order or bounds (after %d, size %d)", sp.off, sp.end, at, len(data))
			}
			intact += countIntact(t, data[at:sp.off])
			at = sp.end
		}
		intact += countIntact(t, data[at:])
		if intact != c.records+c.holes {
			t.Fatalf("%d intact entries between spans, check counted %d", intact, c.records+c.holes)
		}
		if c.fatal != nil {
			return
		}
		out := rebuild(data, c)
		again := checkSegment(s, out, next, watermark{})
		if len(again.spans) > 0 || again.fatal != nil {
			t.Fatalf("rebuilt segment still damaged: %v", again.damage())
		}
		want := int64(expected)
		if next == 0 {
			want = int64(c.lastSeq() + 1 - first)
		}
		if got := again.records + again.holes; got != want {
			t.Fatalf("rebuilt segment holds %d entries, want %d", got, want)
		}
	})
}

// countIntact parses b, which must be a run of intact entries.
func countIntact(t *testing.T, b []byte) int64 {
	var n int64
	sr := wal.NewSegmentBytesReader(b)
	for ; sr.Next(); n++ {
		if !intact(sr.Entry()) {
			t.Fatalf("entry at %d between damaged ranges is not intact", sr.Offset())
		}
	}
	if err := sr.Err(); err != nil {
		t.Fatalf("bytes between damaged ranges do not parse: %v", err)
	}
	return n
}
