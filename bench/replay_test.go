package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
)

// BenchmarkReplay: a restart with a backlog in the WAL (1 GiB of values
// under KAFKAWAL_BENCH_FULL=1, 16 MiB otherwise). The backlog is appended
// while no broker is reachable, the producer closed, then Open runs against
// the broker: first-delivery-ms is Open's start to the first delivery
// report (it includes open-ms, the recovery scan), records/s and MB/s the
// replay from Open's start until Flush returns. Beside it the plain
// producer produces the same number of records from a new producer:
// first-delivery-ms from NewProducer, records/s until the last report.
// x_plain is kafkawal's records/s over the plain producer's. One op is one
// restart (the backlog is built with the clock stopped).
func BenchmarkReplay(b *testing.B) {
	br := directBroker.get(b)
	backlog := pick[int64](1<<30, 16<<20)
	for _, vs := range valueSizes {
		n := (backlog + int64(vs) - 1) / int64(vs)
		prefix := fmt.Sprintf("value=%d/backlog=%dMiB", vs, backlog>>20)
		key := "replay/" + prefix
		b.Run(prefix+"/plain", func(b *testing.B) {
			recordPeer(b, key, benchPlainReplay(b, br.Bootstrap(), vs, n))
		})
		b.Run(prefix+"/kafkawal", func(b *testing.B) {
			reportRatio(b, key, benchKafkawalReplay(b, br.Bootstrap(), vs, n), "x_plain")
		})
	}
}

// replayDiskCap leaves room for a 1 GiB backlog of 100-byte values with
// kafkawal's framing (about 1.5 GiB on disk).
const replayDiskCap = 4 << 30

func benchKafkawalReplay(b *testing.B, bootstrap string, valueSize int, n int64) float64 {
	var firstDelivery, open, replay, cpu time.Duration
	for range b.N {
		b.StopTimer()
		topic := newTopic(b, directBroker.get(b))
		dir := b.TempDir()
		buildBacklog(b, dir, topic, valueSize, n)

		var t0 time.Time
		var first atomic.Int64
		cfg := producerConfig(dir, bootstrap, kafkawal.SyncAlways)
		cfg.MaxDiskBytes = replayDiskCap
		cfg.OnDeliveryResult = func(kafkawal.DeliveryResult) {
			if first.Load() == 0 {
				first.Store(int64(time.Since(t0)))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		b.StartTimer()
		cpu0 := cpuTime()
		t0 = time.Now()
		p := openProducer(b, cfg)
		open += time.Since(t0)
		err := p.Flush(ctx)
		replay += time.Since(t0)
		cpu += cpuTime() - cpu0
		b.StopTimer()
		cancel()
		if err != nil {
			b.Fatalf("replay of %d records: %v", n, err)
		}
		if got := p.OpenReport().Replay; got != uint64(n) {
			b.Fatalf("Open found %d records to replay, want %d", got, n)
		}
		firstDelivery += time.Duration(first.Load())
		closeProducer(p, time.Minute)
	}
	b.ReportMetric(float64(firstDelivery.Milliseconds())/float64(b.N), "first-delivery-ms")
	b.ReportMetric(float64(open.Milliseconds())/float64(b.N), "open-ms")
	reportCPU(b, cpu, n*int64(b.N))
	return reportRate(b, n*int64(b.N), valueSize, replay)
}

// buildBacklog appends n records to a WAL in dir with no broker to deliver
// them, then closes it: what a producer leaves behind after an outage.
// SyncNever only makes the build fast; Close syncs the log.
func buildBacklog(b *testing.B, dir, topic string, valueSize int, n int64) {
	cfg := producerConfig(dir, deadBootstrap(b), kafkawal.SyncNever)
	cfg.MaxDiskBytes = replayDiskCap
	p := openProducer(b, cfg)
	rs := batchOf(topic, 1000, valueSize)
	err := drive(shape{"batch", 1, 1000, false}, n, rs, func(rs []kafkawal.Record) error {
		_, err := p.AppendBatch(context.Background(), rs)
		return err
	})
	if err != nil {
		b.Fatalf("build backlog: %v", err)
	}
	closeProducer(p, 100*time.Millisecond)
}

func benchPlainReplay(b *testing.B, bootstrap string, valueSize int, n int64) float64 {
	var firstDelivery, total, cpu time.Duration
	v := value(valueSize)
	for range b.N {
		b.StopTimer()
		topic := newTopic(b, directBroker.get(b))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		var t0 time.Time
		var first atomic.Int64
		b.StartTimer()
		cpu0 := cpuTime()
		t0 = time.Now()
		pl := newPlain(b, plainConfig(b, bootstrap, nil), func(*kafka.Message) {
			if first.Load() == 0 {
				first.Store(int64(time.Since(t0)))
			}
		})
		var err error
		for i := int64(0); i < n && err == nil; i++ {
			err = pl.produce(message(&topic, v, nil))
		}
		if err == nil {
			err = pl.wait(ctx)
		}
		total += time.Since(t0)
		cpu += cpuTime() - cpu0
		b.StopTimer()
		cancel()
		if err != nil {
			b.Fatalf("produce %d records: %v", n, err)
		}
		firstDelivery += time.Duration(first.Load())
		pl.close()
	}
	b.ReportMetric(float64(firstDelivery.Milliseconds())/float64(b.N), "first-delivery-ms")
	reportCPU(b, cpu, n*int64(b.N))
	return reportRate(b, n*int64(b.N), valueSize, total)
}
