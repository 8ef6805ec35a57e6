package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
)

// BenchmarkLatency: latency at a fixed offered load, open loop. Records
// arrive on a schedule (rate per second) whether or not earlier ones are
// done, each one by itself (kafkawal: its own goroutine calling Append, as
// a request handler would), and every latency is measured from the
// scheduled arrival, so a stall is charged to every record that should
// have arrived during it (no coordinated omission).
//
// kafkawal (SyncAlways) reports Append latency (append-us: until Append
// returns, i.e. fsync'd) and append→delivered latency (delivered-ms: until
// OnDeliveryResult). The plain producer beside it reports the same two for
// Produce (returns once queued in memory) and its delivery report.
// x_plain_p99 is kafkawal's delivered p99 over the plain producer's. One op
// is one offered record: b.N records are offered at the rate.
func BenchmarkLatency(b *testing.B) {
	br := directBroker.get(b)
	for _, vs := range valueSizes {
		for _, rate := range []int{20_000, 100_000} {
			prefix := fmt.Sprintf("value=%d/rate=%d", vs, rate)
			key := "latency/" + prefix
			b.Run(prefix+"/plain", func(b *testing.B) {
				recordPeer(b, key, benchPlainLatency(b, br.Bootstrap(), newTopic(b, br), vs, rate))
			})
			b.Run(prefix+"/kafkawal-SyncAlways", func(b *testing.B) {
				p99 := benchKafkawalLatency(b, br.Bootstrap(), newTopic(b, br), vs, rate)
				reportRatio(b, key, p99, "x_plain_p99")
			})
		}
	}
}

// paced calls fire(i, at) for i in [0, n) at start + i/rate, from the
// calling goroutine; fire must not block. When the caller falls behind (a
// sleep overshoots, the CPU is busy) the records due are fired at once,
// each with its own scheduled time.
func paced(n int, rate float64, start time.Time, fire func(i int, at time.Time)) {
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; i < n; {
		due := int(time.Since(start)/interval) + 1
		if due <= i {
			time.Sleep(start.Add(time.Duration(i) * interval).Sub(time.Now()))
			continue
		}
		for ; i < min(due, n); i++ {
			fire(i, start.Add(time.Duration(i)*interval))
		}
	}
}

// reportLatency reports records/s, and the 50th, 99th and 99.9th
// percentiles of call (microseconds) and of deliveredAt - scheduledAt
// (milliseconds), all three in nanoseconds per record, and returns the
// delivered p99 in milliseconds. It also reports the 50th and 99th
// percentiles of deliveredAt - returnedAt (after-ms): the part of the
// delivery latency after the call returned (kafkawal: after the record
// was durable), which tells the WAL's share of the tail from the rest.
func reportLatency(b *testing.B, call, deliveredAt, scheduledAt, returnedAt []int64) float64 {
	b.ReportMetric(float64(len(call))/b.Elapsed().Seconds(), "records/s")
	delivered := make([]int64, len(deliveredAt))
	after := make([]int64, len(deliveredAt))
	for i := range delivered {
		delivered[i] = deliveredAt[i] - scheduledAt[i]
		after[i] = deliveredAt[i] - returnedAt[i]
	}
	slices.Sort(call)
	slices.Sort(delivered)
	slices.Sort(after)
	b.ReportMetric(float64(percentile(after, 0.5))/1e6, "p50-after-ms")
	b.ReportMetric(float64(percentile(after, 0.99))/1e6, "p99-after-ms")
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", 0.50}, {"p99", 0.99}, {"p99.9", 0.999}} {
		b.ReportMetric(float64(percentile(call, q.q))/1e3, q.name+"-append-us")
		b.ReportMetric(float64(percentile(delivered, q.q))/1e6, q.name+"-delivered-ms")
	}
	b.ReportMetric(0, "ns/op")
	return float64(percentile(delivered, 0.99)) / 1e6
}

func benchKafkawalLatency(b *testing.B, bootstrap, topic string, valueSize, rate int) float64 {
	n := b.N
	var (
		t0          time.Time
		base        uint64
		deliveredAt = make([]int64, n) // by seq-base, ns since t0
		scheduledAt = make([]int64, n) // by seq-base
		returnedAt  = make([]int64, n) // by seq-base, ns since t0
		callLat     = make([]int64, n) // by arrival
		armed       atomic.Bool        // t0 and base are set
	)
	cfg := producerConfig(b.TempDir(), bootstrap, kafkawal.SyncAlways)
	cfg.OnDeliveryResult = func(r kafkawal.DeliveryResult) {
		seq := r.Seq
		if !armed.Load() {
			return // the warm-up record
		}
		if i := seq - base; seq >= base && i < uint64(n) {
			deliveredAt[i] = int64(time.Since(t0))
		}
	}
	p := openProducer(b, cfg)
	defer closeProducer(p, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	rec := batchOf(topic, 1, valueSize)
	// Warm up (connection, metadata, producer id) before the clock.
	if _, err := p.AppendBatch(ctx, rec); err != nil {
		b.Fatalf("warm-up append: %v", err)
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatalf("warm-up flush: %v", err)
	}
	base = p.Stats().LastSeq + 1
	var wg sync.WaitGroup
	var failed sync.Once
	var appendErr error
	b.ResetTimer()
	t0 = time.Now()
	armed.Store(true)
	paced(n, float64(rate), t0, func(i int, at time.Time) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq, err := p.AppendBatch(ctx, rec)
			callLat[i] = int64(time.Since(at))
			if err != nil {
				failed.Do(func() { appendErr = err })
				return
			}
			if k := seq - base; seq >= base && k < uint64(n) {
				scheduledAt[k] = int64(at.Sub(t0))
				returnedAt[k] = int64(time.Since(t0))
			}
		}()
	})
	wg.Wait()
	err := appendErr
	if err == nil {
		err = p.Flush(ctx)
	}
	b.StopTimer()
	if err != nil {
		b.Fatalf("append and deliver %d records: %v", n, err)
	}
	// The WAL's own share of the append tail: its fdatasyncs (the
	// histogram's bucket bound, a power of two).
	b.ReportMetric(float64(p.Latencies().Fsync.Quantile(0.99))/1e6, "p99-fsync-ms")
	return reportLatency(b, callLat, deliveredAt, scheduledAt, returnedAt)
}

func benchPlainLatency(b *testing.B, bootstrap, topic string, valueSize, rate int) float64 {
	n := b.N
	var (
		t0          time.Time
		deliveredAt = make([]int64, n) // by arrival, ns since t0
		scheduledAt = make([]int64, n)
		callLat     = make([]int64, n)
		returnedAt  = make([]int64, n)
		armed       atomic.Bool // t0 is set
	)
	pl := newPlain(b, plainConfig(b, bootstrap, nil), func(m *kafka.Message) {
		if i, ok := m.Opaque.(int); ok && armed.Load() && i >= 0 && i < n {
			deliveredAt[i] = int64(time.Since(t0))
		}
	})
	defer pl.close()
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	v := value(valueSize)
	if err := pl.produce(message(&topic, v, -1)); err != nil {
		b.Fatalf("warm-up produce: %v", err)
	}
	if err := pl.wait(ctx); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	var produceErr error
	b.ResetTimer()
	t0 = time.Now()
	armed.Store(true)
	paced(n, float64(rate), t0, func(i int, at time.Time) {
		scheduledAt[i] = int64(at.Sub(t0))
		if err := pl.produce(message(&topic, v, i)); err != nil && produceErr == nil {
			produceErr = err
		}
		callLat[i] = int64(time.Since(at))
		returnedAt[i] = int64(time.Since(t0))
	})
	err := produceErr
	if err == nil {
		err = pl.wait(ctx)
	}
	b.StopTimer()
	if err != nil {
		b.Fatalf("produce and deliver %d records: %v", n, err)
	}
	return reportLatency(b, callLat, deliveredAt, scheduledAt, returnedAt)
}
