package kafkawal_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// Records appended with AppendAsync from one goroutine reach Kafka, in
// append order per partition; each callback runs once, in call order,
// with increasing sequences; Flush covers the calls made before it.
func TestAppendAsyncDelivered(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "async", 4, nil)
	cfg := baseConfig(t, b)
	cfg.AsyncQueue = 512 // small, so that calls also wait for room
	p := openT(t, cfg)
	ctx := testCtx(t, 3*time.Minute)
	const total = 20000
	var (
		mu      sync.Mutex
		acked   []uint64
		lastSeq uint64
		bad     []string
	)
	for id := uint64(1); id <= total; id++ {
		r := idRecord("async", kafkawal.PartitionAny, id, value(100, id))
		p.AppendAsync(ctx, r, func(seq uint64, err error) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				bad = append(bad, err.Error())
			case seq <= lastSeq:
				bad = append(bad, "sequence went back")
			case len(acked) > 0 && acked[len(acked)-1] != id-1:
				bad = append(bad, "callback out of call order")
			}
			lastSeq = seq
			acked = append(acked, id)
		})
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(bad) > 0 || len(acked) != total {
		t.Fatalf("%d callbacks for %d calls; problems: %v", len(acked), total, bad[:min(len(bad), 5)])
	}
	mu.Unlock()
	if st := p.Stats(); st.Appended != total || st.Delivered != total || st.Cursor != total {
		t.Fatalf("after Flush: %+v", st)
	}
	closeT(t, p, 30*time.Second)
	rep := verify(t, b, []string{"async"}, acked)
	if rep.Duplicates != 0 {
		t.Fatalf("%d duplicates without any fault", rep.Duplicates)
	}
}

// Close returns after every callback has run, those of calls still
// waiting for the WAL when it began included; a call after Close gets
// ErrClosed before AppendAsync returns; bad input reaches the callback.
func TestAppendAsyncClose(t *testing.T) {
	cfg := kafkawal.Config{Dir: t.TempDir(), Kafka: kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"}}
	p := openT(t, cfg)
	const calls = 5000
	var (
		mu       sync.Mutex
		answered int
		errs     []error
	)
	cb := func(_ uint64, err error) {
		mu.Lock()
		defer mu.Unlock()
		answered++
		if err != nil {
			errs = append(errs, err)
		}
	}
	ctx := context.Background()
	for i := range calls {
		r := kafkawal.Record{Topic: "t", Partition: kafkawal.PartitionAny, Value: []byte("v")}
		if i == calls/2 {
			r.Topic = "" // a field error, answered in turn
		}
		p.AppendAsync(ctx, r, cb)
	}
	// Nothing can be delivered: Close gives up at its deadline, with an
	// error saying so, after the callbacks.
	_ = p.Close(testCtx(t, 200*time.Millisecond))
	mu.Lock()
	if answered != calls {
		t.Fatalf("Close returned with %d of %d callbacks run", answered, calls)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "empty topic") {
		t.Fatalf("errors %v, want the one empty topic", errs)
	}
	mu.Unlock()
	var after error
	p.AppendAsync(ctx, kafkawal.Record{Topic: "t", Value: []byte("v")}, func(_ uint64, err error) { after = err })
	if !errors.Is(after, kafkawal.ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", after)
	}
	// A nil producer answers too.
	var nilP *kafkawal.Producer
	nilP.AppendAsync(ctx, kafkawal.Record{Topic: "t"}, func(_ uint64, err error) { after = err })
	if !errors.Is(after, kafkawal.ErrClosed) {
		t.Fatalf("nil producer: %v, want ErrClosed", after)
	}
}

// The queue's settings are checked like every other field.
func TestAppendAsyncConfig(t *testing.T) {
	for _, c := range []struct {
		field string
		set   func(*kafkawal.Config)
	}{
		{"AsyncQueue", func(c *kafkawal.Config) { c.AsyncQueue = -1 }},
		{"AsyncQueueBytes", func(c *kafkawal.Config) { c.AsyncQueueBytes = 1000 }},
	} {
		cfg := kafkawal.Config{Dir: t.TempDir(), Kafka: kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"}}
		c.set(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: Validate() = %v, want an error naming the field", c.field, err)
		}
	}
}
