package kafkawal_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// txnIDAwayFrom returns a TransactionalID whose transaction coordinator
// and checkpoint partition stay reachable while topic's partition is
// stalled (kafkatest.TxnIDAwayFrom).
func txnIDAwayFrom(t *testing.T, b kafkatest.Broker, topic string, partition int32) string {
	t.Helper()
	id, err := kafkatest.TxnIDAwayFrom(testCtx(t, 2*time.Minute), b, "eos-partial", topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	return id
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

// closeDeferred waits until every record of the healthy partitions is
// committed and those of at least stalls stalled partitions wait (of
// appended in all, since p opened): the last checkpoint defers the stalled
// partitions. Then it closes p, which cannot deliver them: Close gives up
// at its deadline and keeps them in the WAL. It returns how many wait.
func closeDeferred(t *testing.T, p *kafkawal.Producer, appended uint64, stalls int) int {
	t.Helper()
	var waiting int
	waitFor(t, 2*time.Minute, "the healthy partitions' records committed, the stalled ones' waiting", func() bool {
		st := p.Stats()
		waiting = 0
		for _, ps := range st.StalledPartitions {
			waiting += ps.Records
		}
		return len(st.StalledPartitions) >= stalls && waiting > 0 && st.Delivered+uint64(waiting) == appended
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	t.Logf("close during the stall: %v", p.Close(ctx))
	return waiting
}

// A checkpoint committed while partitions were stalled defers them: the
// next Open resumes each one's lane from its first uncommitted record. A
// lane tells its records from the others by its topic's partition count
// (keyed records), which the sender asks for when its main stream meets
// the topic's first record. At Open that is the record after the local
// cursor, the oldest deferred one: a topic whose lanes begin later was
// not asked for until after the lanes had read the WAL. Such a lane
// matched none of its records, took itself for caught up and rejoined
// the main stream: the next checkpoint covered records never produced,
// lost for good (the partition-stall drill under ExactlyOnce, on Apache
// Kafka, about one run in five). Here the stalled partitions of topic
// "second" get records after those of topic "first", and every reply of
// the cluster is slowed down when the producer opens again, so second's
// count comes long after its lanes could have read the WAL; records
// appended meanwhile must not overtake the lanes' older ones either.
func TestExactlyOnceDeferredPartitionWaitsForPartitionCount(t *testing.T) {
	opts := kafkatest.Options{Proxy: true}
	if kafkatest.Kind() == "real" {
		opts = kafkatest.Options{Brokers: 2, Proxy: true}
	}
	b := kafkatest.StartT(t, opts)
	const first, second, partitions = "eos-resume-first", "eos-resume-second", 4
	createTopic(t, b, first, partitions, nil)
	createTopic(t, b, second, partitions, nil)
	cfg := eosConfig(t, b, txnIDAwayFrom(t, b, second, 0))
	cfg.PartitionStallTimeout = time.Second
	ctx := testCtx(t, 5*time.Minute)
	var ids []uint64
	appendN := func(p *kafkawal.Producer, n int, topics ...string) {
		t.Helper()
		for i := range n {
			id := uint64(len(ids))
			if _, err := p.Append(ctx, idRecord(topics[i%len(topics)], kafkawal.PartitionAny, id, value(100, id))); err != nil {
				t.Fatalf("append %d: %v", id, err)
			}
			ids = append(ids, id)
		}
	}

	p := openT(t, cfg)
	appendN(p, 100, first, second)
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("flush before the stall: %v", err)
	}
	// On Apache Kafka both topics' partitions on partition 0's broker.
	stalled, heal, err := b.StallPartition(ctx, second, 0)
	if err != nil {
		t.Fatal(err)
	}
	heals := []func() error{heal}
	if kafkatest.Kind() != "real" {
		_, heal, err := b.StallPartition(ctx, first, 0)
		if err != nil {
			t.Fatal(err)
		}
		heals = append(heals, heal)
	}
	appendN(p, 50, first) // the oldest deferred records: first's
	appendN(p, 400, first, second)
	waiting := closeDeferred(t, p, uint64(len(ids)), 2)
	t.Logf("stalled %v of %s: %d records wait", stalled, second, waiting)
	for _, heal := range heals {
		if err := heal(); err != nil {
			t.Fatal(err)
		}
	}

	for _, px := range b.Proxies() {
		px.Delay(100 * time.Millisecond)
	}
	// Slowed down, no partition may be taken for stalled: the lanes are
	// the ones resumed from the checkpoint.
	cfg.PartitionStallTimeout = time.Minute
	p = openT(t, cfg)
	appendN(p, 100, second, first) // before second's partition count is known
	flushCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := p.Flush(flushCtx); err != nil {
		t.Fatalf("flush after the stall: %v; stats %+v", err, p.Stats())
	}
	for _, px := range b.Proxies() {
		px.Delay(0)
	}
	t.Logf("after the stall: stats %+v", p.Stats())
	closeT(t, p, time.Minute)
	verifyCommitted(t, b, []string{first, second}, ids)
}

// A topic deleted while its partitions were deferred: at the next Open
// their lanes cannot tell their records apart without the partition
// count, which no metadata gives any more. The records wait in the WAL,
// none sent anywhere, and the sender says why; once the topic exists
// again, they are delivered, once each.
func TestExactlyOnceDeferredTopicDeletedWaitsAndSaysSo(t *testing.T) {
	opts := kafkatest.Options{}
	if kafkatest.Kind() == "real" {
		opts = kafkatest.Options{Brokers: 2, Proxy: true}
	}
	b := kafkatest.StartT(t, opts)
	const kept, gone, partitions = "eos-kept", "eos-gone", 4
	createTopic(t, b, kept, partitions, nil)
	createTopic(t, b, gone, partitions, nil)
	cfg := eosConfig(t, b, txnIDAwayFrom(t, b, gone, 0))
	cfg.PartitionStallTimeout = time.Second
	ctx := testCtx(t, 5*time.Minute)
	var keptIDs []uint64
	id := uint64(0)
	appendTo := func(p *kafkawal.Producer, topic string, n int) {
		t.Helper()
		for range n {
			if _, err := p.Append(ctx, idRecord(topic, kafkawal.PartitionAny, id, value(100, id))); err != nil {
				t.Fatalf("append %d: %v", id, err)
			}
			if topic == kept {
				keptIDs = append(keptIDs, id)
			}
			id++
		}
	}

	p := openT(t, cfg)
	appendTo(p, kept, 50)
	appendTo(p, gone, 50)
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("flush before the stall: %v", err)
	}
	_, heal, err := b.StallPartition(ctx, gone, 0)
	if err != nil {
		t.Fatal(err)
	}
	appendTo(p, gone, 200)
	waiting := closeDeferred(t, p, id, 1)
	t.Logf("%d records of %s wait", waiting, gone)
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteTopic(ctx, gone); err != nil {
		t.Fatal(err)
	}

	logs := capture(&cfg)
	cfg.PartitionStallTimeout = time.Minute
	p = openT(t, cfg)
	appendTo(p, kept, 50)
	const line = "sender: records of the topic wait for its partition count"
	waitFor(t, time.Minute, "the sender to say the records wait for the partition count", func() bool {
		return logs.contains(line)
	})
	if st := p.Stats(); st.BacklogRecords < uint64(waiting) {
		t.Fatalf("backlog %d records, want the %d of the deleted topic's deferred partition still waiting", st.BacklogRecords, waiting)
	}
	createTopic(t, b, gone, partitions, nil)
	flushCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := p.Flush(flushCtx); err != nil {
		t.Fatalf("flush after the topic is back: %v; stats %+v", err, p.Stats())
	}
	if !logs.contains("sender: the topic's partition count is known; its records go on") {
		t.Fatalf("no line saying the records go on:\n%s", logs.String())
	}
	closeT(t, p, time.Minute)
	verifyCommitted(t, b, []string{kept}, keptIDs)
	recs, err := kafkatest.ReadCommitted(testCtx(t, time.Minute), b.Bootstrap(), []string{gone}, waiting)
	if err != nil {
		t.Fatalf("read back %s: %v", gone, err)
	}
	rep := kafkatest.Verify(nil, recs, recordID, nil)
	if rep.Unique != waiting || rep.Duplicates != 0 || rep.OrderViolations != 0 {
		t.Fatalf("recreated %s: %v; want the %d records that waited, once each, in order", gone, rep, waiting)
	}
}
