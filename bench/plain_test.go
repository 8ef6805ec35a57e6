package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal/sender"
)

// plainConfig is the librdkafka configuration kafkawal's sender would use
// for bootstrap (enable.idempotence=true, acks=all, linger.ms=5,
// message.timeout.ms=0, queue.buffering.max.messages=100000, delivery
// reports on Events() with go.delivery.report.fields=none, logs on a
// channel), with overrides applied: the plain producer is the same
// librdkafka, set up the same way, without the WAL.
func plainConfig(b testing.TB, bootstrap string, overrides kafka.ConfigMap) kafka.ConfigMap {
	b.Helper()
	m, err := plainKafkaConfig(bootstrap, overrides)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func plainKafkaConfig(bootstrap string, overrides kafka.ConfigMap) (kafka.ConfigMap, error) {
	m, err := sender.Config{Kafka: kafka.ConfigMap{"bootstrap.servers": bootstrap}}.KafkaConfig()
	if err != nil {
		return nil, fmt.Errorf("sender config: %w", err)
	}
	for k, v := range overrides {
		m[k] = v
	}
	return m, nil
}

// plain is a confluent-kafka-go producer used the way a careful application
// uses it: one goroutine drains Events() (delivery reports) and Logs(),
// Produce waits for reports when librdkafka's queue is full instead of
// dropping or spinning.
type plain struct {
	p                   *kafka.Producer
	produced, delivered atomic.Int64
	failed              atomic.Int64
	lastErr             atomic.Value
	onReport            func(*kafka.Message)
	progress            chan struct{} // signalled (non-blocking) on reports
	done                chan struct{}
}

// newPlain creates the producer; onReport, if set, sees every delivery
// report on the events goroutine.
func newPlain(b testing.TB, cfg kafka.ConfigMap, onReport func(*kafka.Message)) *plain {
	b.Helper()
	pl, err := startPlain(cfg, onReport)
	if err != nil {
		b.Fatal(err)
	}
	return pl
}

func startPlain(cfg kafka.ConfigMap, onReport func(*kafka.Message)) (*plain, error) {
	p, err := kafka.NewProducer(&cfg)
	if err != nil {
		return nil, fmt.Errorf("kafka.NewProducer: %w", err)
	}
	pl := &plain{p: p, onReport: onReport, progress: make(chan struct{}, 1), done: make(chan struct{})}
	go pl.drain()
	return pl, nil
}

func (pl *plain) drain() {
	defer close(pl.done)
	events, logs := pl.p.Events(), pl.p.Logs()
	for events != nil || logs != nil {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if m, isMsg := ev.(*kafka.Message); isMsg {
				// onReport first: wait returns on the counters, and
				// what onReport wrote must be there by then.
				if pl.onReport != nil {
					pl.onReport(m)
				}
				if m.TopicPartition.Error != nil {
					pl.lastErr.Store(m.TopicPartition.Error)
					pl.failed.Add(1)
				} else {
					pl.delivered.Add(1)
				}
				select {
				case pl.progress <- struct{}{}:
				default:
				}
			}
		case _, ok := <-logs:
			if !ok {
				logs = nil
			}
		}
	}
}

// produce hands m to librdkafka, waiting for delivery reports while its
// queue is full; its report goes to Events() and is counted by wait.
func (pl *plain) produce(m *kafka.Message) error {
	if err := pl.produceTo(m, nil); err != nil {
		return err
	}
	pl.produced.Add(1)
	return nil
}

// produceTo hands m to librdkafka with its report going to ch (nil:
// Events()), waiting while librdkafka's queue is full.
func (pl *plain) produceTo(m *kafka.Message, ch chan kafka.Event) error {
	for {
		err := pl.p.Produce(m, ch)
		if err == nil {
			return nil
		}
		var ke kafka.Error
		if !errors.As(err, &ke) || ke.Code() != kafka.ErrQueueFull {
			return err
		}
		select {
		case <-pl.progress:
		case <-time.After(time.Millisecond):
		}
	}
}

// produceAcked produces one record per value with a delivery channel of
// its own and returns once every one of them is delivered (an error if
// one is not, or ctx ends). Their reports go to that channel, not to
// Events(), so wait does not count them.
func (pl *plain) produceAcked(ctx context.Context, topic *string, vals [][]byte) error {
	ch := make(chan kafka.Event, len(vals))
	for _, v := range vals {
		if err := pl.produceTo(message(topic, v, nil), ch); err != nil {
			return err
		}
	}
	for range vals {
		select {
		case ev := <-ch:
			if m, ok := ev.(*kafka.Message); ok && m.TopicPartition.Error != nil {
				return fmt.Errorf("plain producer: delivery failed: %w", m.TopicPartition.Error)
			}
		case <-ctx.Done():
			return fmt.Errorf("plain producer: waiting for delivery: %w", ctx.Err())
		}
	}
	return nil
}

// tryProduce hands m to librdkafka or fails at once (ErrQueueFull).
func (pl *plain) tryProduce(m *kafka.Message) error {
	err := pl.p.Produce(m, nil)
	if err == nil {
		pl.produced.Add(1)
	}
	return err
}

// wait returns once every produced record has its report, or ctx ends. A
// failed report is an error: a benchmark must not count a lost record.
func (pl *plain) wait(ctx context.Context) error {
	for {
		d, f := pl.delivered.Load(), pl.failed.Load()
		if f > 0 {
			return fmt.Errorf("plain producer: %d records failed (last: %v)", f, pl.lastErr.Load())
		}
		if d >= pl.produced.Load() {
			return nil
		}
		select {
		case <-pl.progress:
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("plain producer: %d of %d delivered: %w", d, pl.produced.Load(), ctx.Err())
		}
	}
}

// close flushes what is left (bounded) and closes the producer.
func (pl *plain) close() {
	pl.p.Flush(10_000)
	pl.p.Close()
	<-pl.done
}

// message is a plain producer's copy of a record: same topic, partitioner,
// value and timestamp as kafkawal sends.
func message(topic *string, v []byte, opaque any) *kafka.Message {
	return &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: topic, Partition: kafka.PartitionAny},
		Value:          v,
		Timestamp:      time.Now(),
		Opaque:         opaque,
	}
}
