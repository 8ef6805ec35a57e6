package kafkawal_test

import (
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// TestSlowClusterDefersNoPartition: a cluster that is slow for every
// partition alike is not a partial outage. librdkafka puts one partition in
// each produce request and keeps at most 5 in flight per broker; behind a
// link that delays every request by 40 ms, 40 partitions each get their turn
// about every 1.6 s, longer than the least wait (1 s) before a partition
// at its share counts as not keeping up. The window (4,000 records, a
// share of 100 per partition) keeps every partition at its share. Once the
// sender has seen how long records wait, hardly any partition may be
// handed to a lane: each lane reads the WAL back for its
// own records, and on Apache Kafka with 1,000 partitions lanes for all of
// them cut the throughput to a tenth. Every record is delivered, in order.
func TestSlowClusterDefersNoPartition(t *testing.T) {
	const partitions = 40
	b := kafkatest.StartT(t, kafkatest.Options{Proxy: true})
	createTopic(t, b, "slow", partitions, nil)
	cfg := baseConfig(t, b)
	cfg.MaxInFlight = 4000
	p := openT(t, cfg)
	ctx := testCtx(t, 5*time.Minute)
	var acked []uint64
	id := uint64(1)
	appendN := func(n int) {
		t.Helper()
		for n > 0 {
			recs := make([]kafkawal.Record, 0, min(n, 1000))
			for ; len(recs) < cap(recs); id++ {
				recs = append(recs, idRecord("slow", kafkawal.PartitionAny, id, value(100, id))) // keyed by id
				acked = append(acked, id)
			}
			if _, err := p.AppendBatch(ctx, recs); err != nil {
				t.Fatal(err)
			}
			n -= len(recs)
		}
	}
	appendN(4 * partitions) // metadata and a producer id first, at full speed
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	b.Proxy().Delay(40 * time.Millisecond)
	// One round at the slow pace first, for the sender to learn how long
	// records wait; the deferrals counted are those after it.
	appendN(100 * partitions)
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	before := p.Stats().PartitionsDeferred
	appendN(400 * partitions)
	// The condition under test: records in flight wait past 1 s.
	waitFor(t, 2*time.Minute, "a record in flight for more than 1.2 s", func() bool {
		return p.Stats().OldestInFlightAge > 1200*time.Millisecond
	})
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	b.Proxy().Delay(0)
	st := p.Stats()
	if total := uint64(len(acked)); st.Delivered < total || st.ReportAnomalies != 0 {
		t.Fatalf("after Flush: delivered %d of %d, report anomalies %d", st.Delivered, total, st.ReportAnomalies)
	}
	// A partition whose turn a loaded machine delays (the -race suite runs
	// packages side by side) may still stand out now and then; the rule
	// this guards against sent nearly all 40 to lanes (39 to 46 in runs).
	if n := st.PartitionsDeferred - before; n > partitions/4 {
		t.Fatalf("%d partitions handed to lanes on a cluster slow for all of them alike; want at most %d", n, partitions/4)
	}
	t.Logf("partitions handed to lanes: %d while the sender learned the wait, %d after", before, st.PartitionsDeferred-before)
	closeT(t, p, 30*time.Second)
	verify(t, b, []string{"slow"}, acked)
}
