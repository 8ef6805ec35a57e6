package wal

import (
	"testing"
	"time"
)

// TestBytesAfter: with records of one size, BytesAfter is exact at
// segment boundaries and within one record inside a segment, whatever
// segment the sequence falls in (sealed, tail, before the first after a
// truncation).
func TestBytesAfter(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{Sync: SyncNever, SegmentBytes: 64 << 10})
	defer l.Close()
	r := Record{Topic: "t", Value: make([]byte, 1000)}
	framed := FramedLen(EncodedLen(&r))
	const n = 400 // about 6 segments
	for range n / 50 {
		batch := make([]Record, 50)
		for i := range batch {
			batch[i] = r
		}
		if _, err := l.Append(bg, batch); err != nil {
			t.Fatal(err)
		}
	}
	segs, err := ListSegments(dir)
	if err != nil || len(segs) < 4 {
		t.Fatalf("%d segments (%v), want several", len(segs), err)
	}
	check := func(seq uint64, want int64) {
		t.Helper()
		if got := l.BytesAfter(seq); got < want-framed || got > want+framed {
			t.Errorf("BytesAfter(%d) = %d, want %d (within a record, %d)", seq, got, want, framed)
		}
	}
	total := l.Stats().DiskBytes
	check(0, total)
	check(n, 0)
	check(n+10, 0)
	for _, s := range segs[1:] {
		var want int64
		for _, s2 := range segs {
			if s2.First >= s.First {
				want += s2.Bytes
			}
		}
		if got := l.BytesAfter(s.First - 1); got != want {
			t.Errorf("BytesAfter(%d), at the start of segment %d: %d, want exactly %d", s.First-1, s.First, got, want)
		}
	}
	for _, seq := range []uint64{1, 7, segs[1].First + 3, segs[len(segs)-1].First + 2, n - 1} {
		check(seq, int64(n-seq)*framed)
	}

	// Delete the first segments: sequences below the first on disk count
	// everything that is left.
	if err := l.SetCursor(segs[2].First); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "truncation", func() bool { return l.FirstSeq() == segs[2].First })
	check(0, l.Stats().DiskBytes)
	check(segs[2].First+5, int64(n-segs[2].First-5)*framed)
}
