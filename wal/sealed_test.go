package wal

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// readerRecords appends n records of varied shape (sizes from empty to
// larger than a read buffer, nil and empty keys, headers) and returns them.
func readerRecords(t *testing.T, l *Log, n int) []Record {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make([]Record, 0, n)
	for len(recs) < n {
		batch := make([]Record, 1+rng.IntN(40))
		for i := range batch {
			r := Record{Topic: []string{"a", "bb"}[rng.IntN(2)], Partition: int32(rng.IntN(3)) - 1}
			size := rng.IntN(3000)
			if rng.IntN(50) == 0 {
				size = 10_000 + rng.IntN(10_000) // larger than the 4 KiB read buffers below
			}
			r.Value = make([]byte, size)
			for j := range r.Value {
				r.Value[j] = byte(rng.Uint32())
			}
			switch rng.IntN(3) {
			case 0: // nil key
			case 1:
				r.Key = []byte{}
			default:
				r.Key = []byte("k")
			}
			if rng.IntN(4) == 0 {
				r.Headers = []Header{{Key: "h", Value: []byte("v")}, {Key: "nil"}}
			}
			batch[i] = r
		}
		if _, err := l.Append(bg, batch); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, batch...)
	}
	return recs
}

// within reports whether b lies in buf's memory.
func within(b, buf []byte) bool {
	if len(b) == 0 || cap(buf) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return p >= lo && p < lo+uintptr(cap(buf))
}

// ReadInto returns exactly what Read returns, for any batch limits and
// starting points, reading sealed segments from their files into the
// caller's buffers (which it grows for a record that does not fit) and the
// tail from memory.
func TestReadIntoMatchesRead(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{SegmentBytes: 64 << 10, Sync: SyncNever})
	defer l.Close()
	recs := readerRecords(t, l, 3000)
	if l.Stats().Segments < 10 {
		t.Fatalf("only %d segments", l.Stats().Segments)
	}
	// Every append is published: the files serve what is older than the
	// tail and the two segments sealed before it, which tidwall holds.
	segs, err := ListSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	fromFiles := segs[len(segs)-1-tidwallCached].First
	if got := l.filesBelow(); got != fromFiles {
		t.Fatalf("filesBelow() = %d, want %d (the first of the third segment from the end)", got, fromFiles)
	}
	for _, lim := range []struct{ entries, bytes int }{{1, 1}, {7, 4096}, {512, 4096}, {1024, 1 << 20}} {
		bufs := make([][]byte, 3) // reused in turn, as the sender's read-ahead does
		fromBuf := 0
		for seq, i := uint64(1), 0; seq <= l.LastSeq(); i++ {
			got, buf, err := l.ReadInto(seq, make([]Entry, 0, lim.entries), bufs[i%3], lim.bytes)
			if err != nil {
				t.Fatalf("limits %+v: ReadInto(%d): %v", lim, seq, err)
			}
			bufs[i%3] = buf
			if len(got) == 0 {
				t.Fatalf("limits %+v: ReadInto(%d) returned nothing below LastSeq %d", lim, seq, l.LastSeq())
			}
			if len(got) > lim.entries {
				t.Fatalf("limits %+v: %d entries", lim, len(got))
			}
			for _, e := range got {
				if e.Seq != seq {
					t.Fatalf("limits %+v: entry %d, want %d", lim, e.Seq, seq)
				}
				assertRecordEqual(t, e.Record, recs[seq-1])
				if e.Size != EncodedLen(&recs[seq-1]) {
					t.Fatalf("seq %d: Size %d, want %d", seq, e.Size, EncodedLen(&recs[seq-1]))
				}
				if seq < fromFiles && len(e.Record.Value) > 0 {
					if !within(e.Record.Value, buf) {
						t.Fatalf("seq %d of a sealed segment does not alias the read buffer", seq)
					}
					fromBuf++
				} else if seq >= fromFiles && within(e.Record.Value, buf) {
					t.Fatalf("seq %d, in a segment tidwall holds in memory, was read from its file", seq)
				}
				seq++
			}
		}
		if fromBuf == 0 {
			t.Fatalf("limits %+v: no record read from a sealed segment file", lim)
		}
	}
	// Random starting points, forward and backward.
	rng := rand.New(rand.NewPCG(3, 4))
	var buf []byte
	for range 300 {
		seq := 1 + rng.Uint64N(l.LastSeq())
		var got []Entry
		var err error
		got, buf, err = l.ReadInto(seq, make([]Entry, 0, 3), buf, 1<<20)
		if err != nil || len(got) == 0 || got[0].Seq != seq {
			t.Fatalf("ReadInto(%d): %d entries, %v", seq, len(got), err)
		}
		for _, e := range got {
			assertRecordEqual(t, e.Record, recs[e.Seq-1])
		}
	}
	// Past the end: nothing, no error.
	if got, _, err := l.ReadInto(l.LastSeq()+1, make([]Entry, 0, 3), nil, 1<<20); err != nil || len(got) != 0 {
		t.Fatalf("ReadInto past the end: %d entries, %v", len(got), err)
	}
}

// A reader following the writer across rotations reads every record, in
// order, as written (run with -race: the reader reads files the writer has
// sealed while it writes the next).
func TestReadIntoFollowsTheWriter(t *testing.T) {
	l := openT(t, t.TempDir(), Options{SegmentBytes: 64 << 10, Sync: SyncNever})
	var wg sync.WaitGroup
	defer wg.Wait() // after Close, which ends the writer's appends
	defer l.Close()
	const n = 20_000
	wg.Add(1)
	go func() {
		defer wg.Done()
		batch := make([]Record, 50)
		for i := 0; i < n; i += len(batch) {
			for j := range batch {
				v := make([]byte, 200)
				binary.BigEndian.PutUint64(v, uint64(i+j+1))
				batch[j] = Record{Topic: "t", Value: v}
			}
			if _, err := l.Append(bg, batch); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// Start well behind, so that the reader reads sealed files while the
	// writer writes, and later follows it through tidwall's memory.
	waitFor(t, 10*time.Second, "ten segments", func() bool { return l.Stats().Segments >= 10 })
	bufs := make([][]byte, 3)
	fromFiles := 0
	for seq, i := uint64(1), 0; seq <= n; i++ {
		filesBelow := l.filesBelow()
		got, buf, err := l.ReadInto(seq, make([]Entry, 0, 100), bufs[i%3], 8<<10)
		if err != nil {
			t.Fatalf("ReadInto(%d): %v", seq, err)
		}
		bufs[i%3] = buf
		for _, e := range got {
			if e.Seq != seq || binary.BigEndian.Uint64(e.Record.Value) != seq {
				t.Fatalf("entry %d holds %d, want %d", e.Seq, binary.BigEndian.Uint64(e.Record.Value), seq)
			}
			if seq < filesBelow {
				fromFiles++
			}
			seq++
		}
		if len(got) == 0 {
			select {
			case <-l.Appended():
			case <-time.After(10 * time.Second):
				t.Fatalf("no append for 10 s while waiting for seq %d", seq)
			}
		}
	}
	if fromFiles == 0 {
		t.Fatal("the reader never read a sealed segment file; the test proves nothing")
	}
}

// Damage in a sealed segment is ErrCorrupt for the damaged record, never a
// wrong record or a silent skip; the records before it still read.
func TestReadIntoDamagedSealedSegment(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, seg SegmentFile)
	}{
		{"bit flip", func(t *testing.T, seg SegmentFile) {
			f, err := os.OpenFile(seg.Path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := make([]byte, 1)
			if _, err := f.ReadAt(b, seg.Bytes/2); err != nil {
				t.Fatal(err)
			}
			b[0] ^= 0x10
			if _, err := f.WriteAt(b, seg.Bytes/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"cut short", func(t *testing.T, seg SegmentFile) {
			if err := os.Truncate(seg.Path, seg.Bytes/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"cut at a record boundary", func(t *testing.T, seg SegmentFile) {
			// Entries of 1000-byte values are all the same size.
			data, err := os.ReadFile(seg.Path)
			if err != nil {
				t.Fatal(err)
			}
			size, n := binary.Uvarint(data)
			frame := int64(n) + int64(size)
			if err := os.Truncate(seg.Path, (seg.Bytes/2/frame)*frame); err != nil {
				t.Fatal(err)
			}
		}},
		{"missing", func(t *testing.T, seg SegmentFile) {
			if err := os.Remove(seg.Path); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{SegmentBytes: 64 << 10}
			l := openT(t, dir, opts)
			fillSegments(t, l, 6, make([]byte, 1000)) // segs[1] is read from its file
			l.Close()
			segs, _ := ListSegments(dir)
			tc.damage(t, segs[1])
			l = openT(t, dir, opts)
			defer l.Close()
			var buf []byte
			seq := uint64(1)
			var err error
			for seq < segs[2].First && err == nil {
				var got []Entry
				got, buf, err = l.ReadInto(seq, make([]Entry, 0, 16), buf, 1<<20)
				for _, e := range got {
					if e.Seq != seq || string(e.Record.Key) != strings.TrimLeft(SegmentName(seq), "0") {
						t.Fatalf("entry %d has key %q", e.Seq, e.Record.Key)
					}
					seq++
				}
				if err == nil && len(got) == 0 {
					t.Fatalf("ReadInto(%d): nothing, no error", seq)
				}
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("read through a damaged segment: reached seq %d, error %v; want ErrCorrupt", seq, err)
			}
			if seq >= segs[2].First || (tc.name != "missing" && seq < segs[1].First) {
				t.Fatalf("failed at seq %d, outside the damaged segment [%d, %d)", seq, segs[1].First, segs[2].First)
			}
		})
	}
}

// The reader holds a sealed segment open only while it reads in it: not
// once it has read past the segment's end, and not after Close.
func TestReadIntoReleasesSegmentFiles(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{SegmentBytes: 64 << 10})
	fillSegments(t, l, 6, make([]byte, 1000))
	segs, _ := ListSegments(dir)
	tail := segs[len(segs)-1].Path
	// openFiles counts descriptors on sealed segments, and on all segments.
	openFiles := func() (sealed, all int) {
		fds, _ := os.ReadDir("/proc/self/fd")
		for _, fd := range fds {
			p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
			if err != nil || !strings.HasPrefix(p, filepath.Join(dir, SegmentsDir)) {
				continue
			}
			all++
			if p != tail {
				sealed++
			}
		}
		return sealed, all
	}
	var buf []byte
	got, buf, err := l.ReadInto(1, make([]Entry, 0, 1), buf, 1<<20)
	if err != nil || len(got) != 1 {
		t.Fatalf("ReadInto(1): %d entries, %v", len(got), err)
	}
	if n, _ := openFiles(); n != 1 {
		t.Fatalf("%d sealed segments open in the middle of one, want 1", n)
	}
	for seq := uint64(2); seq <= l.LastSeq(); {
		got, buf, err = l.ReadInto(seq, make([]Entry, 0, 1000), buf, 1<<20)
		if err != nil || len(got) == 0 {
			t.Fatalf("ReadInto(%d): %d entries, %v", seq, len(got), err)
		}
		seq = got[len(got)-1].Seq + 1
	}
	if n, _ := openFiles(); n != 0 {
		t.Fatalf("%d sealed segments open after reading into the tail, want 0", n)
	}
	if _, _, err := l.ReadInto(1, make([]Entry, 0, 1), nil, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, n := openFiles(); n != 0 {
		t.Fatalf("%d segment files still open after Close", n)
	}
	if _, _, err := l.ReadInto(1, make([]Entry, 0, 1), nil, 1<<20); err == nil {
		t.Fatal("ReadInto after Close succeeded")
	}
}

// A segment holds the sequences up to the next segment's first, whatever
// else its file holds: extra entries (here a copy of the next segment's)
// are never read as later sequences.
func TestReadIntoBoundsSegmentsByTheList(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 10}
	l := openT(t, dir, opts)
	fillSegments(t, l, 6, make([]byte, 1000)) // segs[1] and segs[2] are read from their files
	want := readAll(t, l, 1)
	l.Close()
	segs, _ := ListSegments(dir)
	next, err := os.ReadFile(segs[2].Path)
	if err != nil {
		t.Fatal(err)
	}
	// Entries of segs[2] appended to segs[1], each with another key (and
	// a right checksum), so that a misread would show.
	f, err := os.OpenFile(segs[1].Path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	for data := next; len(data) > 0; {
		size, n := binary.Uvarint(data)
		rec, err := Decode(data[n : n+int(size)])
		if err != nil {
			t.Fatal(err)
		}
		rec.Key = []byte("wrong")
		enc := Encode(&rec)
		if _, err := f.Write(append(binary.AppendUvarint(nil, uint64(len(enc))), enc...)); err != nil {
			t.Fatal(err)
		}
		data = data[n+int(size):]
	}
	f.Close()
	l = openT(t, dir, opts)
	defer l.Close()
	var buf []byte
	for seq := uint64(1); seq < segs[3].First; {
		got, b, err := l.ReadInto(seq, make([]Entry, 0, 1000), buf, 1<<20)
		if err != nil || len(got) == 0 {
			t.Fatalf("ReadInto(%d): %d entries, %v", seq, len(got), err)
		}
		buf = b
		for _, e := range got {
			if e.Seq >= segs[3].First {
				break
			}
			assertRecordEqual(t, e.Record, want[e.Seq-1].Record)
			seq = e.Seq + 1
		}
	}
}

// Whatever a sealed segment's file holds, ReadInto neither panics nor
// loops: it returns entries that decode, in sequence and within the
// segment's bounds, and then ErrCorrupt or the next segment's records.
func FuzzReadIntoSealedSegment(f *testing.F) {
	dir := f.TempDir()
	opts := Options{SegmentBytes: 64 << 10, Sync: SyncNever}
	l, _, err := Open(dir, opts)
	if err != nil {
		f.Fatal(err)
	}
	for l.Stats().Segments < 5 { // segs[1] is read from its file
		if _, err := l.Append(bg, []Record{{Topic: "t", Key: []byte("k"), Value: make([]byte, 3000)}}); err != nil {
			f.Fatal(err)
		}
	}
	l.Close()
	segs, _ := ListSegments(dir)
	orig, err := os.ReadFile(segs[1].Path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(orig[:8000])
	f.Add(orig[:4500])
	f.Add(orig[:100])
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Add(append(binary.AppendUvarint(nil, 5), EncodeHole()...))
	// An entry whose length runs past the file, well past one read step.
	f.Add(append(binary.AppendUvarint(nil, 1<<30), make([]byte, 3*readStep)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(segs[1].Path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, _, err := Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		// A read of the segment's last sequence first skips every entry
		// before it: it ends, with that record or ErrCorrupt.
		lastSeq := segs[2].First - 1
		got, buf, err := l.ReadInto(lastSeq, make([]Entry, 0, 64), nil, 4096)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("ReadInto(%d): %v, want ErrCorrupt", lastSeq, err)
		}
		if err == nil && (len(got) != 1 || got[0].Seq != lastSeq) {
			t.Fatalf("ReadInto(%d): %d entries, no error", lastSeq, len(got))
		}
		seq := segs[1].First
		for i := 0; seq < segs[2].First; i++ {
			if i > len(data)+1 {
				t.Fatalf("no end after %d reads", i)
			}
			var got []Entry
			got, buf, err = l.ReadInto(seq, make([]Entry, 0, 64), buf, 4096)
			for _, e := range got {
				if e.Seq != seq {
					t.Fatalf("entry %d, want %d", e.Seq, seq)
				}
				seq++
			}
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("ReadInto(%d): %v, want ErrCorrupt", seq, err)
				}
				return
			}
			if len(got) == 0 {
				t.Fatalf("ReadInto(%d): nothing and no error inside a sealed segment", seq)
			}
		}
		if seq != segs[2].First {
			t.Fatalf("read up to %d, past the segment's end %d", seq, segs[2].First)
		}
	})
}
