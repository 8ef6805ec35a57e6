package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// segmentReader reads the entries of one segment file in order, parsing
// tidwall/wal's framing (uvarint length, then the entry; see wal/doc.go)
// from a buffered stream, so that a segment of any size costs one entry of
// memory. It reads the bytes the file had when it was opened: a producer
// appending meanwhile does not move the end under it.
//
// It does not check entries: callers decode them with wal.Decode and
// wal.IsHole. recovery.Scan is the integrity check; this is only the
// sequential reader it does not export.
type segmentReader struct {
	path string
	f    *os.File // nil when reading from memory
	r    *bufio.Reader
	size int64 // bytes when opened
	off  int64 // offset of the next entry's length prefix
	buf  []byte
}

// frameError is a break in the framing: no entry can be read at Offset.
// Entries after it cannot be numbered.
type frameError struct {
	Segment string
	Offset  int64
	// Tail is set when the broken frame runs to the end of the file: what a
	// crash in the middle of a write, or a write in progress, leaves.
	Tail bool
	Err  error
}

func (e *frameError) Error() string {
	return fmt.Sprintf("segment %s offset %d: %v", e.Segment, e.Offset, e.Err)
}

func (e *frameError) Unwrap() error { return e.Err }

var (
	errShortPrefix = errors.New("length prefix cut short by the end of the file")
	errBadPrefix   = errors.New("length prefix is not a valid uvarint")
	errEmptyEntry  = errors.New("empty entry")
)

func openSegment(path string) (*segmentReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	sr := newSegmentReader(path, f, fi.Size())
	sr.f = f
	return sr, nil
}

// newSegmentReader reads the first size bytes of r as a segment named path.
func newSegmentReader(path string, r io.ReaderAt, size int64) *segmentReader {
	return &segmentReader{
		path: path,
		r:    bufio.NewReaderSize(io.NewSectionReader(r, 0, size), int(min(size+16, 256<<10))),
		size: size,
	}
}

// next returns the next entry and its offset in the file, io.EOF after the
// last one, or a *frameError. The entry is valid until the next call.
func (s *segmentReader) next() (entry []byte, off int64, err error) {
	off = s.off
	if off >= s.size {
		return nil, off, io.EOF
	}
	var prefix [binary.MaxVarintLen64]byte
	k := 0
	for k < len(prefix) {
		c, err := s.r.ReadByte()
		if errors.Is(err, io.EOF) {
			return nil, off, &frameError{Segment: s.path, Offset: off, Tail: true, Err: errShortPrefix}
		}
		if err != nil {
			return nil, off, fmt.Errorf("read segment %s offset %d: %w", s.path, off, err)
		}
		prefix[k] = c
		k++
		if c < 0x80 {
			break
		}
	}
	n, m := binary.Uvarint(prefix[:k])
	switch {
	case m <= 0:
		return nil, off, &frameError{Segment: s.path, Offset: off, Err: errBadPrefix}
	case n == 0:
		return nil, off, &frameError{Segment: s.path, Offset: off, Err: errEmptyEntry}
	}
	// tidwall/wal reads prefixes with binary.Uvarint too, which accepts
	// padded encodings: count the bytes actually used.
	start := off + int64(k)
	if rest := uint64(s.size - start); n > rest {
		return nil, off, &frameError{Segment: s.path, Offset: off, Tail: true,
			Err: fmt.Errorf("%d-byte entry, only %d bytes left in the file", n, rest)}
	}
	if uint64(cap(s.buf)) < n {
		s.buf = make([]byte, n)
	}
	s.buf = s.buf[:n]
	if _, err := io.ReadFull(s.r, s.buf); err != nil {
		return nil, off, fmt.Errorf("read segment %s offset %d: %w", s.path, off, err)
	}
	s.off = start + int64(n)
	return s.buf, off, nil
}

func (s *segmentReader) close() error {
	if s.f == nil {
		return nil
	}
	return s.f.Close()
}
