package kafkawal_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// Review findings (h/review1): each test fails on main 12d6b79.

// Latencies.Append (and kafkawal_append_duration_seconds, whose help says
// so too) documents "each successful AppendAsync call, from the call to
// its durable callback": AppendAsync never observes anything, so a
// service that appends only asynchronously exports an empty histogram.
func TestReview_Prom_AppendAsyncNotObserved(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "revlat", 1, nil)
	p := openT(t, baseConfig(t, b))
	ctx := testCtx(t, time.Minute)
	const calls = 10
	done := make(chan error, calls)
	for i := range calls {
		p.AppendAsync(ctx, idRecord("revlat", 0, uint64(i+1), []byte("v")), func(_ uint64, err error) { done <- err })
	}
	for range calls {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.Latencies().Append.Count; got != calls {
		t.Fatalf("Latencies().Append.Count = %d after %d successful AppendAsync calls; its doc promises one observation per call", got, calls)
	}
}

// contradictions() refuses MaxRecordBytes above Kafka[message.max.bytes]
// ("records in between would be accepted, then refused by librdkafka and
// dead-lettered"), but only when the application set message.max.bytes:
// left at librdkafka's default (1000000) the same contradiction passes,
// and a record between the two is accepted by Append (contract 8 says a
// record over the limit fails before it enters the WAL) and then
// dead-lettered by librdkafka's own size check.
func TestReview_Config_MaxRecordBytesAboveLibrdkafkaDefault(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "revbig", 1, nil)
	cfg := baseConfig(t, b)
	cfg.MaxRecordBytes = 1_040_000 // above librdkafka's message.max.bytes, 1000000
	p, err := kafkawal.Open(cfg)
	if err != nil {
		if strings.Contains(err.Error(), "MaxRecordBytes") {
			return // refused, naming the field: fine
		}
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { p.Close(testCtx(t, 5*time.Second)) })
	ctx := testCtx(t, time.Minute)
	if _, err := p.Append(ctx, kafkawal.Record{Topic: "revbig", Partition: 0, Value: make([]byte, 1_010_000)}); err != nil {
		if errors.Is(err, kafkawal.ErrTooLarge) {
			return // refused before it entered the WAL: fine
		}
		t.Fatalf("Append: %v", err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("a record Append accepted (MaxRecordBytes %d, Kafka[message.max.bytes] unset) was not delivered: %v", cfg.MaxRecordBytes, err)
	}
}

// With Kafka[queue.buffering.max.kbytes] set below the default
// MaxRecordBytes (1000000), derive() lowers MaxInFlightBytes to it but
// leaves MaxRecordBytes at its default: Append accepts a record larger
// than librdkafka's whole queue. librdkafka answers every Produce of it
// with ErrQueueFull, which the sender retries forever: delivery stops at
// that record and every later record waits behind it.
func TestReview_Config_QueueKbytesBelowDefaultMaxRecord(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "revq", 1, nil)
	cfg := baseConfig(t, b)
	cfg.Kafka["queue.buffering.max.kbytes"] = 256
	p, err := kafkawal.Open(cfg)
	if err != nil {
		if strings.Contains(err.Error(), "queue.buffering.max.kbytes") || strings.Contains(err.Error(), "MaxRecordBytes") {
			return // refused, naming a field the application set
		}
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { p.Close(testCtx(t, 5*time.Second)) })
	ctx := testCtx(t, time.Minute)
	if _, err := p.Append(ctx, kafkawal.Record{Topic: "revq", Partition: 0, Value: make([]byte, 600_000)}); err != nil {
		if errors.Is(err, kafkawal.ErrTooLarge) {
			return // refused before it entered the WAL: fine
		}
		t.Fatalf("Append: %v", err)
	}
	if _, err := p.Append(ctx, kafkawal.Record{Topic: "revq", Partition: 0, Value: []byte("small, behind it")}); err != nil {
		t.Fatal(err)
	}
	fctx := testCtx(t, 20*time.Second)
	if err := p.Flush(fctx); err != nil {
		st := p.Stats()
		t.Fatalf("Flush: %v; Stats: delivered %d, dead-lettered %d, backlog %d: a 600 KB record Append accepted can never enter librdkafka's 256 KiB queue", err, st.Delivered, st.DeadLettered, st.BacklogRecords)
	}
}
