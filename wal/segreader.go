package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// SegmentReader reads the entries of one segment in order, parsing
// tidwall/wal's framing (doc.go: a uvarint length, then the entry). It is
// the one parser of that framing: ReadInto, the integrity scan (package
// recovery) and the CLI read segments through it. It checks the framing
// only; whether an entry is a record is for Plausible, IsHole and Decode.
//
//	sr := wal.NewSegmentReader(f, size, nil)
//	for sr.Next() {
//		use(sr.Offset(), sr.Entry())
//	}
//	if err := sr.Err(); err != nil { // a *FrameError, or an I/O error
//		...
//	}
type SegmentReader struct {
	src  io.ReaderAt // nil when the whole segment is in buf
	size int64       // where the segment ends: nothing past it is read
	buf  []byte      // the segment's bytes from base; the unparsed ones from pos
	base int64
	pos  int
	// keep: never move or overwrite bytes once read, so that every entry
	// stays valid until buf is reused (ReadInto); Next then stops without
	// an error when buf is full, unless growing it is the only way on.
	keep  bool
	off   int64 // the current entry's frame
	entry []byte
	err   error
}

// FrameError is a break in the framing: no entry can be read at Offset,
// so the entries after it cannot be numbered. It matches ErrCorrupt.
type FrameError struct {
	Offset int64
	// Tail is set when the broken frame runs to the end of the segment:
	// what a crash in the middle of a write, or a write in progress,
	// leaves.
	Tail bool
	Err  error
}

func (e *FrameError) Error() string { return fmt.Sprintf("offset %d: %v", e.Offset, e.Err) }

// Unwrap returns the cause.
func (e *FrameError) Unwrap() error { return e.Err }

// Is makes every FrameError match ErrCorrupt.
func (e *FrameError) Is(target error) bool { return target == ErrCorrupt }

// Causes recorded in FrameError.Err.
var (
	errBadPrefix   = errors.New("length prefix is not a valid uvarint")
	errShortPrefix = errors.New("length prefix cut short by the end of the segment")
	errEmptyEntry  = errors.New("empty entry (the codec never writes one)")
	errOverrun     = errors.New("entry runs past the end of the segment")
)

// AppendFrame appends entry to dst framed as tidwall/wal frames it: its
// length as a uvarint, then its bytes.
func AppendFrame(dst, entry []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(entry))), entry...)
}

// FramedLen returns the bytes an entry of n bytes takes in a segment.
func FramedLen(n int) int64 { return int64(uvarintLen(uint64(n)) + n) }

// readStep is the most a SegmentReader reads from its source at a time
// (ReadInto reads only as far as the entries asked for need).
const readStep = 64 << 10

// NewSegmentReader reads the first size bytes of src as a segment (a
// segment being appended to is read as it was at size). It buffers them in
// buf, or in a buffer of its own when buf is nil, and grows the buffer when
// an entry does not fit, so memory is about one entry, or buf. Entry is
// valid until the next call.
func NewSegmentReader(src io.ReaderAt, size int64, buf []byte) *SegmentReader {
	return &SegmentReader{src: src, size: size, buf: buf[:0]}
}

// NewSegmentBytesReader reads a segment held whole in data; its entries
// alias data.
func NewSegmentBytesReader(data []byte) *SegmentReader {
	return &SegmentReader{size: int64(len(data)), buf: data}
}

// Next moves to the next entry and reports whether there is one. It
// returns false at the end of the segment (Err nil) and at a break in the
// framing or an I/O error (Err says which).
func (r *SegmentReader) Next() bool { return r.advance(true) }

// Skip is Next without the entry: an entry that is not already buffered is
// passed over by its length, without being read. Entry is nil after it.
func (r *SegmentReader) Skip() bool { return r.advance(false) }

// Entry returns the current entry.
func (r *SegmentReader) Entry() []byte { return r.entry }

// Offset returns where the current entry's frame (its length prefix)
// starts in the segment; after Next returned false, where the reader
// stopped.
func (r *SegmentReader) Offset() int64 { return r.off }

// End returns where the current entry ends: the next frame's offset.
func (r *SegmentReader) End() int64 { return r.base + int64(r.pos) }

// Err returns what stopped the reader: nil at the end of the segment, a
// *FrameError for a break in the framing, or an I/O error (wrapped, with
// the offset).
func (r *SegmentReader) Err() error { return r.err }

// SetOffset makes the next frame read the one at off.
func (r *SegmentReader) SetOffset(off int64) {
	r.entry, r.err, r.off = nil, nil, off
	if r.src == nil {
		r.pos = int(off)
		return
	}
	r.base, r.buf, r.pos = off, r.buf[:0], 0
}

// reset makes r read src from its start, as NewSegmentReader does, with no
// buffer yet.
func (r *SegmentReader) reset(src io.ReaderAt, size int64) {
	*r = SegmentReader{src: src, size: size}
}

// reuse makes the reader read on into buf (keep: ReadInto's buffer), from
// where it is.
func (r *SegmentReader) reuse(buf []byte, keep bool) {
	r.base += int64(r.pos)
	r.buf, r.pos, r.keep = buf[:0], 0, keep
}

func (r *SegmentReader) advance(read bool) bool {
	r.entry = nil
	if r.err != nil {
		return false
	}
	for {
		b := r.buf[r.pos:]
		at := r.base + int64(r.pos)
		r.off = at
		n, k := binary.Uvarint(b)
		switch {
		case k < 0:
			return r.fail(errBadPrefix, false)
		case k > 0 && n == 0:
			return r.fail(errEmptyEntry, false)
		case k > 0 && n <= uint64(len(b)-k):
			// tidwall reads prefixes with binary.Uvarint too, which
			// accepts padded encodings: k counts the bytes used.
			if read {
				r.entry = b[k : k+int(n) : k+int(n)]
			}
			r.pos += k + int(n)
			return true
		}
		// The frame is not whole in buf.
		rest := r.size - at // the segment's bytes from the frame on
		if k > 0 {
			if n > uint64(rest-int64(k)) {
				return r.fail(fmt.Errorf("%w: %d-byte entry, %d bytes left", errOverrun, n, rest-int64(k)), true)
			}
			if !read { // pass over it by its length
				r.base, r.buf, r.pos = at+int64(k)+int64(n), r.buf[:0], 0
				return true
			}
		} else if rest <= int64(len(b)) {
			if rest == 0 {
				return false // the end of the segment
			}
			return r.fail(errShortPrefix, true)
		}
		if !r.fill(k, n) {
			return false
		}
	}
}

func (r *SegmentReader) fail(cause error, tail bool) bool {
	r.err = &FrameError{Offset: r.off, Tail: tail, Err: cause}
	return false
}

// fill reads more of the segment after what buf holds, for the frame at
// pos (its prefix k bytes long and its entry n bytes, when k > 0). The room
// comes from buf's spare capacity, then (unless keep) from moving the
// unparsed bytes to its start, then from a larger buffer: the frame's size
// when it is known, else twice the size, and (unless keep, where the
// caller sized buf) at least readStep. With keep and entries before pos,
// it stops instead: they must stay where they are, and the frame is read
// by the next call.
func (r *SegmentReader) fill(k int, n uint64) bool {
	if r.src == nil { // never: the whole segment is in buf
		r.size = r.base + int64(len(r.buf))
		return true
	}
	need := binary.MaxVarintLen64
	if k > 0 {
		need = k + int(n)
	}
	if cap(r.buf)-r.pos < need {
		if r.pos > 0 {
			if r.keep {
				return false
			}
			m := copy(r.buf, r.buf[r.pos:])
			r.base += int64(r.pos)
			r.buf, r.pos = r.buf[:m], 0
		}
		if cap(r.buf) < need {
			size := need
			if k == 0 {
				size = max(need, 2*cap(r.buf))
			}
			if !r.keep {
				size = max(size, int(min(readStep, r.size-r.base)))
			}
			grown := make([]byte, len(r.buf), size)
			copy(grown, r.buf)
			r.buf = grown
		}
	}
	from := r.base + int64(len(r.buf)) // the first byte not read yet
	end := min(cap(r.buf), len(r.buf)+readStep, len(r.buf)+int(r.size-from))
	got, err := r.src.ReadAt(r.buf[len(r.buf):end], from)
	if err != nil && !errors.Is(err, io.EOF) {
		r.err = fmt.Errorf("kafkawal: read segment offset %d: %w", from, err)
		return false
	}
	if got == 0 {
		r.size = from // shorter than it was: the segment ends here
	}
	r.buf = r.buf[:len(r.buf)+got]
	return true
}
