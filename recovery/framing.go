package recovery

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/kafkawal/kafkawal/wal"
)

// walk reads a segment's entries (wal.SegmentReader) and checks each. A bad
// entry whose length lands on an intact entry (or the end of the file),
// with no intact entry starting inside it, is one damaged entry. Otherwise
// the framing itself is broken: the range runs to the next offset where an
// intact entry starts, and holds an unknown number of entries, unless it is
// one intact entry behind a damaged length prefix.
func walk(data []byte) (records, holes int64, spans []span) {
	n := int64(len(data))
	sr := wal.NewSegmentBytesReader(data)
	probe := wal.NewSegmentBytesReader(data) // resync's
	for {
		var pos int64
		var cause error
		if sr.Next() {
			e := sr.Entry()
			if wal.IsHole(e) {
				holes++
				continue
			}
			_, err := wal.Decode(e)
			if err == nil {
				records++
				continue
			}
			pos, cause = sr.Offset(), err
			if end := sr.End(); resync(probe, pos+1, end) == end && (end == n || intactAt(probe, end)) {
				spans = append(spans, span{off: pos, end: end, count: 1, before: records + holes, cause: cause})
				continue
			}
		} else {
			var fe *wal.FrameError
			if !errors.As(sr.Err(), &fe) {
				return records, holes, spans // the end of the segment
			}
			pos, cause = fe.Offset, fe.Err
		}
		next := resync(probe, pos+1, n)
		sp := span{off: pos, end: next, count: -1, before: records + holes, cause: cause}
		if fix := fixablePrefix(data, pos, next); fix > 0 {
			sp.count, sp.fix = 1, fix
			sp.cause = fmt.Errorf("%w (%v); the entry behind it is intact", errPrefix, cause)
		} else if isZero(data[pos:next]) {
			sp.cause = fmt.Errorf("%w: %d bytes", errZeroFilled, next-pos)
		}
		spans = append(spans, sp)
		sr.SetOffset(next)
	}
}

// fixablePrefix returns where an intact entry starts in [off, end) when the
// range is exactly one entry whose length prefix alone is damaged: some
// k-byte prefix is followed by an intact entry of a length whose uvarint
// takes k bytes and that ends at end (an entry boundary). 0 otherwise.
func fixablePrefix(data []byte, off, end int64) int64 {
	for k := int64(1); k <= binary.MaxVarintLen64 && off+k < end; k++ {
		e := data[off+k : end]
		if wal.FramedLen(len(e))-int64(len(e)) == k && intact(e) {
			return off + k
		}
	}
	return 0
}

// intact reports whether e is a record or a hole. It filters on the layout
// (wal.Plausible) before computing a checksum, so that resynchronising
// over a large damaged range stays cheap.
func intact(e []byte) bool {
	if !wal.Plausible(e) {
		return false
	}
	if wal.IsHole(e) {
		return true
	}
	_, err := wal.Decode(e)
	return err == nil
}

// intactAt reports whether an intact entry starts at pos of sr's segment.
func intactAt(sr *wal.SegmentReader, pos int64) bool {
	sr.SetOffset(pos)
	return sr.Next() && intact(sr.Entry())
}

// resync returns the first offset in [from, to) where an intact entry
// starts, or to.
func resync(sr *wal.SegmentReader, from, to int64) int64 {
	for p := from; p < to; p++ {
		if intactAt(sr, p) {
			return p
		}
	}
	return to
}

func isZero(b []byte) bool {
	return len(b) > 0 && b[0] == 0 && bytes.Equal(b[1:], b[:len(b)-1])
}
