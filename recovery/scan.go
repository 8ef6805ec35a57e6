package recovery

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"iter"
	"os"
	"runtime"
	"sync"

	"github.com/kafkawal/kafkawal/wal"
)

// ScanOptions configures Scan. The zero value checks every segment.
type ScanOptions struct {
	// TailOnly checks entry by entry only the last segment (and, when it is
	// an empty file fresh from a rotation, the segments back to the last
	// non-empty one); sealed segments are listed but not read. Default
	// false: every segment is read and every entry checked.
	TailOnly bool
	// Progress, if set, is called after each checked segment with the
	// bytes checked so far and the bytes to check in all. Default none.
	Progress func(done, total int64)
}

// Report is what Scan found, and for Repair also what it did.
type Report struct {
	// Segments and Bytes count every segment file in the log.
	Segments int
	Bytes    int64
	// CheckedSegments and CheckedBytes count those read entry by entry
	// (all of them unless TailOnly).
	CheckedSegments int
	CheckedBytes    int64
	// Records and Holes count the intact entries of the checked segments.
	Records int64
	Holes   int64
	// FirstSeq is the first sequence on disk; LastSeq the last one the log
	// holds once repaired (FirstSeq-1 when it holds none).
	FirstSeq, LastSeq uint64
	// Damage lists every damaged range found, in log order.
	Damage []*CorruptionError

	// The rest is filled by Repair.

	// TornTailRepairs counts torn tails cut off the last segment (0 or 1).
	TornTailRepairs int
	// RewrittenSegments counts segments repaired for mid-log corruption.
	RewrittenSegments int
	// Quarantined lists the files written under DIR/quarantine, and
	// QuarantinedBytes their total size.
	Quarantined      []string
	QuarantinedBytes int64
	// LostRecords and LostBytes count the records that mid-log corruption
	// destroyed and the bytes they took; torn tails are not counted (they
	// were never acknowledged under SyncAlways).
	LostRecords int64
	LostBytes   int64
	// LostAtLeast is set when LostRecords is a lower bound: a damaged range
	// of the last segment whose framing was broken cannot say how many
	// records it held (sealed segments always can, from the next segment's
	// name).
	LostAtLeast bool
	// RecoveredRecords counts entries whose length prefix alone was
	// damaged: the checksum proves the record intact, and Repair kept it
	// under a rewritten prefix instead of a hole.
	RecoveredRecords int64
}

// Repaired reports whether Repair changed anything on disk.
func (r *Report) Repaired() bool { return r.TornTailRepairs > 0 || r.RewrittenSegments > 0 }

// Corruption returns the first mid-log damage Report lists, or nil when
// there is none (a torn tail alone is not corruption).
func (r *Report) Corruption() *CorruptionError {
	for _, d := range r.Damage {
		if !d.TornTail {
			return d
		}
	}
	return nil
}

// Scan checks the log in dir without changing anything: it reads every
// segment in order (only the tail with TailOnly), parses tidwall/wal's
// framing, checks every entry's checksum with wal.Decode (or wal.IsHole),
// and checks that each sealed segment holds exactly as many entries as the
// next segment's name implies. It returns the first damage found as a
// *CorruptionError (Report.Damage lists them all), or an I/O error.
//
// Scan of a directory an open Log is writing may report the record being
// written as a torn tail.
func Scan(dir string, opts ScanOptions) (Report, error) {
	segs, err := wal.ListSegments(dir)
	if err != nil {
		return Report{}, err
	}
	rep, _, err := check(segs, opts)
	if err != nil {
		return rep, err
	}
	if len(rep.Damage) > 0 {
		return rep, rep.Damage[0]
	}
	return rep, nil
}

// check reads and checks the segments opts selects and fills a Report.
func check(segs []wal.SegmentFile, opts ScanOptions) (Report, []*segCheck, error) {
	var rep Report
	rep.Segments = len(segs)
	for _, s := range segs {
		rep.Bytes += s.Bytes
	}
	if len(segs) == 0 {
		return rep, nil, nil
	}
	rep.FirstSeq = segs[0].First
	from := 0
	if opts.TailOnly {
		from = len(segs) - 1
		for from > 0 && segs[from].Bytes == 0 {
			from--
		}
	}
	var total, done int64
	for _, s := range segs[from:] {
		total += s.Bytes
	}
	var checks []*segCheck
	for r := range checkAll(segs, from) {
		if r.err != nil {
			return rep, checks, r.err
		}
		c := r.c
		checks = append(checks, c)
		rep.CheckedSegments++
		rep.CheckedBytes += c.size
		rep.Records += c.records
		rep.Holes += c.holes
		rep.Damage = append(rep.Damage, c.damage()...)
		done += c.size
		if opts.Progress != nil {
			opts.Progress(done, max(total, done))
		}
	}
	rep.LastSeq = checks[len(checks)-1].lastSeq()
	return rep, checks, nil
}

type checked struct {
	c   *segCheck
	err error
}

// checkAll checks segs[from:] on up to scanWorkers goroutines and yields
// the results in segment order. Each worker holds one segment in memory.
// Stopping the iteration early stops the workers before checkAll returns.
func checkAll(segs []wal.SegmentFile, from int) iter.Seq[checked] {
	return func(yield func(checked) bool) {
		n := len(segs) - from
		workers := min(runtime.GOMAXPROCS(0), scanWorkers, n)
		results := make([]chan checked, n)
		for i := range results {
			results[i] = make(chan checked, 1)
		}
		bufs := make(chan []byte, workers) // a free buffer is a free worker
		for range workers {
			bufs <- nil
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		defer wg.Wait()
		defer close(stop)
		wg.Go(func() {
			for i := range n {
				var buf []byte
				select {
				case buf = <-bufs:
				case <-stop:
					return
				}
				wg.Go(func() {
					seg := segs[from+i]
					var next uint64
					if from+i+1 < len(segs) {
						next = segs[from+i+1].First
					}
					buf, err := readSegment(seg.Path, buf)
					var r checked
					if err != nil {
						r.err = err
					} else {
						r.c = checkSegment(seg, buf, next)
					}
					results[i] <- r
					bufs <- buf
				})
			}
		})
		for i := range n {
			if !yield(<-results[i]) {
				return
			}
		}
	}
}

// scanWorkers bounds the segments checked at once (and held in memory).
const scanWorkers = 4

// readSegment reads the file at path into buf, growing it as needed.
func readSegment(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, fmt.Errorf("kafkawal: read segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return buf, fmt.Errorf("kafkawal: read segment: %w", err)
	}
	n := int(fi.Size())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(f, buf); err != nil {
		return buf, fmt.Errorf("kafkawal: read segment %s: %w", path, err)
	}
	return buf, nil
}

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
}

// span is one damaged byte range of a segment.
type span struct {
	off, end int64
	count    int64 // entries the range held; -1 while unknown
	before   int64 // intact entries before it in the segment
	// fix, when not 0, is where an intact entry starts inside the range:
	// only its length prefix was damaged, and the entry is [fix, end).
	fix   int64
	torn  bool
	cause error
}

func (c *segCheck) last() bool { return c.next == 0 }

// checkSegment checks the bytes of one segment. next is the first sequence
// of the following segment, 0 if seg is the last.
func checkSegment(seg wal.SegmentFile, data []byte, next uint64) *segCheck {
	c := &segCheck{seg: seg, next: next, size: int64(len(data))}
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
// to the end of the file, and finds where repair must cut: at the first
// range of unknown size (the entries after it cannot be numbered) or at the
// torn tail.
func (c *segCheck) classifyTail() {
	if n := len(c.spans); n > 0 && c.spans[n-1].end == c.size && c.spans[n-1].fix == 0 {
		c.spans[n-1].torn = true
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
		c.fatal = &CorruptionError{Segment: c.seg.Path, Offset: c.size,
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
		c.fatal = &CorruptionError{Segment: c.seg.Path, Offset: off, Bytes: c.size - off,
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
		e := &CorruptionError{Segment: c.seg.Path, Offset: s.off, Bytes: s.end - s.off, TornTail: s.torn, Err: s.cause}
		if prior >= 0 {
			e.Seq = c.seg.First + uint64(s.before+prior)
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
