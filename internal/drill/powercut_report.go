package drill

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal/wal"
)

// PowerCutReport is what a power-cut drill did and what the cuts cost.
// Times are milliseconds since the drill started.
type PowerCutReport struct {
	Requested int `json:"requested"`
	// Metadata is the filesystem's model of namespace durability.
	Metadata        string `json:"metadata"`
	SegmentBytes    int64  `json:"segment_bytes"`
	DeadLetterEvery int    `json:"dead_letter_every"`
	// WAL is the WAL directory as it stands after the drill.
	WAL string `json:"wal"`

	// Variants counts the cuts by what of the unsynced state reached the
	// disk; Aims by what they aimed at ("time" or an operation kind);
	// TriggersFired those whose operation came (the rest fell back to a
	// cut at a random instant).
	Variants      map[string]int `json:"variants"`
	Aims          map[string]int `json:"aims"`
	TriggersFired map[string]int `json:"triggers_fired"`

	// Lost records (acknowledged, in neither Kafka nor the dead-letter
	// log) split by when they were acknowledged: after the start of the
	// last fsync of a durable segment that completed before their run's
	// cut (what SyncPeriodic and SyncNever may lose), or before it (never
	// allowed: that fsync covered them).
	LostAfterSync     int      `json:"lost_after_sync"`
	LostBeforeSync    int      `json:"lost_before_sync"`
	LostBeforeSyncIDs []uint64 `json:"lost_before_sync_ids,omitempty"`
	// AtRisk counts the acknowledged records of the bound: acknowledged
	// after that fsync started. Lost <= AtRisk.
	AtRisk int `json:"at_risk"`
	// LostUncut counts records lost by the drain run, which no cut ended
	// (never allowed).
	LostUncut int `json:"lost_uncut"`
	// MaxLostAgeMS is the longest time from a lost record's
	// acknowledgement (as the drill read it) to its run's cut.
	MaxLostAgeMS float64 `json:"max_lost_age_ms"`

	// DeadLettersExpected counts acknowledged records that Kafka refuses
	// for good; DeadLettered those of them in the dead-letter log
	// (the rest are lost and counted above).
	DeadLettersExpected int `json:"dead_letters_expected"`
	DeadLettered        int `json:"dead_lettered"`

	// Forged counts records read back (or dead-lettered) that no child
	// ever passed to AppendBatch, or whose value is not their id's.
	Forged    int      `json:"forged"`
	ForgedIDs []string `json:"forged_ids,omitempty"`
	// CursorBackwards counts opens whose WAL held a cursor below the last
	// one the previous run had persisted (a completed cursor store lost);
	// CursorClamped opens that lowered a cursor beyond the last record.
	CursorBackwards int      `json:"cursor_backwards"`
	CursorClamped   int      `json:"cursor_clamped"`
	CursorProblems  []string `json:"cursor_problems,omitempty"`

	Cuts []CutSummary `json:"cuts"`

	cutAt, syncedAt map[int]time.Time // by run
}

// CutSummary is one cut.
type CutSummary struct {
	Run int `json:"run"`
	// Aim is what the cut aimed at; Trigger the trigger that fired ("":
	// a cut at a random instant); Op the operation it cut at, After
	// whether that operation had taken effect.
	Aim     string  `json:"aim"`
	Trigger string  `json:"trigger,omitempty"`
	Op      string  `json:"op,omitempty"`
	After   bool    `json:"after,omitempty"`
	AtMS    float64 `json:"at_ms"`
	Variant string  `json:"variant"`
	// MetaPrefix: a prefix of the unsynced namespace changes reached the
	// disk (MetaPersisted of MetaPersisted+MetaLost).
	MetaPrefix    bool `json:"meta_prefix,omitempty"`
	MetaPersisted int  `json:"meta_persisted,omitempty"`
	MetaLost      int  `json:"meta_lost,omitempty"`
	// SyncedAtMS is when the last completed fsync of a durable segment
	// started; null if none did during the run.
	SyncedAtMS *float64 `json:"synced_at_ms"`
	// DirtyFiles had unsynced data; PersistedPages of theirs reached the
	// disk anyway.
	DirtyFiles     int `json:"dirty_files"`
	PersistedPages int `json:"persisted_pages"`
	// Acked, AtRisk and Lost count the run's acknowledged records, those
	// acknowledged after SyncedAt, and those lost.
	Acked  int `json:"acked"`
	AtRisk int `json:"at_risk"`
	Lost   int `json:"lost"`
}

// ackTimes maps every acknowledged id to when the drill read its ack.
func ackTimes(ledgers map[int]*runLedger) map[uint64]time.Time {
	at := map[uint64]time.Time{}
	for _, l := range ledgers {
		if l == nil {
			continue
		}
		for _, r := range l.AckedAt {
			for i := range r.Count {
				at[r.First+i] = r.At
			}
		}
	}
	return at
}

// checkPowerCuts judges what the power cuts cost. acked holds every
// acknowledged id; delivered the drill's records read back from Kafka;
// dead the drill's dead letters; mode the durability mode.
func (pc *PowerCutReport) check(r *Report, ledgers map[int]*runLedger, delivered []*kgo.Record, dead []wal.DeadLetter, size int) {
	// What survived: ids in Kafka, ids in the dead-letter log.
	have := map[uint64]bool{}
	tried := map[int][]idRange{}
	for run, l := range ledgers {
		if l != nil {
			tried[run] = l.Tried
		}
	}
	forged := func(what string, id uint64, value []byte, want int) {
		if !triedID(tried, id) || !bytes.Equal(value, idValue(id, want)) {
			pc.Forged++
			if len(pc.ForgedIDs) < 5 {
				pc.ForgedIDs = append(pc.ForgedIDs, what+" "+strconv.FormatUint(id, 10))
			}
		}
	}
	for _, rec := range delivered {
		if id, ok := recordID(rec); ok {
			have[id] = true
			forged("delivered", id, rec.Value, size)
		}
	}
	deadSeen := map[uint64]bool{}
	for _, dl := range dead {
		id, ok := deadLetterID(dl)
		if !ok {
			continue
		}
		deadSeen[id] = true
		forged("dead-lettered", id, dl.Record.Value, len(dl.Record.Value))
		if !isDeadLetter(id, pc.DeadLetterEvery) {
			r.fail("record %d was dead-lettered: %s", id, dl.Err)
		}
	}
	at := ackTimes(ledgers)
	byRun := map[int]*CutSummary{}
	for i := range pc.Cuts {
		byRun[pc.Cuts[i].Run] = &pc.Cuts[i]
	}
	for _, id := range slices.Sorted(maps.Keys(at)) {
		run := int(id >> 32)
		cs := byRun[run] // nil for the drain run: no cut
		dl := isDeadLetter(id, pc.DeadLetterEvery)
		if dl {
			pc.DeadLettersExpected++
		}
		synced := pc.syncedAt[run]
		risky := cs != nil && !at[id].Before(synced)
		if cs != nil {
			cs.Acked++
			if risky {
				cs.AtRisk++
				pc.AtRisk++
			}
		}
		switch {
		case dl && deadSeen[id]:
			pc.DeadLettered++
			continue
		case !dl && have[id]:
			continue
		}
		if cs == nil {
			pc.LostUncut++
			continue
		}
		cs.Lost++
		pc.MaxLostAgeMS = max(pc.MaxLostAgeMS, ms(pc.cutAt[run].Sub(at[id])))
		if risky {
			pc.LostAfterSync++
		} else {
			pc.LostBeforeSync++
			if len(pc.LostBeforeSyncIDs) < 20 {
				pc.LostBeforeSyncIDs = append(pc.LostBeforeSyncIDs, id)
			}
		}
	}
	pc.checkCursors(r, ledgers)
}

// checkCursors compares each open's cursor with the last one persisted
// before it: a completed cursor store must survive a cut. Only an Open may
// lower it, when records after it were lost (a clamp, never under
// SyncAlways); an Open cut before it reported may have, so under the other
// modes the comparison starts again after one.
func (pc *PowerCutReport) checkCursors(r *Report, ledgers map[int]*runLedger) {
	var prev uint64 // 0: unknown
	for _, rr := range r.Runs {
		l := ledgers[rr.Run]
		if l == nil {
			prev = 0
			continue
		}
		switch o := l.Open; {
		case o != nil:
			if o.CursorFound < prev {
				pc.CursorBackwards++
				pc.problem("run %d opened cursor %d, below %d persisted before it", rr.Run, o.CursorFound, prev)
			}
			if o.CursorClamped {
				pc.CursorClamped++
				if r.Durability == "always" {
					pc.problem("run %d: cursor %d beyond the last record %d under SyncAlways", rr.Run, o.CursorFound, o.LastSeq)
				}
				prev = o.Cursor
			}
			prev = max(prev, o.Cursor)
		case r.Durability != "always":
			prev = 0
		}
		prev = max(prev, l.Cursor)
	}
}

func (pc *PowerCutReport) problem(format string, args ...any) {
	if len(pc.CursorProblems) < 10 {
		pc.CursorProblems = append(pc.CursorProblems, fmt.Sprintf(format, args...))
	}
}

func triedID(tried map[int][]idRange, id uint64) bool {
	for _, r := range tried[int(id>>32)] {
		if id >= r.First && id < r.First+r.Count {
			return true
		}
	}
	return false
}

// deadLetterID reads a dead letter's drill id.
func deadLetterID(dl wal.DeadLetter) (uint64, bool) {
	for _, h := range dl.Record.Headers {
		if h.Key == IDHeader {
			id, err := strconv.ParseUint(string(h.Value), 10, 64)
			return id, err == nil
		}
	}
	return 0, false
}

// deadLetterNonce reads a dead letter's drill nonce.
func deadLetterNonce(dl wal.DeadLetter) string {
	for _, h := range dl.Record.Headers {
		if h.Key == NonceHeader {
			return string(h.Value)
		}
	}
	return ""
}

// judge adds the power cuts' failures: under SyncAlways nothing
// acknowledged may be lost; under every mode nothing acknowledged before a
// completed fsync, no forged record and no cursor that went back.
func (pc *PowerCutReport) judge(r *Report) {
	lost := pc.LostAfterSync + pc.LostBeforeSync
	if r.Durability == "always" && lost > 0 {
		r.fail("power cuts lost %d acknowledged records under SyncAlways", lost)
	}
	if pc.LostBeforeSync > 0 {
		r.fail("power cuts lost %d records acknowledged before a completed fsync (first ids %v)", pc.LostBeforeSync, pc.LostBeforeSyncIDs)
	}
	if pc.Forged > 0 {
		r.fail("%d records came back that no child appended as such (%s)", pc.Forged, strings.Join(pc.ForgedIDs, ", "))
	}
	if len(pc.CursorProblems) > 0 {
		r.fail("cursor: %s", strings.Join(pc.CursorProblems, "; "))
	}
	if len(pc.Cuts) != pc.Requested {
		r.fail("%d of %d power cuts done", len(pc.Cuts), pc.Requested)
	}
}

// rows writes the power cuts' part of the text report.
func (pc *PowerCutReport) rows(row func(k, format string, args ...any)) {
	kv := func(m map[string]int) string {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
		return strings.Join(parts, ", ")
	}
	row("power cuts", "%d of %d; metadata %s; segments of %d bytes", len(pc.Cuts), pc.Requested, pc.Metadata, pc.SegmentBytes)
	row("  variants", "%s", kv(pc.Variants))
	row("  aimed at", "%s", kv(pc.Aims))
	row("  triggers fired", "%s", kv(pc.TriggersFired))
	prefix := 0
	for _, c := range pc.Cuts {
		if c.MetaPrefix {
			prefix++
		}
	}
	row("  namespace prefixes kept", "%d cuts", prefix)
	row("lost to power cuts", "%d acknowledged after the last completed fsync (of %d at risk), %d before it",
		pc.LostAfterSync, pc.AtRisk, pc.LostBeforeSync)
	if pc.LostAfterSync+pc.LostBeforeSync > 0 {
		row("  oldest lost at its cut", "%v", (time.Duration(pc.MaxLostAgeMS * float64(time.Millisecond))).Round(time.Millisecond))
	}
	row("dead letters", "%d of %d expected in the dead-letter log", pc.DeadLettered, pc.DeadLettersExpected)
	row("forged records", "%d", pc.Forged)
	row("cursor", "%d went back, %d clamped", pc.CursorBackwards, pc.CursorClamped)
}
