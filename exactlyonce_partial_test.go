package kafkawal_test

import (
	"fmt"
	"hash/crc32"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// txnIDAwayFrom returns a TransactionalID whose transaction coordinator
// and checkpoint partition are on another broker than the leader of
// topic's partition: a transaction needs both, so a stall that takes them
// stops every partition (README, Exactly-once). On the embedded broker a
// stall fails produce requests only, so any id will do.
func txnIDAwayFrom(t *testing.T, b kafkatest.Broker, topic string, partition int32) string {
	t.Helper()
	if b.Kind() != "real" {
		return "eos-partial"
	}
	ctx := testCtx(t, time.Minute)
	const ckpt, ckptPartitions = "kafkawal-checkpoints", 25 // sender's checkpointPartitions
	if err := b.CreateTopic(ctx, ckpt, ckptPartitions, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(b.AdminOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	td, err := adm.ListTopics(ctx, topic, ckpt)
	if err != nil {
		t.Fatal(err)
	}
	stalled := td[topic].Partitions[partition].Leader
	for i := range 200 {
		id := fmt.Sprintf("eos-partial-%d", i)
		var c kadm.FindCoordinatorResponse
		// The transaction state topic is made on first use: not
		// available for a moment.
		waitFor(t, time.Minute, "the transaction coordinator of "+id, func() bool {
			c = adm.FindTxnCoordinators(ctx, id)[id]
			return c.Err == nil
		})
		// The checkpoint's partition, as the sender picks it (CRC-32).
		cp := int32(crc32.ChecksumIEEE([]byte(id)) % ckptPartitions)
		if c.NodeID != stalled && td[ckpt].Partitions[cp].Leader != stalled {
			return id
		}
	}
	t.Fatalf("no TransactionalID with its coordinator and checkpoint away from broker %d", stalled)
	return ""
}

// Partial outages under ExactlyOnce: one partition stops taking records
// while the application appends to all of them. A transaction cannot
// commit with a stalled partition's records in it, so once the partition
// is found stalled its records stay out of the transactions (but for a
// probe now and then) and wait in the WAL (never parked under
// ExactlyOnce): the other partitions' records keep being committed while
// it is stalled, and after the stall everything is read once, in order,
// with read_committed.
func TestExactlyOncePartialOutage(t *testing.T) {
	cases := []struct {
		name     string
		cfg      func(*kafkawal.Config)
		stallFor time.Duration
	}{
		{"stall detected", func(c *kafkawal.Config) {
			c.PartitionStallTimeout = 2 * time.Second
			c.ParkAfter = -1
		}, 8 * time.Second},
		{"stall longer, small segments", func(c *kafkawal.Config) {
			// Not parked under ExactlyOnce: the stalled partition's
			// records wait in the WAL, whose segments stay from its
			// oldest one on.
			c.PartitionStallTimeout = time.Second
			c.SegmentBytes = 2 << 20
		}, 10 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := kafkatest.Options{Brokers: 3}
			if kafkatest.Kind() == "real" {
				opts = kafkatest.Options{Brokers: 2, Proxy: true}
			}
			b := kafkatest.StartT(t, opts)
			const topic, partitions = "eos-partial", 4
			createTopic(t, b, topic, partitions, nil)
			cfg := eosConfig(t, b, txnIDAwayFrom(t, b, topic, 0))
			c.cfg(&cfg)
			rate := 2000
			if raceEnabled {
				rate = 500
			}
			logs := capture(&cfg)
			load := newLoad(topic, partitions, rate)
			cfg.OnDelivered = load.onDelivered
			p := openT(t, cfg)
			ctx := testCtx(t, 10*time.Minute)
			load.start(t, p)
			waitFor(t, time.Minute, "commits before the stall", func() bool { return p.Stats().Delivered > uint64(rate) })

			stalledParts, heal, err := b.StallPartition(ctx, topic, 0)
			if err != nil {
				t.Fatal(err)
			}
			healthy := func(q int32) bool { return !slices.Contains(stalledParts, q) }
			start := time.Now()
			time.Sleep(c.stallFor)
			cutoff := time.Now()
			ids, committed := load.since(start, cutoff, healthy, cutoff)
			t.Logf("stall %v: %d of %d records of the healthy partitions committed by then; stats %+v",
				c.stallFor, committed, len(ids), p.Stats())
			if len(ids) == 0 {
				t.Fatal("no record appended to a healthy partition during the stall")
			}
			// While the partition is still stalled, every record the
			// healthy ones got during the stall is committed.
			waitFor(t, time.Minute, "the healthy partitions' stall-time records committed, while one partition is stalled", func() bool {
				_, d := load.since(start, cutoff, healthy, time.Now())
				return d == len(ids)
			})
			t.Logf("the healthy partitions' stall-time records all committed %v after the stall began", time.Since(start).Round(time.Millisecond))
			st := p.Stats()
			if len(st.StalledPartitions) == 0 {
				t.Fatalf("no stalled partition in Stats during the stall")
			}
			if st.ParkedBytes != 0 {
				t.Fatalf("parked %d bytes under ExactlyOnce", st.ParkedBytes)
			}
			checkStallLines(t, logs, stalledParts, false)
			if err := heal(); err != nil {
				t.Fatal(err)
			}
			load.stop.Store(true)
			<-load.done
			if load.failed != nil {
				t.Fatalf("an append failed: %v", load.failed)
			}
			if err := p.Flush(ctx); err != nil {
				t.Fatalf("flush after the stall: %v; stats %+v", err, p.Stats())
			}
			st = p.Stats()
			t.Logf("after the stall: stats %+v", st)
			if st.TransactionsAborted+st.ProducerRebuilds == 0 || st.Fenced || st.ExactlyOnceError != "" {
				t.Fatalf("aborted transactions %d, fenced %v, error %q: want the stalled partition's records taken out of a transaction", st.TransactionsAborted, st.Fenced, st.ExactlyOnceError)
			}
			waitFor(t, 10*time.Second, "no stalled partition in Stats", func() bool { return len(p.Stats().StalledPartitions) == 0 })
			closeT(t, p, time.Minute)
			verifyCommitted(t, b, []string{topic}, load.ids)
		})
	}
}
