package wal

import (
	"errors"
	"os"
	"testing"
)

// A sealed segment cut short (damage Open does not look for: it checks the
// tail only) makes Read fail with ErrCorrupt instead of panicking.
func TestReadShortSealedSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 10}
	l := openT(t, dir, opts)
	fillSegments(t, l, 3, make([]byte, 1000))
	l.Close()
	segs, _ := ListSegments(dir)
	if err := os.Truncate(segs[0].Path, segs[0].Bytes/2); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, opts)
	defer l.Close()
	_, err := l.Read(segs[1].First-1, make([]Entry, 0, 1), 1)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of a record cut from a sealed segment: %v, want ErrCorrupt", err)
	}
}
