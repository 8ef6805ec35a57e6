package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
)

// BenchmarkEndToEnd: append → delivery report, through kafkawal and
// through a plain confluent-kafka-go producer with the same librdkafka
// settings (plainConfig), on the same broker, with the same records, in
// the same shapes as BenchmarkDurableAppend (for the plain producer,
// "batch=1000" and "async=1" are one goroutine producing in a loop; async=1
// has no plain-acked). The clock runs from
// the first append to the last delivery report (kafkawal: Flush returns);
// both sides are warmed up first (connection, metadata, producer id) with
// one delivered record. kafkawal reports its records/s over the plain
// producer's as x_plain; the goals are ≥ 0.90 with SyncPeriodic and ≥ 0.75
// with SyncAlways. "plain-opaque" is the plain producer giving each record
// an Opaque (a uint64, as kafkawal gives its sequence), as an application
// that tracks each record's delivery does; kafkawal's records/s over it is
// x_plain_opaque. "plain-acked" waits, in each appender, for its records'
// delivery reports before going on: what an application without a WAL does
// to acknowledge only what Kafka has (x_plain_acked). cpu-us/record is the
// process's CPU per record (with the embedded broker, the broker's
// included). of_disk, when BenchmarkDurableAppend's rawdisk-stream ran
// earlier in the same process, is the values' MB/s over the disk's
// streaming bandwidth: kafkawal writes every byte to the WAL and fsyncs it
// (every segment when it is sealed, whatever the Durability), so a plain
// producer near or above 1 runs as fast as the disk writes or faster. One
// op is one record.
func BenchmarkEndToEnd(b *testing.B) {
	br := directBroker.get(b)
	for _, vs := range valueSizes {
		for _, s := range kafkawalShapes {
			prefix := fmt.Sprintf("value=%d/%s", vs, s.name)
			key := fmt.Sprintf("e2e/%s", prefix)
			variants := []plainVariant{plainAsync, plainOpaque, plainAcked}
			if s.async {
				// Acknowledged one record at a time, the plain producer
				// would wait for Kafka's round trip per record.
				variants = variants[:2]
			}
			for _, v := range variants {
				b.Run(prefix+"/"+string(v), func(b *testing.B) {
					rps := benchPlainE2E(b, br.Bootstrap(), newTopic(b, br), vs, s, v)
					recordPeer(b, key+"/"+string(v), rps)
					reportRatio(b, fmt.Sprintf("disk-stream/%d", vs), rps*float64(vs)/1e6, "of_disk")
				})
			}
			for _, m := range []struct {
				name string
				mode kafkawal.Durability
			}{{"SyncPeriodic", kafkawal.SyncPeriodic}, {"SyncAlways", kafkawal.SyncAlways}} {
				b.Run(prefix+"/kafkawal-"+m.name, func(b *testing.B) {
					rps := benchKafkawalE2E(b, br.Bootstrap(), newTopic(b, br), vs, s, m.mode)
					reportRatio(b, key+"/"+string(plainAsync), rps, "x_plain")
					reportRatio(b, key+"/"+string(plainOpaque), rps, "x_plain_opaque")
					reportRatio(b, key+"/"+string(plainAcked), rps, "x_plain_acked")
					reportRatio(b, fmt.Sprintf("disk-stream/%d", vs), rps*float64(vs)/1e6, "of_disk")
				})
			}
		}
	}
}

// e2eTimeout bounds one run's wait for its deliveries.
const e2eTimeout = 10 * time.Minute

func benchKafkawalE2E(b *testing.B, bootstrap, topic string, valueSize int, s shape, mode kafkawal.Durability) float64 {
	p := openProducer(b, producerConfig(b.TempDir(), bootstrap, mode))
	defer closeProducer(p, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	rs := batchOf(topic, s.batch, valueSize)
	if _, err := p.AppendBatch(ctx, rs[:1]); err != nil {
		b.Fatalf("warm-up append: %v", err)
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatalf("warm-up flush: %v", err)
	}
	put := func(rs []kafkawal.Record) error {
		_, err := p.AppendBatch(ctx, rs)
		return err
	}
	var async *asyncAppender
	if s.async {
		async = newAsyncAppender(ctx, p, int64(b.N))
		put = async.put
	}
	b.ResetTimer()
	cpu := cpuWithBroker(b)
	err := drive(s, int64(b.N), rs, put)
	if err == nil && async != nil {
		err = async.wait()
	}
	if err == nil {
		err = p.Flush(ctx)
	}
	b.StopTimer()
	if err != nil {
		b.Fatalf("append and deliver %d records: %v", b.N, err)
	}
	reportCPU(b, cpuWithBroker(b)-cpu, int64(b.N))
	if st := p.Stats(); st.DeadLettered > 0 {
		b.Fatalf("%d records dead-lettered", st.DeadLettered)
	}
	return reportRate(b, int64(b.N), valueSize, b.Elapsed())
}

// plainVariant is how the plain producer is used.
type plainVariant string

const (
	// plainAsync: Produce and move on; reports counted on Events().
	plainAsync plainVariant = "plain"
	// plainOpaque: the same, each record carrying an Opaque (a uint64).
	plainOpaque plainVariant = "plain-opaque"
	// plainAcked: each appender waits for its records' delivery reports
	// before producing more, as an application must that acknowledges a
	// record only once Kafka has it (without a WAL, the only durable
	// acknowledgement there is).
	plainAcked plainVariant = "plain-acked"
)

func benchPlainE2E(b *testing.B, bootstrap, topic string, valueSize int, s shape, variant plainVariant) float64 {
	pl := newPlain(b, plainConfig(b, bootstrap, nil), nil)
	defer pl.close()
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	v := value(valueSize)
	if err := pl.produce(message(&topic, v, nil)); err != nil {
		b.Fatalf("warm-up produce: %v", err)
	}
	if err := pl.wait(ctx); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	vals := make([][]byte, s.batch)
	for i := range vals {
		vals[i] = v
	}
	b.ResetTimer()
	cpu := cpuWithBroker(b)
	var seq atomic.Uint64
	err := drive(s, int64(b.N), vals, func(vals [][]byte) error {
		if variant == plainAcked {
			return pl.produceAcked(ctx, &topic, vals)
		}
		for _, v := range vals {
			var op any
			if variant == plainOpaque {
				op = seq.Add(1)
			}
			if err := pl.produce(message(&topic, v, op)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = pl.wait(ctx)
	}
	b.StopTimer()
	if err != nil {
		b.Fatalf("produce and deliver %d records: %v", b.N, err)
	}
	reportCPU(b, cpuWithBroker(b)-cpu, int64(b.N))
	return reportRate(b, int64(b.N), valueSize, b.Elapsed())
}
