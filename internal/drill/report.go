package drill

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// Report is the outcome of a drill. Times are in milliseconds.
type Report struct {
	// OK: nothing acknowledged was lost, per-partition order held, every
	// planned kill happened and the drain run flushed and closed cleanly.
	OK bool `json:"ok"`
	// Failures says why not, one line each.
	Failures []string `json:"failures,omitempty"`

	lost map[uint64]bool // under ExactlyOnce, the lost ids, for LostWhere

	Broker     string   `json:"broker"`
	Bootstrap  string   `json:"bootstrap"`
	Listener   string   `json:"listener"`
	Topics     []string `json:"topics"`
	Partitions int      `json:"partitions"`
	Durability string   `json:"durability"`
	// ExactlyOnce: the children delivered with Delivery ExactlyOnce, the
	// topics were read back with read_committed, and a duplicate fails.
	ExactlyOnce bool    `json:"exactly_once"`
	Rate        float64 `json:"rate"`
	Size        int     `json:"size"`
	Seed        uint64  `json:"seed"`
	Nonce       string  `json:"nonce"`
	// Dir is the WAL directory; DirKept says it is still there.
	Dir     string `json:"dir"`
	DirKept bool   `json:"dir_kept"`

	KillsRequested int     `json:"kills_requested"`
	Kills          int     `json:"kills"`
	KillAfterMinMS float64 `json:"kill_after_min_ms"`
	KillAfterMaxMS float64 `json:"kill_after_max_ms"`
	// BrokerRestarts, NetCuts and PartitionStalls count the faults
	// injected.
	BrokerRestarts  int           `json:"broker_restarts"`
	NetCuts         int           `json:"net_cuts"`
	PartitionStalls int           `json:"partition_stalls"`
	Faults          []FaultReport `json:"faults,omitempty"`

	// Acknowledged counts distinct ids in the ledger.
	Acknowledged int `json:"acknowledged"`
	// Delivered counts this drill's records read back; Unique their ids.
	Delivered int `json:"delivered"`
	Unique    int `json:"unique"`
	// Lost counts acknowledged ids never read back; LostIDs the first.
	Lost    int      `json:"lost"`
	LostIDs []uint64 `json:"lost_ids,omitempty"`
	// Duplicates counts extra copies (at-least-once after a crash).
	Duplicates int `json:"duplicates"`
	// UncommittedCopies, under ExactlyOnce, counts the extra copies a
	// read_uncommitted consumer sees: records of aborted transactions
	// (a killed child's open one, an outage). Not a failure; it shows
	// the read_committed read was the one that mattered.
	UncommittedCopies int `json:"uncommitted_copies,omitempty"`
	// LostUncommitted, under ExactlyOnce, counts the lost records that a
	// read_uncommitted consumer does see: they reached Kafka, in a
	// transaction that was aborted or never ended. LostWhere says, for
	// each partition they are in, where, and how far read_committed
	// consumers can read it (an end offset held back by a transaction
	// left open shows there).
	LostUncommitted int      `json:"lost_uncommitted,omitempty"`
	LostWhere       []string `json:"lost_where,omitempty"`
	// OrderViolations counts first occurrences out of id order within a
	// partition; Violations describes the first.
	OrderViolations int      `json:"order_violations"`
	Violations      []string `json:"violations,omitempty"`
	// Unidentified counts this drill's records without a readable id.
	Unidentified int `json:"unidentified"`
	// UnackedDelivered counts ids delivered but not in the ledger: the
	// kill came between the WAL write and the ledger line. Normal.
	UnackedDelivered int `json:"unacked_delivered"`
	// OtherRecords counts records of other drills (or other producers) in
	// the topics, ignored.
	OtherRecords int `json:"other_records"`

	// MaxRestartToFirstDeliveryMS is the longest time from a child's start
	// to its first delivery report, over the runs that had one (run
	// MaxRestartToFirstDeliveryRun); ...CleanMS the same over runs that no
	// fault overlapped.
	MaxRestartToFirstDeliveryMS      float64 `json:"max_restart_to_first_delivery_ms"`
	MaxRestartToFirstDeliveryRun     int     `json:"max_restart_to_first_delivery_run"`
	MaxRestartToFirstDeliveryCleanMS float64 `json:"max_restart_to_first_delivery_clean_ms"`
	// RunsWithoutDelivery counts runs that saw no delivery report before
	// they ended (killed early, or during a fault).
	RunsWithoutDelivery int `json:"runs_without_delivery"`
	// RunsWithoutDeliveryClean counts those that no fault overlapped: a
	// run killed before its first delivery bounds nothing, so these say
	// how far the maximum above can be trusted.
	RunsWithoutDeliveryClean int `json:"runs_without_delivery_clean"`
	// Repairs sums the torn-tail repairs reported by every Open; Replayed
	// the records each Open found after the cursor; WALLostRecords the
	// records mid-log corruption destroyed (must be 0).
	Repairs        int    `json:"repairs"`
	Replayed       uint64 `json:"replayed"`
	WALLostRecords int64  `json:"wal_lost_records"`
	// OpensWithParked counts the children that opened the WAL with
	// records in park logs: a kill landed while a partition was parked.
	OpensWithParked int `json:"opens_with_parked"`

	// PowerCut is the power-cut drill's part (Config.PowerCuts).
	PowerCut *PowerCutReport `json:"power_cut,omitempty"`

	// Drained: the final run flushed and closed cleanly and exited 0.
	Drained bool       `json:"drained"`
	Drain   *DrainLine `json:"drain,omitempty"`

	ElapsedMS float64     `json:"elapsed_ms"`
	Runs      []RunReport `json:"runs"`
}

// RunReport is one child's life. Times are milliseconds since the drill
// started, or since the child started for the *_after_ms fields.
type RunReport struct {
	Run         int     `json:"run"`
	PID         int     `json:"pid"`
	Drain       bool    `json:"drain,omitempty"`
	StartMS     float64 `json:"start_ms"`
	EndMS       float64 `json:"end_ms"`
	KillAfterMS float64 `json:"kill_after_ms,omitempty"`
	// Exit is how the child ended ("signal: killed", "exit status 0").
	Exit   string    `json:"exit"`
	Killed bool      `json:"killed"`
	Acked  uint64    `json:"acked"`
	Open   *OpenLine `json:"open,omitempty"`
	// OpenAfterMS and FirstDeliveryAfterMS: when the parent read the
	// child's open and first delivered lines; null if it never did.
	OpenAfterMS          *float64 `json:"open_after_ms"`
	FirstDeliveryAfterMS *float64 `json:"first_delivery_after_ms"`
	// DuringFault: a fault overlapped the run.
	DuringFault bool `json:"during_fault"`
	TornLine    bool `json:"torn_ledger_line,omitempty"`
}

func (r *Report) fail(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// addRun folds one finished child, started at start, into the report; l
// is nil if its ledger could not be read to the end.
func (r *Report) addRun(rr RunReport, start time.Time, l *runLedger) {
	if l != nil {
		rr.Acked = l.ackedCount()
		rr.Open = l.Open
		rr.TornLine = l.Torn
		if l.Open != nil {
			d := ms(l.OpenAt.Sub(start))
			rr.OpenAfterMS = &d
			r.Repairs += l.Open.Repairs
			r.Replayed += l.Open.Replay
			if l.Open.Parked > 0 {
				r.OpensWithParked++
			}
			r.WALLostRecords += l.Open.LostRecords
		}
		if !l.FirstDelivery.IsZero() {
			d := ms(l.FirstDelivery.Sub(start))
			rr.FirstDeliveryAfterMS = &d
		}
		for _, g := range l.Garbage {
			r.fail("run %d: ledger line %s", rr.Run, g)
		}
		if l.ReadErr != nil {
			r.fail("run %d: reading the ledger: %v", rr.Run, l.ReadErr)
		}
	}
	r.Runs = append(r.Runs, rr)
}

// finishRuns computes what needs every run and fault: faults overlapping
// runs, and the restart-to-first-delivery maxima.
func (r *Report) finishRuns() {
	for i := range r.Runs {
		rr := &r.Runs[i]
		for _, f := range r.Faults {
			if f.StartMS < rr.EndMS && f.EndMS > rr.StartMS {
				rr.DuringFault = true
			}
		}
		if rr.FirstDeliveryAfterMS == nil {
			r.RunsWithoutDelivery++
			if !rr.DuringFault {
				r.RunsWithoutDeliveryClean++
			}
			continue
		}
		d := *rr.FirstDeliveryAfterMS
		if d > r.MaxRestartToFirstDeliveryMS {
			r.MaxRestartToFirstDeliveryMS, r.MaxRestartToFirstDeliveryRun = d, rr.Run
		}
		if !rr.DuringFault {
			r.MaxRestartToFirstDeliveryCleanMS = max(r.MaxRestartToFirstDeliveryCleanMS, d)
		}
	}
}

// ackedIDs expands the ledgers into the list of acknowledged ids.
func ackedIDs(ledgers []*runLedger) []uint64 {
	var ids []uint64
	for _, l := range ledgers {
		if l == nil {
			continue
		}
		for _, rg := range l.Acked {
			for i := range rg.Count {
				ids = append(ids, rg.First+i)
			}
		}
	}
	return ids
}

// verify compares this drill's records among recs with acked.
func (r *Report) verify(acked []uint64, recs []*kgo.Record) {
	mine := recs[:0:0]
	for _, rec := range recs {
		if recordNonce(rec) == r.Nonce {
			mine = append(mine, rec)
		} else {
			r.OtherRecords++
		}
	}
	v := kafkatest.Verify(acked, mine, recordID, nil)
	r.Acknowledged, r.Delivered, r.Unique = v.Acked, v.Delivered, v.Unique
	r.Lost, r.LostIDs, r.Duplicates = v.Lost, v.LostIDs, v.Duplicates
	r.OrderViolations, r.Violations, r.Unidentified = v.OrderViolations, v.Violations, v.Unidentified
	r.UnackedDelivered = v.Unique - (v.Acked - v.Lost)
	if v.Lost > 0 && r.ExactlyOnce {
		r.lost = make(map[uint64]bool, v.Lost)
		for _, id := range acked {
			r.lost[id] = true
		}
		for _, rec := range mine {
			if id, ok := recordID(rec); ok {
				delete(r.lost, id)
			}
		}
	}
}

// verifyUncommitted counts the extra copies among this drill's records
// read with read_uncommitted.
func (r *Report) verifyUncommitted(recs []*kgo.Record) {
	mine := recs[:0:0]
	for _, rec := range recs {
		if recordNonce(rec) == r.Nonce {
			mine = append(mine, rec)
		}
	}
	v := kafkatest.Verify(nil, mine, recordID, nil)
	r.UncommittedCopies = v.Duplicates
	if len(r.lost) == 0 {
		return
	}
	type span struct {
		n        int
		from, to int64
	}
	where := map[string]*span{}
	var keys []string
	for _, rec := range mine {
		id, ok := recordID(rec)
		if !ok || !r.lost[id] {
			continue
		}
		delete(r.lost, id) // count each lost id once
		r.LostUncommitted++
		k := fmt.Sprintf("%s/%d", rec.Topic, rec.Partition)
		sp := where[k]
		if sp == nil {
			sp = &span{from: rec.Offset, to: rec.Offset}
			where[k] = sp
			keys = append(keys, k)
		}
		sp.n++
		sp.from, sp.to = min(sp.from, rec.Offset), max(sp.to, rec.Offset)
	}
	slices.Sort(keys)
	for _, k := range keys {
		sp := where[k]
		r.LostWhere = append(r.LostWhere, fmt.Sprintf("%s: %d at offsets %d..%d", k, sp.n, sp.from, sp.to))
	}
}

// noteEnds adds to LostWhere each partition's end offsets, committed
// (what read_committed consumers can read up to) and not.
func (r *Report) noteEnds(ends []string) { r.LostWhere = append(r.LostWhere, ends...) }

// idNames names ids as the children made them (ChildConfig.id): the run
// that appended each and its place in that run's records, from 1, which
// say where in the drill's log to look.
func idNames(ids []uint64) string {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = fmt.Sprintf("run %d record %d", id>>32, id&(1<<32-1))
	}
	return strings.Join(names, ", ")
}

// judge decides OK from everything gathered.
func (r *Report) judge() {
	lost := r.Lost
	if r.PowerCut != nil {
		// Records lost to power cuts are judged by what the durability
		// mode allows; the drain run had no cut and may lose nothing.
		lost = r.PowerCut.LostUncut
		r.PowerCut.judge(r)
	}
	if lost > 0 {
		why := ""
		if !r.Drained {
			why = "; the drain failed, so they may still wait in the WAL"
		}
		r.fail("lost %d acknowledged records (first ids %v: %s)%s", lost, r.LostIDs, idNames(r.LostIDs), why)
	}
	if r.OrderViolations > 0 {
		r.fail("%d per-partition order violations: %s", r.OrderViolations, strings.Join(r.Violations, "; "))
	}
	if r.ExactlyOnce && r.Duplicates > 0 {
		r.fail("%d duplicates read with read_committed under exactly-once delivery", r.Duplicates)
	}
	if r.Unidentified > 0 {
		r.fail("%d records of this drill carry no readable id", r.Unidentified)
	}
	if r.PowerCut == nil && r.Kills != r.KillsRequested {
		r.fail("%d of %d kills done", r.Kills, r.KillsRequested)
	}
	if !r.Drained {
		r.fail("the drain run did not flush and close cleanly")
	}
	if r.WALLostRecords > 0 {
		r.fail("recovery reported %d records lost to corruption", r.WALLostRecords)
	}
	if r.PartitionStalls > 0 && r.Kills > 0 && r.OpensWithParked == 0 && !r.ExactlyOnce {
		// The stall fault exists to kill children while records are parked
		// and while they drain; a run where no kill landed then did not
		// test that, and must not pass as if it had. (Exactly-once does not
		// park: its stalled records wait in the WAL.)
		r.fail("%d partition stalls, but no child opened with parked records: no kill landed while a partition was parked (raise --kill-after-max or --stall-for)", r.PartitionStalls)
	}
	r.OK = len(r.Failures) == 0
}

// ExitCode is the drill command's exit status: 0 when OK, 1 otherwise.
func (r *Report) ExitCode() int {
	if r.OK {
		return 0
	}
	return 1
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r for a human.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	verdict := "PASS"
	if !r.OK {
		verdict = "FAIL"
	}
	dur := func(m float64) time.Duration {
		return (time.Duration(m * float64(time.Millisecond))).Round(time.Millisecond)
	}
	fmt.Fprintf(&b, "kafkawal drill: %s\n", verdict)
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "  FAILURE: %s\n", f)
	}
	row := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "  %-32s %s\n", k, fmt.Sprintf(format, args...))
	}
	row("broker", "%s at %s (%s); topics %s x %d partitions", r.Broker, r.Bootstrap, r.Listener, strings.Join(r.Topics, ","), r.Partitions)
	row("load", "%g records/s of %d bytes, durability %s", r.Rate, r.Size, r.Durability)
	if r.ExactlyOnce {
		row("delivery", "exactly once; read back with read_committed")
	}
	row("seed", "%d", r.Seed)
	if r.PowerCut != nil {
		r.PowerCut.rows(row)
	} else {
		row("kills (SIGKILL)", "%d of %d, %v..%v after start", r.Kills, r.KillsRequested, dur(r.KillAfterMinMS), dur(r.KillAfterMaxMS))
	}
	row("broker restarts", "%d", r.BrokerRestarts)
	row("network cuts", "%d", r.NetCuts)
	row("partition stalls", "%d", r.PartitionStalls)
	row("acknowledged", "%d", r.Acknowledged)
	row("delivered", "%d (%d unique, %d beyond the ledger)", r.Delivered, r.Unique, r.UnackedDelivered)
	row("lost", "%d", r.Lost)
	row("duplicates", "%d", r.Duplicates)
	if r.ExactlyOnce {
		row("aborted copies (read_uncommitted)", "%d", r.UncommittedCopies)
		if r.Lost > 0 {
			row("lost but read_uncommitted", "%d", r.LostUncommitted)
			for _, w := range r.LostWhere {
				row("  where", "%s", w)
			}
		}
	}
	row("order violations", "%d", r.OrderViolations)
	if r.MaxRestartToFirstDeliveryRun > 0 {
		row("max restart -> first delivery", "%v (run %d); %v in runs without a fault",
			dur(r.MaxRestartToFirstDeliveryMS), r.MaxRestartToFirstDeliveryRun, dur(r.MaxRestartToFirstDeliveryCleanMS))
		row("runs killed before a delivery", "%d of %d (%d without a fault)", r.RunsWithoutDelivery, len(r.Runs), r.RunsWithoutDeliveryClean)
	} else {
		row("max restart -> first delivery", "no run saw a delivery")
	}
	row("repairs", "%d torn tails over %d opens; %d records replayed", r.Repairs, r.opens(), r.Replayed)
	if r.PartitionStalls > 0 {
		row("opens with parked records", "%d", r.OpensWithParked)
	}
	if r.Drain != nil {
		row("drain", "ok: flush %v, close %v, %d resent", dur(r.Drain.FlushMS), dur(r.Drain.CloseMS), r.Drain.Resent)
	} else {
		row("drain", "FAILED")
	}
	if r.OtherRecords > 0 {
		row("other records (ignored)", "%d", r.OtherRecords)
	}
	row("elapsed", "%v", dur(r.ElapsedMS))
	if r.DirKept {
		row("WAL directory (kept)", "%s", r.Dir)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) opens() int {
	n := 0
	for _, rr := range r.Runs {
		if rr.Open != nil {
			n++
		}
	}
	return n
}
