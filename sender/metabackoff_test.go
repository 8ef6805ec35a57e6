package sender

import (
	"errors"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal/wal"
)

// While librdkafka reports every broker down, routing a record asks for
// no metadata (a request would only make librdkafka connect at once);
// once Kafka is reachable again it asks at the next record.
func TestNoMetadataRequestWhileUnreachable(t *testing.T) {
	s := &Sender{rt: newRouter(consistent, 0), meta: &metaFetcher{req: make(chan string, 8)}, positional: true}
	s.rt.tick()
	e := &wal.Entry{Seq: 1, Record: wal.Record{Topic: "t", Partition: wal.PartitionAny, Key: []byte("k")}}
	s.stats.unreachable.Store(true)
	for range 100 {
		if d := s.dest(e, false); !d.opaque || d.p != nil {
			t.Fatalf("routed to %+v without a partition count", d)
		}
	}
	if n := len(s.meta.req); n != 0 {
		t.Fatalf("%d metadata requests while unreachable, want 0", n)
	}
	s.stats.unreachable.Store(false)
	s.dest(e, false)
	s.dest(e, false)
	if n := len(s.meta.req); n != 1 {
		t.Fatalf("%d metadata requests once reachable, want 1", n)
	}
}

// A failed request is asked again after a delay that doubles up to
// metaRefresh, and at once metaRefresh while every broker is down; a
// success resets it, and so does the end of an outage.
func TestMetadataRetryBacksOff(t *testing.T) {
	r := newRouter(consistent, 0)
	now := time.Unix(1000, 0)
	r.clock = func() time.Time { return now }
	tr := r.topic("t")
	var delays []time.Duration
	for range 7 {
		r.setMeta("t", nil, errors.New("timed out"), false)
		delays = append(delays, tr.fetchAt.Sub(now))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, metaRefresh, metaRefresh}
	for i := range want {
		if delays[i] != want[i] {
			t.Fatalf("retry delays %v, want %v", delays, want)
		}
	}
	r.setMeta("t", &kafka.TopicMetadata{Topic: "t", Partitions: []kafka.PartitionMetadata{{ID: 0, Leader: 1}}}, nil, false)
	r.setMeta("t", nil, errors.New("timed out"), false)
	if d := tr.fetchAt.Sub(now); d != metaRetry {
		t.Fatalf("first retry after a success: %v, want %v", d, metaRetry)
	}
	r.setMeta("t", nil, errors.New("all brokers down"), true)
	if d := tr.fetchAt.Sub(now); d != metaRefresh {
		t.Fatalf("retry while unreachable: %v, want %v", d, metaRefresh)
	}
	r.retryMetaNow()
	if !tr.fetchAt.IsZero() || tr.retry != 0 {
		t.Fatalf("after the outage: fetchAt %v retry %v, want now", tr.fetchAt, tr.retry)
	}
}
