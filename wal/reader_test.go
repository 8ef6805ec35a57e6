package wal

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
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

// A read that fails for a reason other than damaged bytes keeps its cause
// and is not reported as corruption: a segment file that cannot be opened
// (here: a link to a file that is gone) is an I/O error, and a closed log
// is ErrClosed.
func TestReadErrorsKeepTheirCause(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 10}
	l := openT(t, dir, opts)
	fillSegments(t, l, 6, make([]byte, 1000))
	l.Close()
	segs, _ := ListSegments(dir)
	gone := segs[1]
	if err := os.Remove(gone.Path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), gone.Path); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, opts)
	reads := map[string]func() error{
		"Read": func() error {
			_, err := l.Read(gone.First, make([]Entry, 0, 1), 1)
			return err
		},
		"ReadInto": func() error {
			_, _, err := l.ReadInto(gone.First, make([]Entry, 0, 1), nil, 1)
			return err
		},
	}
	for name, read := range reads {
		if err := read(); !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s of a segment whose file is gone: %v; want the cause (file does not exist), not ErrCorrupt", name, err)
		}
	}
	l.Close()
	for name, read := range reads {
		if err := read(); !errors.Is(err, ErrClosed) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s after Close: %v; want ErrClosed", name, err)
		}
	}
}

// readShared is Read without copying, as ReadInto reads the segments
// tidwall holds: the records alias the log's memory.
func (l *Log) readShared(seq uint64, dst []Entry, maxBytes int) ([]Entry, error) {
	return l.read(seq, dst, maxBytes, false)
}
