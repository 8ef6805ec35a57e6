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
// transactional.id), one transaction per DefaultCommitInterval (see
// plainTxn), from the shape's appenders.
func benchPlainTxn(b *testing.B, bootstrap, topic string, valueSize int, s shape) float64 {
	pt := newPlainTxn(b, bootstrap)
	defer pt.close()
	v := value(valueSize)
	// Warm up with one committed record.
	if err := pt.warm(message(&topic, v, nil)); err != nil {
		b.Fatal(err)
	}
	vals := make([][]byte, s.batch)
	for i := range vals {
		vals[i] = v
	}
	b.ResetTimer()
	cpu := cpuWithBroker(b)
	pt.start()
	err := drive(s, int64(b.N), vals, func(vals [][]byte) error {
		return pt.hold(func() error {
			for _, v := range vals {
				if err := pt.pl.produce(message(&topic, v, nil)); err != nil {
					return err
				}
			}
			return nil
		})
	})
	err = pt.finish(err)
	b.StopTimer()
	if err != nil {
		b.Fatalf("produce and commit %d records: %v", b.N, err)
	}
	reportCPU(b, cpuWithBroker(b)-cpu, int64(b.N))
	pt.report(b)
	return reportRate(b, int64(b.N), valueSize, b.Elapsed())
}

// plainTxn is a plain transactional producer and the goroutine that
// commits its transaction every DefaultCommitInterval: the producers
// produce while a transaction is open (hold); the committer holds them
// back to commit and begin the next (nothing can be produced during
// CommitTransaction), as kafkawal's sender does.
type plainTxn struct {
	pl  *plain
	ctx context.Context
	// gate: a read lock to produce, the write lock to commit and begin.
	gate      sync.RWMutex
	lat       []int64
	failed    atomic.Value
	stop      chan struct{}
	committed chan struct{}
	cancel    context.CancelFunc
}

func newPlainTxn(b *testing.B, bootstrap string) *plainTxn {
	cfg := plainConfig(b, bootstrap, kafka.ConfigMap{"transactional.id": fmt.Sprintf("bench-plain-%d-%d", time.Now().UnixNano(), topicSeq.Add(1))})
	pt := &plainTxn{pl: newPlain(b, cfg, nil), stop: make(chan struct{}), committed: make(chan struct{})}
	pt.ctx, pt.cancel = context.WithTimeout(context.Background(), e2eTimeout)
	if err := pt.pl.p.InitTransactions(pt.ctx); err != nil {
		pt.close()
		b.Fatalf("InitTransactions: %v", err)
	}
	return pt
}

func (pt *plainTxn) close() {
	pt.cancel()
	pt.pl.close()
}

func (pt *plainTxn) commit() (time.Duration, error) {
	t := time.Now()
	err := pt.pl.p.CommitTransaction(pt.ctx)
	return time.Since(t), err
}

// warm commits a transaction of the given records, then begins the one
// the run produces into.
func (pt *plainTxn) warm(ms ...*kafka.Message) error {
	if err := pt.pl.p.BeginTransaction(); err != nil {
		return err
	}
	for _, m := range ms {
		if err := pt.pl.produce(m); err != nil {
			return fmt.Errorf("warm-up produce: %w", err)
		}
	}
	if _, err := pt.commit(); err != nil {
		return fmt.Errorf("warm-up commit: %w", err)
	}
	return pt.pl.p.BeginTransaction()
}

// start starts the committer.
func (pt *plainTxn) start() {
	go func() {
		defer close(pt.committed)
		tick := time.NewTicker(sender.DefaultCommitInterval)
		defer tick.Stop()
		for {
			final := false
			select {
			case <-tick.C:
			case <-pt.stop:
				final = true
			}
			pt.gate.Lock()
			d, err := pt.commit()
			if err == nil && !final {
				err = pt.pl.p.BeginTransaction()
			}
			pt.gate.Unlock()
			if err != nil {
				pt.failed.Store(err)
				return
			}
			pt.lat = append(pt.lat, d.Nanoseconds())
			if final {
				return
			}
		}
	}()
}

// hold runs produce while the transaction is open.
func (pt *plainTxn) hold(produce func() error) error {
	pt.gate.RLock()
	defer pt.gate.RUnlock()
	return produce()
}

// finish commits the last transaction and waits for every delivery
// report; it returns err, or the first error of its own.
func (pt *plainTxn) finish(err error) error {
	close(pt.stop)
	<-pt.committed
	if err == nil {
		if f := pt.failed.Load(); f != nil {
			err = f.(error)
		}
	}
	if err == nil {
		err = pt.pl.wait(pt.ctx)
	}
	return err
}

// report reports the commits' latency and number (after finish).
func (pt *plainTxn) report(b *testing.B) {
	slices.Sort(pt.lat)
	b.ReportMetric(float64(percentile(pt.lat, 0.5))/1e6, "commit-p50-ms")
	b.ReportMetric(float64(percentile(pt.lat, 0.99))/1e6, "commit-p99-ms")
	b.ReportMetric(float64(len(pt.lat)), "commits")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
