package drill

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const testNonce = "n1"

// id1 and id2 are the first ids of runs 1 and 2.
const (
	id1 = 1<<32 | 1
	id2 = 2<<32 | 1
)

// stream returns records of topic[partition] at offsets 0.. carrying ids,
// tagged with nonce.
func stream(nonce, topic string, partition int32, ids ...uint64) []*kgo.Record {
	recs := make([]*kgo.Record, len(ids))
	for i, id := range ids {
		recs[i] = &kgo.Record{Topic: topic, Partition: partition, Offset: int64(i), Headers: []kgo.RecordHeader{
			{Key: IDHeader, Value: []byte(strconv.FormatUint(id, 10))},
			{Key: NonceHeader, Value: []byte(nonce)},
		}}
	}
	return recs
}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func TestReadLedger(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	for _, tc := range []struct {
		name      string
		in        string
		acked     []idRange
		open      bool
		delivered bool
		drained   bool
		torn      bool
		garbage   int
	}{
		{name: "empty"},
		{
			name:      "full run, torn last line ignored",
			in:        "open {\"repairs\":1,\"replay\":7}\nack 4294967297 3\ndelivered 123\nack 4294967300 2\ndelivered 456\nack 42949",
			acked:     []idRange{{id1, 3}, {id1 + 3, 2}},
			open:      true,
			delivered: true,
			torn:      true,
		},
		{
			name:    "drain",
			in:      "open {}\nack 4294967297 1\ndrained {\"delivered\":1}\n",
			acked:   []idRange{{id1, 1}},
			open:    true,
			drained: true,
		},
		{name: "ack without count", in: "ack 4294967297\n", garbage: 1},
		{name: "ack of nothing", in: "ack 4294967297 0\n", garbage: 1},
		{name: "ack not a number", in: "ack x 1\n", garbage: 1},
		{name: "unknown kind", in: "hello world\nack 4294967297 1\n", acked: []idRange{{id1, 1}}, garbage: 1},
		{name: "bad json", in: "open {\n", garbage: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := readLedger(strings.NewReader(tc.in), fixedClock(t0))
			if !slices.Equal(l.Acked, tc.acked) {
				t.Errorf("acked %v, want %v", l.Acked, tc.acked)
			}
			if (l.Open != nil) != tc.open || (!l.FirstDelivery.IsZero()) != tc.delivered || (l.Drained != nil) != tc.drained {
				t.Errorf("open %v delivered %v drained %v, want %v %v %v", l.Open, l.FirstDelivery, l.Drained, tc.open, tc.delivered, tc.drained)
			}
			if l.Torn != tc.torn || len(l.Garbage) != tc.garbage || l.ReadErr != nil {
				t.Errorf("torn %v garbage %q err %v, want torn %v and %d garbage lines", l.Torn, l.Garbage, l.ReadErr, tc.torn, tc.garbage)
			}
			if tc.open && l.Open.Repairs != 0 && l.Open.Replay != 7 {
				t.Errorf("open line %+v", l.Open)
			}
		})
	}
}

// TestLedgerWriterRoundTrip: what the child writes, the parent reads.
func TestLedgerWriterRoundTrip(t *testing.T) {
	var b bytes.Buffer
	lw := &ledgerWriter{w: &b}
	for _, err := range []error{
		lw.line(lineOpen, OpenLine{Repairs: 1, Replay: 9, OpenMS: 1.5}),
		lw.line(lineAck, uint64(id2), uint64(10)),
		lw.line(lineDelivered, time.Now().UnixNano()),
		lw.line(lineDrained, DrainLine{Delivered: 10, Cursor: 10}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	l := readLedger(&b, time.Now)
	if l.Open == nil || *l.Open != (OpenLine{Repairs: 1, Replay: 9, OpenMS: 1.5}) || l.ackedCount() != 10 ||
		l.Acked[0].First != id2 || l.FirstDelivery.IsZero() || l.Drained == nil || l.Drained.Delivered != 10 ||
		len(l.Garbage) != 0 || l.Torn {
		t.Fatalf("read back %+v", l)
	}
}

// TestReportVerdict feeds the report logic crafted ledgers and read-backs:
// it must fail a drill exactly when something acknowledged is missing or
// out of order, or the drill itself fell short.
func TestReportVerdict(t *testing.T) {
	// Run 1 acknowledged ids id1..id1+3, run 2 id2..id2+1; round-robin
	// over one topic with 2 partitions.
	const ledger1 = "open {}\nack 4294967297 2\nack 4294967299 2\ndelivered 1\n"
	const ledger2 = "open {\"repairs\":1,\"replay\":2}\nack 8589934593 2\nack 85899"
	p0 := func(nonce string, ids ...uint64) []*kgo.Record { return stream(nonce, "t", 0, ids...) }
	p1 := func(nonce string, ids ...uint64) []*kgo.Record { return stream(nonce, "t", 1, ids...) }
	all := func(recs ...[]*kgo.Record) []*kgo.Record { return slices.Concat(recs...) }

	for _, tc := range []struct {
		name     string
		ledger2  string
		recs     []*kgo.Record
		kills    int
		ok       bool
		lost     []uint64
		order    int
		dups     int
		other    int
		stalls   int
		failWith string
	}{
		{
			name: "everything, with replayed duplicates",
			recs: all(p0(testNonce, id1, id1+2, id1+2, id2), p1(testNonce, id1+1, id1+3, id2+1)),
			ok:   true, dups: 1,
		},
		{
			name: "delivered beyond the ledger is fine",
			recs: all(p0(testNonce, id1, id1+2, id2, id2+2), p1(testNonce, id1+1, id1+3, id2+1)),
			ok:   true,
		},
		{
			name: "one acknowledged record lost",
			recs: all(p0(testNonce, id1, id1+2, id2), p1(testNonce, id1+1, id2+1)),
			lost: []uint64{id1 + 3}, failWith: "lost 1 acknowledged records (first ids [4294967300]: run 1 record 4)",
		},
		{
			name:  "a partition out of order",
			recs:  all(p0(testNonce, id1, id2, id1+2), p1(testNonce, id1+1, id1+3, id2+1)),
			order: 1, failWith: "order violations",
		},
		{
			name:  "another drill's records are ignored",
			recs:  all(p0(testNonce, id1, id1+2, id2), p0("other", 5, 1), p1(testNonce, id1+1, id1+3, id2+1)),
			ok:    true,
			other: 2,
		},
		{
			name:     "another drill's records do not hide a loss",
			recs:     all(p0(testNonce, id1, id1+2, id2), p1("other", id1+1, id1+3, id2+1)),
			lost:     []uint64{id1 + 1, id1 + 3, id2 + 1},
			other:    3,
			failWith: "lost 3",
		},
		{
			name:     "a kill fell short",
			recs:     all(p0(testNonce, id1, id1+2, id2), p1(testNonce, id1+1, id1+3, id2+1)),
			kills:    1,
			failWith: "1 of 2 kills",
		},
		{
			name:     "partition stalls that no kill landed in",
			recs:     all(p0(testNonce, id1, id1+2, id2), p1(testNonce, id1+1, id1+3, id2+1)),
			stalls:   2,
			failWith: "no child opened with parked records",
		},
		{
			name:     "no drain",
			recs:     all(p0(testNonce, id1, id1+2, id2), p1(testNonce, id1+1, id1+3, id2+1)),
			failWith: "drain",
		},
		{
			name:     "a garbled ledger line",
			ledger2:  "open {\"repairs\":1,\"replay\":2}\nack 8589934593 2\nack two\n",
			recs:     all(p0(testNonce, id1, id1+2, id2), p1(testNonce, id1+1, id1+3, id2+1)),
			failWith: "ledger line",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kills == 0 {
				tc.kills = 2
			}
			l2 := ledger2
			if tc.ledger2 != "" {
				l2 = tc.ledger2
			}
			start := time.Unix(1700000000, 0)
			rep := &Report{Nonce: testNonce, KillsRequested: 2, Kills: tc.kills, Drained: tc.name != "no drain", PartitionStalls: tc.stalls}
			ledgers := []*runLedger{
				readLedger(strings.NewReader(ledger1), fixedClock(start.Add(50*time.Millisecond))),
				readLedger(strings.NewReader(l2), fixedClock(start.Add(2*time.Second))),
			}
			rep.addRun(RunReport{Run: 1, StartMS: 0, EndMS: 1000}, start, ledgers[0])
			rep.addRun(RunReport{Run: 2, StartMS: 1000, EndMS: 2000}, start.Add(time.Second), ledgers[1])
			rep.verify(ackedIDs(ledgers), tc.recs)
			rep.finishRuns()
			rep.judge()

			if rep.OK != tc.ok || (rep.ExitCode() == 0) != tc.ok {
				t.Fatalf("OK %v exit %d, want ok %v; failures %q", rep.OK, rep.ExitCode(), tc.ok, rep.Failures)
			}
			if tc.failWith != "" && !strings.Contains(strings.Join(rep.Failures, "\n"), tc.failWith) {
				t.Errorf("failures %q lack %q", rep.Failures, tc.failWith)
			}
			if rep.Acknowledged != 6 || rep.Lost != len(tc.lost) || !slices.Equal(rep.LostIDs, tc.lost) ||
				rep.OrderViolations != tc.order || rep.Duplicates != tc.dups || rep.OtherRecords != tc.other {
				t.Errorf("acked %d lost %d %v order %d dups %d other %d; want 6, %v, %d, %d, %d",
					rep.Acknowledged, rep.Lost, rep.LostIDs, rep.OrderViolations, rep.Duplicates, rep.OtherRecords,
					tc.lost, tc.order, tc.dups, tc.other)
			}
			// Run 1 saw its first delivery 50ms after its start; run 2
			// saw none. Run 2's open reported one repair and 2 replays.
			if rep.MaxRestartToFirstDeliveryMS != 50 || rep.MaxRestartToFirstDeliveryRun != 1 ||
				rep.RunsWithoutDelivery != 1 || rep.RunsWithoutDeliveryClean != 1 || rep.Repairs != 1 || rep.Replayed != 2 || rep.Runs[1].TornLine != (tc.ledger2 == "") {
				t.Errorf("first delivery %vms (run %d), %d runs without, repairs %d, replayed %d, runs %+v",
					rep.MaxRestartToFirstDeliveryMS, rep.MaxRestartToFirstDeliveryRun, rep.RunsWithoutDelivery, rep.Repairs, rep.Replayed, rep.Runs)
			}

			// Both renderings say the same.
			var text, js bytes.Buffer
			if err := rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			verdict := "kafkawal drill: PASS"
			if !tc.ok {
				verdict = "kafkawal drill: FAIL"
			}
			if !strings.HasPrefix(text.String(), verdict) || !strings.Contains(text.String(), "lost                             "+strconv.Itoa(rep.Lost)) {
				t.Errorf("text report:\n%s", text.String())
			}
			if err := rep.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(js.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			for k, want := range map[string]any{"ok": tc.ok, "lost": float64(len(tc.lost)), "order_violations": float64(tc.order),
				"acknowledged": float64(6), "kills": float64(tc.kills), "repairs": float64(1), "max_restart_to_first_delivery_ms": float64(50)} {
				if m[k] != want {
					t.Errorf("json %s = %v, want %v", k, m[k], want)
				}
			}
		})
	}
}

func TestFaultsOverlapRuns(t *testing.T) {
	rep := &Report{Faults: []FaultReport{{Kind: faultNetCut, StartMS: 1500, EndMS: 2500}}}
	d := func(v float64) *float64 { return &v }
	rep.Runs = []RunReport{
		{Run: 1, StartMS: 0, EndMS: 1000, FirstDeliveryAfterMS: d(80)},
		{Run: 2, StartMS: 1000, EndMS: 2000, FirstDeliveryAfterMS: d(900)},
		{Run: 3, StartMS: 2000, EndMS: 3000},
		{Run: 4, StartMS: 3000, EndMS: 4000, FirstDeliveryAfterMS: d(100)},
	}
	rep.finishRuns()
	var during []int
	for _, r := range rep.Runs {
		if r.DuringFault {
			during = append(during, r.Run)
		}
	}
	if !slices.Equal(during, []int{2, 3}) || rep.MaxRestartToFirstDeliveryMS != 900 || rep.MaxRestartToFirstDeliveryRun != 2 ||
		rep.MaxRestartToFirstDeliveryCleanMS != 100 || rep.RunsWithoutDelivery != 1 || rep.RunsWithoutDeliveryClean != 0 {
		t.Fatalf("during faults %v; max %v (run %d), clean %v, without %d", during, rep.MaxRestartToFirstDeliveryMS,
			rep.MaxRestartToFirstDeliveryRun, rep.MaxRestartToFirstDeliveryCleanMS, rep.RunsWithoutDelivery)
	}
}

// TestLostUncommitted: under exactly-once, of the records read_committed
// did not return, the report counts those read_uncommitted does see (in
// Kafka, in aborted transactions) and says where they are, so a drill's
// failure tells records never produced from records never committed.
func TestLostUncommitted(t *testing.T) {
	r := &Report{Nonce: testNonce, ExactlyOnce: true}
	acked := []uint64{id1, id1 + 1, id1 + 2, id1 + 3}
	r.verify(acked, stream(testNonce, "t", 0, id1, id1+1))
	if r.Lost != 2 {
		t.Fatalf("lost %d, want 2", r.Lost)
	}
	// read_uncommitted: the committed two, an aborted copy of id1+2 at
	// offsets 5 and 7 of partition 1, and another drill's record.
	aborted := stream(testNonce, "t", 1, id1, id1+2, id1+2)
	aborted[1].Offset, aborted[2].Offset = 5, 7
	r.verifyUncommitted(slices.Concat(stream(testNonce, "t", 0, id1, id1+1), aborted, stream("other", "t", 1, id1+3)))
	if r.LostUncommitted != 1 {
		t.Fatalf("lost but read_uncommitted %d, want 1 (id1+2 once; id1+3 only as another drill's)", r.LostUncommitted)
	}
	if want := []string{"t/1: 1 at offsets 5..5"}; !slices.Equal(r.LostWhere, want) {
		t.Fatalf("lost where %q, want %q", r.LostWhere, want)
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "lost but read_uncommitted        1") || !strings.Contains(b.String(), "t/1: 1 at offsets 5..5") {
		t.Fatalf("report text lacks the lost-but-uncommitted rows:\n%s", b.String())
	}
}
