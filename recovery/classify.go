package recovery

import (
	"fmt"

	"github.com/kafkawal/kafkawal/wal"
)

// segCheck is what checking one segment file found.
type segCheck struct {
	seg     wal.SegmentFile
	next    uint64 // first sequence of the next segment; 0 for the last segment
	size    int64
	records int64 // intact records
	holes   int64 // intact holes
	// spans are the damaged ranges, in file order, with the number of
	// entries each held where it is known.
	spans []span
	// cutAt (last segment only) is where repair cuts the file: the first
	// range whose size is unknown, or the torn tail; size when neither.
	cutAt int64
	// fatal is set when a sealed segment's entries cannot be renumbered
	// (ranges of unknown size that the count cannot resolve).
	fatal *CorruptionError
	// wm is the synced watermark the last segment was judged against.
	wm watermark
}

// watermark is the synced watermark of the durable cursor (wal/synced.go):
// every sequence <= seq was fsync'd. known is false without one (no
// cursor, or one written before the watermark existed): damage is then
// judged as if the whole log had been fsync'd.
type watermark struct {
	seq   uint64
	known bool
}

// span is one damaged byte range of a segment.
type span struct {
	off, end int64
	count    int64 // entries the range held; -1 while unknown
	before   int64 // intact entries before it in the segment
	// fix, when not 0, is where an intact entry starts inside the range:
	// only its length prefix was damaged, and the entry is [fix, end).
	fix  int64
	torn bool
	// unsynced: the range starts after the synced watermark (it is torn
	// too, and cut with everything after it).
	unsynced bool
	cause    error
}

func (c *segCheck) last() bool { return c.next == 0 }

// checkSegment checks the bytes of one segment. next is the first sequence
// of the following segment, 0 if seg is the last, which is judged against
// the synced watermark wm.
func checkSegment(seg wal.SegmentFile, data []byte, next uint64, wm watermark) *segCheck {
	c := &segCheck{seg: seg, next: next, size: int64(len(data)), wm: wm}
	c.records, c.holes, c.spans = walk(data)
	c.cutAt = c.size
	if c.last() {
		c.classifyTail()
	} else {
		c.reconcile()
	}
	return c
}

// classifyTail marks the last range of the last segment torn when it runs
// to the end of the file, and every range from the first that starts after
// the synced watermark on (unsynced), and finds where repair must cut: at
// the first range of unknown size (the entries after it cannot be
// numbered) or at the first torn one.
//
// Damage after the watermark is what a power loss leaves in data written
// after the last completed fsync: a write that never reached the disk (a
// hole of zeros, a page of old bytes) before a later one that did, in any
// durability mode (under SyncAlways the writes of the group commit whose
// fsync was cut). Nothing in it was durable, so it is cut like a torn
// tail, with every entry after it, whatever the corruption policy; the
// intact records it cuts are counted (Report.UnsyncedRecords).
func (c *segCheck) classifyTail() {
	if n := len(c.spans); n > 0 && c.spans[n-1].end == c.size && c.spans[n-1].fix == 0 {
		c.spans[n-1].torn = true
	}
	if c.wm.known {
		var prior int64 // entries held by earlier ranges
		for i := range c.spans {
			if c.seg.First+uint64(c.spans[i].before+prior) > c.wm.seq {
				for j := i; j < len(c.spans); j++ {
					c.spans[j].torn, c.spans[j].unsynced = true, true
				}
				break
			}
			if c.spans[i].count < 0 {
				break // repair cuts here anyway
			}
			prior += c.spans[i].count
		}
	}
	for _, s := range c.spans {
		if s.torn || s.count < 0 {
			c.cutAt = s.off
			return
		}
	}
}

// reconcile sizes the damaged ranges of a sealed segment: the next
// segment's name says how many entries this one held, so one range of
// unknown size holds the ones missing. Entries missing with no damaged
// byte (a file cut at an entry boundary) were at the end.
func (c *segCheck) reconcile() {
	expected := int64(c.next - c.seg.First)
	good := c.records + c.holes
	var known int64
	var unknown []int
	for i, s := range c.spans {
		if s.count < 0 {
			unknown = append(unknown, i)
		} else {
			known += s.count
		}
	}
	missing := expected - good - known
	switch {
	case missing > maxHoles:
		c.fatal = &CorruptionError{Segment: c.seg.Path, Offset: c.size, LastSeq: c.next - 1,
			Err: fmt.Errorf("%w: %d entries missing before segment %s, more than the %d holes repair writes: %w",
				errCount, missing, wal.SegmentName(c.next), maxHoles, errUnrepairable)}
	case missing == 0 && len(unknown) == 0:
	case missing > 0 && len(unknown) == 0 && known == 0:
		c.spans = append(c.spans, span{off: c.size, end: c.size, count: missing, before: good,
			cause: fmt.Errorf("%w: %d entries, %d expected before segment %s; the last %d are missing",
				errCount, good, expected, wal.SegmentName(c.next), missing)})
	case missing >= 0 && len(unknown) == 1:
		c.spans[unknown[0]].count = missing
	case missing == 0:
		for _, i := range unknown {
			c.spans[i].count = 0
		}
	default:
		off := c.size
		if len(c.spans) > 0 {
			off = c.spans[0].off
		}
		cause := errCount
		if len(unknown) > 1 {
			cause = errAmbiguous
		}
		c.fatal = &CorruptionError{Segment: c.seg.Path, Offset: off, Bytes: c.size - off, LastSeq: c.next - 1,
			Err: fmt.Errorf("%w: %d intact entries, %d damaged ranges, %d entries expected before segment %s: %w",
				cause, good, len(c.spans), expected, wal.SegmentName(c.next), errUnrepairable)}
	}
}

// maxHoles bounds the holes one segment may need (6 bytes each): more means
// a segment name far beyond what was lost, not lost records.
const maxHoles = 1 << 24

// damage returns the segment's damaged ranges as errors.
func (c *segCheck) damage() []*CorruptionError {
	var out []*CorruptionError
	var prior int64 // entries held by earlier ranges; -1 once unknown
	for _, s := range c.spans {
		e := &CorruptionError{Segment: c.seg.Path, Offset: s.off, Bytes: s.end - s.off, TornTail: s.torn, Unsynced: s.unsynced, Err: s.cause}
		if prior >= 0 {
			e.Seq = c.seg.First + uint64(s.before+prior)
			if s.count >= 0 && !s.torn {
				e.LastSeq = e.Seq + uint64(s.count) - 1
			}
		}
		if !c.last() && (e.LastSeq == 0 || e.LastSeq >= c.next) {
			// Whatever it held, a sealed segment's range lies before the
			// next segment.
			e.LastSeq = c.next - 1
		}
		if s.count < 0 {
			prior = -1
		} else if prior >= 0 {
			prior += s.count
		}
		out = append(out, e)
	}
	if c.fatal != nil {
		out = append(out, c.fatal)
	}
	return out
}

// lastSeq is the last sequence the last segment holds once repaired:
// entries past the cut are gone, holes replace the ranges before it.
func (c *segCheck) lastSeq() uint64 {
	var held int64 // entries of the damaged ranges before the cut
	for _, s := range c.spans {
		if s.off >= c.cutAt {
			return c.seg.First + uint64(s.before+held) - 1
		}
		held += s.count
	}
	return c.seg.First + uint64(c.records+c.holes+held) - 1
}
