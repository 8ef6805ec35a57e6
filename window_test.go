package kafkawal_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/sender"
)

// TestWindowGrowsWithRecordsInFlight: left to its defaults, the window
// starts at its minimum (its ring sized for that) and grows once records
// go to many partitions. Behind a blackholed broker the window fills at its
// minimum with records for 4 partitions; records for a topic of 600
// partitions wait behind them. The network then comes back slow: the
// topic's metadata arrives while those records are still in flight, so the
// ring grows under them, and the backlog for the 600 partitions then fills
// the larger window. More in flight at once than the window's ring at
// Open holds (twice the minimum) proves that the window and its ring grew.
// Every record is delivered, in order, and no report is misattributed.
func TestWindowGrowsWithRecordsInFlight(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{Proxy: true})
	createTopic(t, b, "few", 4, nil)
	createTopic(t, b, "many", 600, nil) // 604 partitions x 512 records: the window grows ninefold
	p := openT(t, baseConfig(t, b))
	ctx := testCtx(t, 5*time.Minute)
	var acked []uint64
	id := uint64(1)
	appendN := func(topic string, n int) {
		t.Helper()
		for n > 0 {
			recs := make([]kafkawal.Record, 0, min(n, 1000))
			for ; len(recs) < cap(recs); id++ {
				part := int32(id % 4)
				if topic == "many" {
					part = kafkawal.PartitionAny // the key (its id) spreads them
				}
				recs = append(recs, idRecord(topic, part, id, value(100, id)))
				acked = append(acked, id)
			}
			if _, err := p.AppendBatch(ctx, recs); err != nil {
				t.Fatal(err)
			}
			n -= len(recs)
		}
	}
	appendN("few", 4) // a connection and a producer id first
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	b.Proxy().Blackhole()
	least := sender.DefaultMinInFlight
	appendN("few", 2*least)
	waitFor(t, time.Minute, fmt.Sprintf("the window full at its minimum (%d records in flight)", least),
		func() bool { return p.Stats().InFlight == least })
	appendN("many", 4*least)
	// Back, but slow: a 32 KiB chunk every 5 ms each way.
	b.Proxy().Heal()
	b.Proxy().Delay(5 * time.Millisecond)
	ring := sender.Config{}.InitialRing()
	most := 0
	waitFor(t, 2*time.Minute, fmt.Sprintf("more records in flight than the ring at Open holds (%d)", ring), func() bool {
		most = max(most, p.Stats().InFlight)
		return most > ring
	})
	b.Proxy().Delay(0)
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if total := uint64(len(acked)); st.Delivered < total || st.ReportAnomalies != 0 || st.InFlight != 0 {
		t.Fatalf("after Flush: delivered %d of %d, report anomalies %d, in flight %d", st.Delivered, total, st.ReportAnomalies, st.InFlight)
	}
	t.Logf("in flight: more than %d at once (the window's minimum: %d, its ring at Open: %d); delivered %d, resent %d", most, least, ring, st.Delivered, st.Resent)
	closeT(t, p, 30*time.Second)
	verify(t, b, []string{"few", "many"}, acked)
}
