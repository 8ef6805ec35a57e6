package sender

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/wal"
)

func TestSenderDeliversInOrder(t *testing.T) {
	b, ctx := brokerWithTopic(t, "s", 2)
	l, dl := openLogs(t)
	s, err := New(l, dl, Config{Kafka: kafka.ConfigMap{"bootstrap.servers": b.Bootstrap()}})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	const n = 2000
	var acked []uint64
	for i := 0; i < n; i++ {
		seq, err := l.Append(ctx, []wal.Record{{Topic: "s", Partition: int32(i % 2), Value: []byte(fmt.Sprint(i + 1))}})
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, seq)
	}
	if err := s.Flush(ctx, l.LastSeq()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx, l.LastSeq()); err != nil {
		t.Fatal(err)
	}
	if l.Cursor() != n {
		t.Fatalf("cursor %d, want %d", l.Cursor(), n)
	}
	recs, err := kafkatest.ReadAll(ctx, b.Bootstrap(), []string{"s"}, n)
	if err != nil {
		t.Fatal(err)
	}
	rep := kafkatest.Verify(acked, recs, valueID, nil)
	if !rep.OK() || rep.Duplicates != 0 {
		t.Fatalf("verify: %v", rep)
	}
}

// brokerWithTopic starts a broker for the test with one topic, and
// returns a context for the test's deadline.
func brokerWithTopic(t *testing.T, topic string, partitions int32) (kafkatest.Broker, context.Context) {
	t.Helper()
	b := kafkatest.StartT(t, kafkatest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if err := b.CreateTopic(ctx, topic, partitions, nil); err != nil {
		t.Fatal(err)
	}
	return b, ctx
}

// openLogs opens a WAL and its dead-letter log in a test directory,
// closed when the test ends.
func openLogs(t *testing.T) (*wal.Log, *wal.DeadLetters) {
	t.Helper()
	dir := t.TempDir()
	l, _, err := wal.Open(dir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	dl, _, err := wal.OpenDeadLetters(dir, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dl.Close() })
	return l, dl
}

func valueID(r *kgo.Record) (uint64, bool) {
	var id uint64
	_, err := fmt.Sscan(string(r.Value), &id)
	return id, err == nil
}

// A drain whose last outstanding report is a success ends in a rewind once
// maybeRewind runs (the run loop calls it after every event; it used to be
// called only after failure reports, and the sender then waited for ever).
func TestDrainEndsOnSuccessReport(t *testing.T) {
	dir := t.TempDir()
	l, _, err := wal.Open(dir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 3; i++ {
		if _, err := l.Append(context.Background(), []wal.Record{{Topic: "t", Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s := &Sender{wal: l, p: p, win: newWindow(1, 16), rt: newRouter(consistentRandom, 0), mode: normal, lg: Config{}.withDefaults().Logger}
	for seq := uint64(1); seq <= 3; seq++ {
		s.win.add(seq, 10, 0)
	}
	topic := "t"
	fail := kafka.NewError(kafka.ErrMsgTimedOut, "", false)
	s.report(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Error: fail}, Opaque: uint64(1)})
	if s.mode != draining {
		t.Fatalf("mode %v after a transient failure, want draining", s.mode)
	}
	s.report(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic}, Opaque: uint64(2)})
	s.report(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic}, Opaque: uint64(3)})
	s.maybeRewind() // what the run loop does after every event
	if s.mode != normal || s.win.next != 1 {
		t.Fatalf("after the last report: mode %v next %d, want normal and a rewind to 1", s.mode, s.win.next)
	}
}
