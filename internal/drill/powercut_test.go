package drill

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/internal/powercut/powercuttest"
	"github.com/kafkawal/kafkawal/wal"
)

// TestDrillPowerCuts is the power-cut drill in miniature, in each
// durability mode and both metadata models (on the real broker: SyncAlways
// with strict metadata only, the case with the strongest promise). Under
// SyncAlways nothing acknowledged may be lost; in every mode every Open
// must succeed and only records acknowledged after the last completed
// fsync before their cut may be lost (Report.OK says all of it).
func TestDrillPowerCuts(t *testing.T) {
	powercuttest.Require(t)
	cases := []struct {
		durability, metadata string
		cuts                 int
	}{
		{"always", "strict", 20},
		{"always", "immediate", 10},
		{"periodic", "strict", 10},
		{"never", "immediate", 10},
	}
	if kafkatest.Kind() == "real" {
		cases = cases[:1]
	}
	for _, tc := range cases {
		t.Run(tc.durability+"/"+tc.metadata, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
			defer cancel()
			var pids pidRecorder
			cfg := powerCutConfig(t, &pids, tc.durability, tc.metadata, tc.cuts)
			cfg.DeadLetterEvery = 100
			cfg.KillAfterMin, cfg.KillAfterMax = 50*time.Millisecond, 600*time.Millisecond
			cfg.Seed, cfg.DrainRecords = 7, 50
			start := time.Now()
			rep, err := Run(ctx, cfg)
			pids.checkDead(t)
			if rep != nil {
				var b strings.Builder
				rep.WriteText(&b)
				t.Logf("power-cut drill in %v:\n%s", time.Since(start).Round(time.Millisecond), b.String())
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			pc := rep.PowerCut
			if !rep.OK || pc == nil || len(pc.Cuts) != tc.cuts || !rep.Drained {
				t.Fatalf("ok %v, drained %v, cuts %v: %v", rep.OK, rep.Drained, pc != nil && len(pc.Cuts) == tc.cuts, rep.Failures)
			}
			// The drill must have had something to prove.
			if rep.Acknowledged < 300 || pc.DeadLettersExpected == 0 || pc.AtRisk == 0 {
				t.Fatalf("acknowledged %d, dead letters %d, at risk %d", rep.Acknowledged, pc.DeadLettersExpected, pc.AtRisk)
			}
		})
	}
}

// TestPowerCutVerdict feeds the power-cut checks crafted ledgers, cuts and
// read-backs: each way the contract can break must fail the drill.
func TestPowerCutVerdict(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Run 1 acknowledges ids id1..id1+3 at 10 ms and id1+4..id1+5 at
	// 30 ms; its cut comes at 40 ms, the last fsync of a durable segment
	// having started at 20 ms. Every 5th record is a dead letter (id1+4).
	// Run 2 is the drain run.
	type setup struct {
		durability string
		delivered  []uint64 // ids read back from Kafka
		dead       []uint64 // ids in the dead-letter log
		tried      []idRange
		cursor     uint64 // run 1's last persisted cursor
		openFound  uint64 // run 2's Open found this cursor
		clamped    bool
	}
	base := setup{
		durability: "periodic",
		delivered:  []uint64{id1, id1 + 1, id1 + 2, id1 + 3, id1 + 5, id2},
		dead:       []uint64{id1 + 4},
		tried:      []idRange{{id1, 6}},
		cursor:     4, openFound: 4,
	}
	run := func(s setup) *Report {
		r := &Report{Durability: s.durability, Nonce: testNonce,
			Runs: []RunReport{{Run: 1}, {Run: 2, Drain: true}}}
		pc := &PowerCutReport{Requested: 1, DeadLetterEvery: 5,
			Cuts:  []CutSummary{{Run: 1}},
			cutAt: map[int]time.Time{1: at(40)}, syncedAt: map[int]time.Time{1: at(20)}}
		r.PowerCut = pc
		ledgers := map[int]*runLedger{
			1: {AckedAt: []ackRange{{idRange{id1, 4}, at(10)}, {idRange{id1 + 4, 2}, at(30)}},
				Tried: s.tried, Cursor: s.cursor, Open: &OpenLine{}},
			2: {AckedAt: []ackRange{{idRange{id2, 1}, at(50)}}, Tried: []idRange{{id2, 1}},
				Open: &OpenLine{CursorFound: s.openFound, Cursor: min(s.openFound, 4), CursorClamped: s.clamped}},
		}
		var recs []*kgo.Record
		for _, id := range s.delivered {
			rec := stream(testNonce, "t", 0, id)[0]
			rec.Value = idValue(id, 10)
			recs = append(recs, rec)
		}
		var dead []wal.DeadLetter
		for _, id := range s.dead {
			recs := stream(testNonce, "t", 0, id)
			dl := wal.DeadLetter{Err: "refused", Record: wal.Record{Topic: "t-refused", Value: idValue(id, 7)}}
			for _, h := range recs[0].Headers {
				dl.Record.Headers = append(dl.Record.Headers, wal.Header{Key: h.Key, Value: h.Value})
			}
			dead = append(dead, dl)
		}
		r.Drained = true
		pc.check(r, ledgers, recs, dead, 10)
		r.judge()
		return r
	}
	for _, tc := range []struct {
		name   string
		change func(*setup)
		ok     bool
		want   string
	}{
		{"nothing lost", func(*setup) {}, true, ""},
		{"nothing lost under SyncAlways", func(s *setup) { s.durability = "always" }, true, ""},
		{"lost after the fsync, periodic", func(s *setup) { s.delivered = dropID(s.delivered, id1+5) }, true, ""},
		{"lost after the fsync, always", func(s *setup) { s.durability = "always"; s.delivered = dropID(s.delivered, id1+5) },
			false, "lost 1 acknowledged records under SyncAlways"},
		{"lost before the fsync", func(s *setup) { s.delivered = dropID(s.delivered, id1+1) },
			false, "acknowledged before a completed fsync"},
		{"dead letter missing", func(s *setup) { s.dead = nil; s.durability = "always" },
			false, "lost 1 acknowledged records under SyncAlways"},
		{"lost by the drain run", func(s *setup) { s.delivered = dropID(s.delivered, id2) }, false, "lost 1 acknowledged"},
		{"forged record", func(s *setup) { s.tried = []idRange{{id1, 3}} }, false, "no child appended"},
		{"cursor went back", func(s *setup) { s.openFound = 2 }, false, "below 4 persisted before it"},
		{"cursor clamped under SyncAlways", func(s *setup) { s.durability = "always"; s.clamped = true }, false, "beyond the last record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base
			s.delivered = append([]uint64(nil), base.delivered...)
			tc.change(&s)
			r := run(s)
			if r.OK != tc.ok || !strings.Contains(strings.Join(r.Failures, "\n"), tc.want) {
				t.Fatalf("ok %v, failures %q; want ok %v with %q", r.OK, r.Failures, tc.ok, tc.want)
			}
		})
	}
}

func dropID(ids []uint64, id uint64) []uint64 {
	out := ids[:0:0]
	for _, v := range ids {
		if v != id {
			out = append(out, v)
		}
	}
	return out
}

// powerCutConfig is the power-cut drill of these tests, on the test
// broker, with every child's pid recorded in pids.
func powerCutConfig(t *testing.T, pids *pidRecorder, durability, metadata string, cuts int) Config {
	return Config{
		Broker:        kafkatest.Kind(),
		Partitions:    2,
		Rate:          500,
		Durability:    durability,
		PowerCuts:     cuts,
		Metadata:      metadata,
		DrainTimeout:  time.Minute,
		VerifyTimeout: time.Minute,
		Command:       testCommand,
		Log:           logWriter{t},
		onChildStart:  pids.add,
	}
}

// TestPowerCutBeforeTheChildIsNamed cuts the power on each child's first
// segment creation or directory sync (in its Open) before the drill has
// named the child to the cut's killer, as a loaded machine can: the child
// must still die of the cut, never see its EIO and exit on its own (CI
// failed so once, when the cut's callback found no child to kill).
func TestPowerCutBeforeTheChildIsNamed(t *testing.T) {
	powercuttest.Require(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var pids pidRecorder
	cfg := powerCutConfig(t, &pids, "always", "strict", 4)
	cfg.KillAfterMin, cfg.KillAfterMax = 2*time.Second, 3*time.Second
	cfg.Seed, cfg.DrainRecords = 11, 20
	cfg.aim = "rotation"
	var early atomic.Int32 // runs whose cut began before the child was named
	cfg.beforeNaming = func(run int, cutBegun <-chan struct{}) {
		select {
		case <-cutBegun:
			early.Add(1)
		case <-time.After(time.Minute):
			t.Errorf("run %d: no cut within a minute of the child's start; its Open creates a segment or syncs the directory", run)
		}
	}
	rep, err := Run(ctx, cfg)
	pids.checkDead(t)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := early.Load(); n != int32(cfg.PowerCuts) {
		t.Fatalf("%d of %d cuts began before the child was named; want all", n, cfg.PowerCuts)
	}
	pc := rep.PowerCut
	if !rep.OK || pc == nil || len(pc.Cuts) != cfg.PowerCuts {
		t.Fatalf("ok %v, cuts %v: %v", rep.OK, pc != nil && len(pc.Cuts) == cfg.PowerCuts, rep.Failures)
	}
	for _, r := range rep.Runs[:cfg.PowerCuts] {
		if !r.Killed {
			t.Fatalf("run %d: %s, want killed by the cut", r.Run, r.Exit)
		}
	}
}
