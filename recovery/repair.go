package recovery

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal/wal"
)

// Policy says what Repair does about mid-log corruption. A torn tail is
// repaired under every policy.
type Policy int

const (
	// FailOnCorruption makes Repair return the *CorruptionError and change
	// nothing, so that an operator decides, unless every damaged range lies
	// at or below the durable cursor (already delivered): that is repaired
	// under every policy. Default.
	FailOnCorruption Policy = iota
	// QuarantineCorruption copies each damaged range to quarantine/ and
	// rewrites its segment with a hole in place of every entry it held, so
	// that every later record keeps its sequence. The lost records are
	// counted in Report and logged at error level.
	QuarantineCorruption
)

func (p Policy) String() string {
	switch p {
	case FailOnCorruption:
		return "fail"
	case QuarantineCorruption:
		return "quarantine"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Options configures Repair. The zero value of every field means its
// default.
type Options struct {
	// Policy is what to do about mid-log corruption. Default
	// FailOnCorruption.
	Policy Policy
	// FullScan checks every segment, as Scan does by default, instead of
	// only the tail. Default false: see the package documentation for the
	// measurement behind it.
	FullScan bool
	// FileMode and DirMode are the permissions of quarantine files and of
	// the quarantine directory. Default 0600 and 0700.
	FileMode, DirMode os.FileMode
	// Logger receives one event per repair. Default: none.
	Logger *zerolog.Logger
}

func (o Options) withDefaults() Options {
	if o.FileMode == 0 {
		o.FileMode = wal.DefaultFileMode
	}
	if o.DirMode == 0 {
		o.DirMode = wal.DefaultDirMode
	}
	if o.Logger == nil {
		nop := zerolog.Nop()
		o.Logger = &nop
	}
	return o
}

// Validate reports the first invalid field of o, by name.
func (o Options) Validate() error {
	switch {
	case o.Policy < FailOnCorruption || o.Policy > QuarantineCorruption:
		return fmt.Errorf("kafkawal: config: Policy: unknown corruption policy %d", o.Policy)
	case o.FileMode&^0o777 != 0 || o.DirMode&^0o777 != 0:
		return fmt.Errorf("kafkawal: config: FileMode/DirMode: only permission bits are allowed")
	}
	return nil
}

// QuarantineDir is the subdirectory of a log directory that keeps the bytes
// Repair cut out.
const QuarantineDir = "quarantine"

// tempSuffix names the file a segment is rewritten into before it is
// renamed over the segment. tidwall/wal and wal.ListSegments ignore it.
const tempSuffix = ".repair"

// Repair checks the log in dir (the tail only, unless FullScan) and repairs
// it so that wal.Open succeeds and never reads damaged bytes as a record.
// It is meant to run as wal.Options.BeforeOpen: the caller must hold the
// directory's lock.
//
// A torn or zero-filled tail of the last segment is copied to quarantine/
// and cut off. Mid-log corruption that lies wholly at or below the durable
// cursor (Delivered: its records are in Kafka already) is copied to
// quarantine/ and replaced by holes under every policy, logged at warn
// level and counted in DeliveredRecords, not LostRecords. Any other
// mid-log corruption fails Repair with a *CorruptionError and no change
// under FailOnCorruption; under QuarantineCorruption the damaged ranges are
// copied to quarantine/ and replaced by holes. Every change is
// fsync'd (files and directories) before Repair returns, so a second Repair
// finds nothing to do.
func Repair(dir string, opts Options) (Report, error) {
	if err := opts.Validate(); err != nil {
		return Report{}, err
	}
	opts = opts.withDefaults()
	segs, err := wal.ListSegments(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Report{}, nil // a new log: nothing to repair
	}
	if err != nil {
		return Report{}, err
	}
	wm, err := loadWatermark(dir)
	if err != nil {
		return Report{}, err
	}
	rep, checks, err := check(segs, ScanOptions{TailOnly: !opts.FullScan}, wm)
	if err != nil {
		return rep, err
	}
	if err := rep.judge(dir); err != nil {
		return rep, err
	}
	r := &repairer{dir: dir, opts: opts, log: opts.Logger, rep: &rep}
	if ce := rep.Undelivered(); ce != nil && opts.Policy == FailOnCorruption {
		r.log.Error().Str("segment", ce.segmentName()).Int64("offset", ce.Offset).Int64("bytes", ce.Bytes).
			Uint64("seq", ce.Seq).Uint64("cursor", rep.Cursor).Err(ce.Err).
			Msg("recovery: mid-log corruption; nothing changed (policy fail)")
		return rep, ce
	}
	for _, c := range checks {
		if c.fatal != nil && c.fatal.Delivered && c.next-c.seg.First <= maxHoles {
			c.allHoles()
		}
		if c.fatal != nil {
			r.log.Error().Str("segment", filepath.Base(c.seg.Path)).Int64("offset", c.fatal.Offset).Err(c.fatal.Err).
				Msg("recovery: corruption cannot be repaired; nothing changed")
			return rep, c.fatal
		}
	}
	if err := removeTemps(filepath.Join(dir, wal.SegmentsDir)); err != nil {
		return rep, err
	}
	for _, c := range checks {
		if len(c.spans) == 0 {
			continue
		}
		if err := r.fix(c); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// allHoles plans to replace every entry of a sealed segment by a hole: for
// a segment whose entries cannot be numbered but lie wholly at or below
// the cursor, so that none of them is needed again.
func (c *segCheck) allHoles() {
	c.spans = []span{{off: 0, end: c.size, count: int64(c.next - c.seg.First), cause: c.fatal.Err}}
	c.records, c.holes = 0, 0
	c.fatal = nil
}

type repairer struct {
	dir  string
	opts Options
	log  *zerolog.Logger
	rep  *Report
}

// fix repairs one segment as check planned: holes replace the damaged
// ranges, and the last segment is cut where its entries can no longer be
// numbered (or where its torn tail starts).
func (r *repairer) fix(c *segCheck) error {
	data, err := os.ReadFile(c.seg.Path)
	if err != nil {
		return fmt.Errorf("kafkawal: repair: %w", err)
	}
	if int64(len(data)) != c.size {
		return fmt.Errorf("kafkawal: repair: %s changed size during repair (%d, then %d bytes): is another process writing it?",
			c.seg.Path, c.size, len(data))
	}
	ranges, err := r.keep(c, data)
	if err != nil {
		return err
	}
	out := rebuild(data, c)
	if len(out) <= len(data) && bytes.Equal(out, data[:len(out)]) {
		err = truncateFile(c.seg.Path, int64(len(out)))
	} else {
		err = rewriteFile(c.seg.Path, out)
	}
	if err == nil {
		err = wal.SyncDir(filepath.Dir(c.seg.Path))
	}
	if err != nil {
		return fmt.Errorf("kafkawal: repair %s: %w", c.seg.Path, err)
	}
	if err := recheck(c, out); err != nil {
		return err
	}
	r.account(c, ranges)
	return nil
}

// removed is one damaged range Repair took out of a segment.
type removed struct {
	span
	seq   uint64
	quar  string // quarantine file; "" when no byte was removed
	bytes int64
	cut   bool // the last segment is cut here: the range runs to its end
	// delivered: the range lies at or below the cursor, so the records it
	// held are in Kafka already
	delivered bool
}

// keep copies every range about to be removed to quarantine, before the
// segment is changed.
func (r *repairer) keep(c *segCheck, data []byte) ([]removed, error) {
	name := filepath.Base(c.seg.Path)
	damage := c.damage()
	var out []removed
	for i, s := range c.spans {
		d := damage[i]
		rm := removed{span: s, seq: d.Seq, bytes: s.end - s.off,
			delivered: !s.torn && d.LastSeq != 0 && d.LastSeq <= r.rep.Cursor}
		suffix := "corrupt"
		if c.last() && s.off >= c.cutAt {
			rm.cut, rm.bytes = true, c.size-s.off
			switch {
			case s.unsynced && c.records+c.holes > s.before:
				suffix = "unsynced" // intact records behind it
			case s.torn:
				suffix = "torn"
			}
		}
		if rm.bytes > 0 {
			q, err := r.quarantine(name, s.off, suffix, data[s.off:s.off+rm.bytes])
			if err != nil {
				return nil, err
			}
			rm.quar = q
		}
		out = append(out, rm)
		if rm.cut {
			break
		}
	}
	return out, nil
}

// account counts and logs what repairing one segment cost.
func (r *repairer) account(c *segCheck, ranges []removed) {
	name := filepath.Base(c.seg.Path)
	if n := len(c.spans); c.spans[n-1].torn {
		r.rep.TornTailRepairs++
	}
	if !ranges[0].torn {
		r.rep.RewrittenSegments++ // anything but a torn tail alone is corruption
	}
	for _, rm := range ranges {
		ev := func(e *zerolog.Event) *zerolog.Event {
			return e.Str("segment", name).Int64("offset", rm.off).Int64("bytes", rm.bytes).
				Uint64("seq", rm.seq).Str("quarantine", rm.quar).Err(rm.cause)
		}
		switch {
		case rm.unsynced && c.records+c.holes > rm.before:
			// A write after the last completed fsync that never reached
			// the disk, before one that did: the intact entries behind it
			// go to quarantine with it (their sequences cannot be known),
			// and the records among them are counted.
			cut := c.records + c.holes - rm.before
			r.rep.UnsyncedRecords += cut
			ev(r.log.Warn()).Uint64("synced_seq", c.wm.seq).Int64("records_cut", cut).
				Msg("recovery: damage after the last fsync cut with every entry after it (written, never fsync'd)")
		case rm.torn:
			ev(r.log.Warn()).Msg("recovery: torn tail cut")
		case rm.cut:
			// The entries after a range of unknown size cannot be numbered,
			// so they go to quarantine with it. The range held at least one.
			lost := 1 + c.records + c.holes - rm.before
			lostBytes := rm.bytes
			for _, s := range c.spans {
				switch {
				case s.off <= rm.off:
				case s.torn:
					lostBytes -= s.end - s.off
				default:
					lost += max(s.count, 1)
				}
			}
			r.rep.LostRecords += lost
			r.rep.LostBytes += lostBytes
			r.rep.LostAtLeast = true
			ev(r.log.Error()).Int64("lost_records_at_least", lost).
				Msg("recovery: corrupt range cut from the last segment with every entry after it")
		case rm.delivered && rm.fix == 0:
			r.rep.DeliveredRecords += rm.count
			ev(r.log.Warn()).Int64("records", rm.count).Uint64("cursor", r.rep.Cursor).
				Msg("recovery: damaged records already delivered (at or below the cursor) replaced by holes; nothing lost")
		case rm.fix > 0:
			r.rep.RecoveredRecords++
			ev(r.log.Error()).Msg("recovery: damaged length prefix rewritten; the record's checksum holds and it is kept")
		default:
			r.rep.LostRecords += rm.count
			r.rep.LostBytes += rm.bytes
			ev(r.log.Error()).Int64("lost_records", rm.count).Msg("recovery: corrupt entries replaced by holes")
		}
	}
}

// rebuild returns the segment's bytes with a hole for each entry a damaged
// range held (a new length prefix for an intact entry behind a damaged
// one), cut at c.cutAt.
func rebuild(data []byte, c *segCheck) []byte {
	out := make([]byte, 0, len(data))
	var pos int64
	for _, s := range c.spans {
		if c.last() && s.off >= c.cutAt {
			break
		}
		out = append(out, data[pos:s.off]...)
		if s.fix > 0 {
			out = wal.AppendFrame(out, data[s.fix:s.end])
		} else {
			for range s.count {
				out = append(out, framedHole...)
			}
		}
		pos = s.end
	}
	end := c.cutAt
	if !c.last() {
		end = c.size
	}
	return append(out, data[pos:end]...)
}

var (
	hole       = wal.EncodeHole()
	framedHole = wal.AppendFrame(nil, hole)
)

// recheck proves the repaired bytes are clean, so that Repair never needs
// to run twice in a row.
func recheck(c *segCheck, out []byte) error {
	again := checkSegment(c.seg, out, c.next, c.wm)
	if len(again.spans) > 0 || again.fatal != nil {
		return fmt.Errorf("kafkawal: repair of %s left damage at offset %d (a bug in package recovery)",
			c.seg.Path, again.damage()[0].Offset)
	}
	return nil
}

// removeTemps deletes rewrites a crash interrupted before their rename:
// the segment they were meant to replace is still in place.
func removeTemps(segDir string) error {
	des, err := os.ReadDir(segDir)
	if err != nil {
		return fmt.Errorf("kafkawal: repair: %w", err)
	}
	for _, de := range des {
		if strings.HasSuffix(de.Name(), tempSuffix) && !de.IsDir() {
			if err := os.Remove(filepath.Join(segDir, de.Name())); err != nil {
				return fmt.Errorf("kafkawal: repair: %w", err)
			}
		}
	}
	return nil
}
