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
	b := kafkatest.StartT(t, kafkatest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.CreateTopic(ctx, "s", 2, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, _, err := wal.Open(dir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dl, _, err := wal.OpenDeadLetters(dir, 0o600)
	if err != nil {
		t.Fatal(err)
	}
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
	l.Close()
	dl.Close()
}

func valueID(r *kgo.Record) (uint64, bool) {
	var id uint64
	_, err := fmt.Sscan(string(r.Value), &id)
	return id, err == nil
}
