package recovery

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/kafkawal/kafkawal/wal"
)

const (
	entRecord = iota
	entHole
	entBad    // framing holds, the entry does not decode
	entBroken // no entry can be framed here
)

// walk parses tidwall/wal's framing (uvarint length, bytes) and checks each
// entry. A bad entry whose length lands on an intact entry (or the end of
// the file), with no intact entry starting inside it, is one damaged entry.
// Otherwise the framing itself is broken: the range runs to the next offset
// where an intact entry starts, and holds an unknown number of entries,
// unless it is one intact entry behind a damaged length prefix.
func walk(data []byte) (records, holes int64, spans []span) {
	n := int64(len(data))
	for pos := int64(0); pos < n; {
		kind, end, cause := entryAt(data, pos)
		switch kind {
		case entRecord:
			records++
			pos = end
			continue
		case entHole:
			holes++
			pos = end
			continue
		case entBad:
			if resync(data, pos+1, end) == end && (end == n || validAt(data, end)) {
				spans = append(spans, span{off: pos, end: end, count: 1, before: records + holes, cause: cause})
				pos = end
				continue
			}
		}
		next := resync(data, pos+1, n)
		sp := span{off: pos, end: next, count: -1, before: records + holes, cause: cause}
		if fix := fixablePrefix(data, pos, next); fix > 0 {
			sp.count, sp.fix = 1, fix
			sp.cause = fmt.Errorf("%w (%v); the entry behind it is intact", errPrefix, cause)
		} else if isZero(data[pos:next]) {
			sp.cause = fmt.Errorf("%w: %d bytes", errZeroFilled, next-pos)
		}
		spans = append(spans, sp)
		pos = next
	}
	return records, holes, spans
}

// fixablePrefix returns where an intact entry starts in [off, end) when the
// range is exactly one entry whose length prefix alone is damaged: some
// k-byte prefix is followed by a valid entry of a length whose uvarint
// takes k bytes and that ends at end (an entry boundary). 0 otherwise.
func fixablePrefix(data []byte, off, end int64) int64 {
	for k := int64(1); k <= binary.MaxVarintLen64 && off+k < end; k++ {
		e := data[off+k : end]
		if int64(uvarintLen(uint64(len(e)))) != k {
			continue
		}
		if wal.IsHole(e) {
			return off + k
		}
		if plausible(e) {
			if _, err := wal.Decode(e); err == nil {
				return off + k
			}
		}
	}
	return 0
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// frameAt parses the uvarint length prefix at pos and returns where the
// entry's bytes start and end. It fails, as tidwall/wal's loader does, when
// the prefix does not parse or the entry runs past the end of data, and
// also on an empty entry, which the codec never writes.
func frameAt(data []byte, pos int64) (start, end int64, err error) {
	l, k := binary.Uvarint(data[pos:])
	if k <= 0 {
		return 0, 0, errBadPrefix
	}
	start = pos + int64(k)
	if rest := uint64(int64(len(data)) - start); l > rest {
		return 0, 0, fmt.Errorf("%w: %d-byte entry, %d bytes left", errOverrun, l, rest)
	}
	if l == 0 {
		return 0, 0, errEmptyEntry
	}
	return start, start + int64(l), nil
}

func entryAt(data []byte, pos int64) (kind int, end int64, cause error) {
	start, end, err := frameAt(data, pos)
	if err != nil {
		return entBroken, 0, err
	}
	e := data[start:end]
	if wal.IsHole(e) {
		return entHole, end, nil
	}
	if _, err := wal.Decode(e); err != nil {
		return entBad, end, err
	}
	return entRecord, end, nil
}

// validAt reports whether an intact entry starts at pos. It filters on the
// layout before computing a checksum, so that resynchronising over a large
// damaged range stays cheap.
func validAt(data []byte, pos int64) bool {
	start, end, err := frameAt(data, pos)
	if err != nil {
		return false
	}
	e := data[start:end]
	if len(e) == len(hole) {
		return wal.IsHole(e)
	}
	if !plausible(e) {
		return false
	}
	_, err = wal.Decode(e)
	return err == nil
}

// resync returns the first offset in [from, to) where an intact entry
// starts, or to.
func resync(data []byte, from, to int64) int64 {
	for p := from; p < to; p++ {
		if validAt(data, p) {
			return p
		}
	}
	return to
}

// codecV1 and v1Header mirror wal's codec (doc.go: crc32c, version,
// timestamp, partition, then the topic). wal does not export them; keep
// them in step with wal's codec versions.
const (
	codecV1  = 1
	v1Header = 4 + 1 + 8 + 4
)

var hole = wal.EncodeHole()

// plausible is a cheap test of the layout: version, partition and topic
// length must make sense before the checksum is worth computing.
func plausible(e []byte) bool {
	if len(e) <= v1Header || e[4] != codecV1 {
		return false
	}
	if int32(binary.BigEndian.Uint32(e[13:])) < wal.PartitionAny {
		return false
	}
	tl, k := binary.Uvarint(e[v1Header:])
	return k > 0 && tl > 0 && tl <= uint64(len(e)-v1Header-k)
}

func isZero(b []byte) bool {
	return len(b) > 0 && b[0] == 0 && bytes.Equal(b[1:], b[:len(b)-1])
}
