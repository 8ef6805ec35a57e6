package kafkawal_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// partialLoad appends records of 1 KiB at a steady rate, round-robin over
// a topic's partitions, and keeps the ledger: each record's partition,
// sequence, and when it was appended and delivered.
type partialLoad struct {
	p          *kafkawal.Producer
	topic      string
	partitions int32
	rate       int // records per second
	batch      int

	mu       sync.Mutex
	ids      []uint64 // acknowledged ids, in append order
	part     map[uint64]int32
	seqOf    map[uint64]uint64
	appended map[uint64]time.Time
	failed   error

	delivered sync.Map // seq -> time.Time
	stop      atomic.Bool
	done      chan struct{}
}

func (l *partialLoad) onDelivered(seq uint64, _ string, _ int32, _ int64) {
	l.delivered.Store(seq, time.Now())
}

func (l *partialLoad) run(ctx context.Context) {
	defer close(l.done)
	every := time.Duration(l.batch) * time.Second / time.Duration(l.rate)
	next := time.Now()
	id := uint64(1)
	for !l.stop.Load() {
		recs := make([]kafkawal.Record, l.batch)
		for i := range recs {
			recs[i] = idRecord(l.topic, int32((id+uint64(i))%uint64(l.partitions)), id+uint64(i), value(1024, id+uint64(i)))
		}
		first, err := l.p.AppendBatch(ctx, recs)
		now := time.Now()
		l.mu.Lock()
		if err != nil {
			l.failed = err
			l.mu.Unlock()
			return
		}
		for i := range recs {
			l.ids = append(l.ids, id)
			l.part[id] = recs[i].Partition
			l.seqOf[id] = first + uint64(i)
			l.appended[id] = now
			id++
		}
		l.mu.Unlock()
		next = next.Add(every)
		time.Sleep(time.Until(next))
	}
}

// since returns the ids appended in [from, to) to partitions for which in
// is true, and how many of them were delivered by at.
func (l *partialLoad) since(from, to time.Time, in func(int32) bool, at time.Time) (ids []uint64, delivered int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range l.ids {
		a := l.appended[id]
		if a.Before(from) || !a.Before(to) || !in(l.part[id]) {
			continue
		}
		ids = append(ids, id)
		if d, ok := l.delivered.Load(l.seqOf[id]); ok && !d.(time.Time).After(at) {
			delivered++
		}
	}
	return ids, delivered
}

func startLoad(t *testing.T, p *kafkawal.Producer, topic string, partitions int32, rate int) *partialLoad {
	l := &partialLoad{p: p, topic: topic, partitions: partitions, rate: rate, batch: 40,
		part: map[uint64]int32{}, seqOf: map[uint64]uint64{}, appended: map[uint64]time.Time{}, done: make(chan struct{})}
	go l.run(testCtx(t, 10*time.Minute))
	t.Cleanup(func() { l.stop.Store(true); <-l.done })
	return l
}

// One partition stops accepting records (its broker answers
// NOT_ENOUGH_REPLICAS; on a real cluster, its broker is cut off from
// clients) while the application appends to all of them at a steady rate:
// the other partitions' records keep being delivered while it is stalled,
// and after the stall everything arrives, in order per partition.
func TestPartialOutage(t *testing.T) {
	cases := []struct {
		name string
		// cfg adjusts the producer's configuration.
		cfg func(*kafkawal.Config)
		// stallFor is how long the stall lasts at least.
		stallFor time.Duration
	}{
		{
			// The stalled partition fills its share of a small window
			// within a second, long before it is found stalled.
			name: "share of the window",
			cfg: func(c *kafkawal.Config) {
				c.MaxInFlight = 2048
				c.PartitionStallTimeout = time.Hour
				c.ParkAfter = -1
			},
			stallFor: 5 * time.Second,
		},
		{
			name: "stall detected",
			cfg: func(c *kafkawal.Config) {
				c.PartitionStallTimeout = 2 * time.Second
				c.ParkAfter = -1
			},
			stallFor: 6 * time.Second,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := kafkatest.Options{Brokers: 3}
			if kafkatest.Kind() == "real" {
				opts = kafkatest.Options{Brokers: 2, Proxy: true}
			}
			b := kafkatest.StartT(t, opts)
			const topic, partitions = "partial", 4
			createTopic(t, b, topic, partitions, nil)
			cfg := baseConfig(t, b)
			c.cfg(&cfg)
			rate := 2000
			if raceEnabled {
				rate = 500
			}
			var load *partialLoad
			cfg.OnDelivered = func(seq uint64, topic string, partition int32, offset int64) {
				load.onDelivered(seq, topic, partition, offset)
			}
			p := openT(t, cfg)
			ctx := testCtx(t, 10*time.Minute)
			load = startLoad(t, p, topic, partitions, rate)
			waitFor(t, time.Minute, "deliveries before the stall", func() bool { return p.Stats().Delivered > uint64(rate) })
			heap0 := heapInUse()

			stalledParts, heal, err := b.StallPartition(ctx, topic, 0)
			if err != nil {
				t.Fatal(err)
			}
			isStalled := func(q int32) bool { return slices.Contains(stalledParts, q) }
			healthy := func(q int32) bool { return !isStalled(q) }
			start := time.Now()
			time.Sleep(c.stallFor)
			cutoff := time.Now()
			ids, delivered := load.since(start, cutoff, healthy, cutoff)
			t.Logf("stall %v: %d of %d records of the healthy partitions delivered by then (%.3f); stats %+v",
				c.stallFor, delivered, len(ids), float64(delivered)/float64(max(1, len(ids))), p.Stats())
			// While the partition is still stalled, every record the
			// healthy ones got during the stall is delivered.
			waitFor(t, time.Minute, "the healthy partitions' stall-time records, while one partition is stalled", func() bool {
				_, d := load.since(start, cutoff, healthy, time.Now())
				return d == len(ids)
			})
			if len(ids) == 0 {
				t.Fatal("no record appended to a healthy partition during the stall")
			}
			peak := heapInUse()
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
			st := p.Stats()
			t.Logf("after the stall: heap %d -> %d MiB; stats %+v", heap0>>20, peak>>20, st)
			if growth := int64(peak) - int64(heap0); growth > 64<<20 {
				t.Fatalf("heap grew %d MiB during the stall; want < 64 MiB", growth>>20)
			}
			closeT(t, p, time.Minute)
			verify(t, b, []string{topic}, load.ids)
		})
	}
}
