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
	"github.com/kafkawal/kafkawal/sender"
)

// BenchmarkExactlyOnce: append → committed (read_committed consumers see
// it), kafkawal with Delivery ExactlyOnce, beside kafkawal at-least-once
// (append → delivery report) and a plain confluent-kafka-go transactional
// producer that commits every CommitInterval (the default, 100 ms), on the
// same broker, in the same shapes as EndToEnd (SyncPeriodic for kafkawal).
// kafkawal's records/s over at-least-once is x_alo (goal >= 0.8 at 1 KiB
// with batches), over the plain transactional producer x_plain_txn (goal
// >= 0.9). commit-p50-ms and commit-p99-ms are CommitTransaction's
// duration, for kafkawal from Stats (its last 1024 commits), for the plain
// producer from every commit of the run: it includes the flush of what
// the transaction holds.
func BenchmarkExactlyOnce(b *testing.B) {
	br := directBroker.get(b)
	for _, vs := range valueSizes {
		for _, s := range shapes {
			prefix := fmt.Sprintf("value=%d/%s", vs, s.name)
			key := "eos/" + prefix
			b.Run(prefix+"/kafkawal-AtLeastOnce", func(b *testing.B) {
				cfg := producerConfig(b.TempDir(), br.Bootstrap(), kafkawal.SyncPeriodic)
				rps := benchKafkawalEOS(b, cfg, newTopic(b, br), vs, s)
				recordPeer(b, key+"/alo", rps)
			})
			b.Run(prefix+"/plain-txn", func(b *testing.B) {
				rps := benchPlainTxn(b, br.Bootstrap(), newTopic(b, br), vs, s)
				recordPeer(b, key+"/plain-txn", rps)
			})
			b.Run(prefix+"/kafkawal-ExactlyOnce", func(b *testing.B) {
				cfg := producerConfig(b.TempDir(), br.Bootstrap(), kafkawal.SyncPeriodic)
				cfg.Delivery = kafkawal.ExactlyOnce
				cfg.TransactionalID = fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), topicSeq.Add(1))
				rps := benchKafkawalEOS(b, cfg, newTopic(b, br), vs, s)
				reportRatio(b, key+"/alo", rps, "x_alo")
				reportRatio(b, key+"/plain-txn", rps, "x_plain_txn")
			})
		}
	}
}

func benchKafkawalEOS(b *testing.B, cfg kafkawal.Config, topic string, valueSize int, s shape) float64 {
	p := openProducer(b, cfg)
	defer closeProducer(p, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	rs := batchOf(topic, s.batch, valueSize)
	// Warm up: connection, metadata, producer id, and under exactly-once
	// the transactions' start and the checkpoint read.
	if _, err := p.AppendBatch(ctx, rs[:1]); err != nil {
		b.Fatalf("warm-up append: %v", err)
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatalf("warm-up flush: %v", err)
	}
	b.ResetTimer()
	cpu := cpuWithBroker(b)
	err := drive(s, int64(b.N), rs, func(rs []kafkawal.Record) error {
		_, err := p.AppendBatch(ctx, rs)
		return err
	})
	if err == nil {
		err = p.Flush(ctx)
	}
	b.StopTimer()
	if err != nil {
		b.Fatalf("append and deliver %d records: %v", b.N, err)
	}
	reportCPU(b, cpuWithBroker(b)-cpu, int64(b.N))
	st := p.Stats()
	if st.DeadLettered > 0 || st.Fenced {
		b.Fatalf("stats: %+v", st)
	}
	if cfg.Delivery == kafkawal.ExactlyOnce {
		b.ReportMetric(ms(st.CommitLatencyP50), "commit-p50-ms")
		b.ReportMetric(ms(st.CommitLatencyP99), "commit-p99-ms")
		b.ReportMetric(float64(st.Transactions), "commits")
	}
	return reportRate(b, int64(b.N), valueSize, b.Elapsed())
}

// benchPlainTxn produces b.N records with a transactional confluent-kafka-go
// producer configured as kafkawal's sender would be (plainConfig plus a
// transactional.id), one transaction per DefaultCommitInterval: the
// appenders produce while a transaction is open; one goroutine commits it
// when its interval is over, holding the appenders back meanwhile (nothing
// can be produced during CommitTransaction), as kafkawal's sender does.
func benchPlainTxn(b *testing.B, bootstrap, topic string, valueSize int, s shape) float64 {
	cfg := plainConfig(b, bootstrap, kafka.ConfigMap{"transactional.id": fmt.Sprintf("bench-plain-%d-%d", time.Now().UnixNano(), topicSeq.Add(1))})
	pl := newPlain(b, cfg, nil)
	defer pl.close()
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	if err := pl.p.InitTransactions(ctx); err != nil {
		b.Fatalf("InitTransactions: %v", err)
	}
	v := value(valueSize)
	commit := func() (time.Duration, error) {
		t := time.Now()
		err := pl.p.CommitTransaction(ctx)
		return time.Since(t), err
	}
	// Warm up with one committed record.
	if err := pl.p.BeginTransaction(); err != nil {
		b.Fatal(err)
	}
	if err := pl.produce(message(&topic, v, nil)); err != nil {
		b.Fatalf("warm-up produce: %v", err)
	}
	if _, err := commit(); err != nil {
		b.Fatalf("warm-up commit: %v", err)
	}
	vals := make([][]byte, s.batch)
	for i := range vals {
		vals[i] = v
	}

	// gate: appenders produce only while a transaction is open (read
	// lock); the committer takes the write lock to commit and begin.
	var gate sync.RWMutex
	var lat []int64
	var failed atomic.Value
	stop := make(chan struct{})
	committed := make(chan struct{})
	if err := pl.p.BeginTransaction(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu := cpuWithBroker(b)
	go func() {
		defer close(committed)
		tick := time.NewTicker(sender.DefaultCommitInterval)
		defer tick.Stop()
		for {
			final := false
			select {
			case <-tick.C:
			case <-stop:
				final = true
			}
			gate.Lock()
			d, err := commit()
			if err == nil && !final {
				err = pl.p.BeginTransaction()
			}
			gate.Unlock()
			if err != nil {
				failed.Store(err)
				return
			}
			lat = append(lat, d.Nanoseconds())
			if final {
				return
			}
		}
	}()
	err := drive(s, int64(b.N), vals, func(vals [][]byte) error {
		gate.RLock()
		defer gate.RUnlock()
		for _, v := range vals {
			if err := pl.produce(message(&topic, v, nil)); err != nil {
				return err
			}
		}
		return nil
	})
	close(stop)
	<-committed
	if err == nil {
		if f := failed.Load(); f != nil {
			err = f.(error)
		}
	}
	if err == nil {
		err = pl.wait(ctx)
	}
	b.StopTimer()
	if err != nil {
		b.Fatalf("produce and commit %d records: %v", b.N, err)
	}
	reportCPU(b, cpuWithBroker(b)-cpu, int64(b.N))
	slices.Sort(lat)
	b.ReportMetric(float64(percentile(lat, 0.5))/1e6, "commit-p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99))/1e6, "commit-p99-ms")
	b.ReportMetric(float64(len(lat)), "commits")
	return reportRate(b, int64(b.N), valueSize, b.Elapsed())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
