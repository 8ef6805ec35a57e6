package kafkawal_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// WaitDelivered tells each caller where its record is in Kafka: the
// partition and offset it returns hold exactly that record when read back
// with an independent client. OnDeliveryResult and the deprecated
// positional OnDelivered see the same outcomes.
func TestWaitDelivered(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "rec", 3, nil)
	cfg := baseConfig(t, b)
	var mu sync.Mutex
	viaStruct := map[uint64]kafkawal.DeliveryResult{}
	viaPositional := map[uint64][2]int64{}
	cfg.OnDeliveryResult = func(r kafkawal.DeliveryResult) { mu.Lock(); viaStruct[r.Seq] = r; mu.Unlock() }
	cfg.OnDelivered = func(seq uint64, _ string, partition int32, offset int64) {
		mu.Lock()
		viaPositional[seq] = [2]int64{int64(partition), offset}
		mu.Unlock()
	}
	p := openT(t, cfg)
	ctx := testCtx(t, 2*time.Minute)

	const n = 300
	results := make([]kafkawal.DeliveryResult, n+1)
	var wg sync.WaitGroup
	var ids []uint64
	for id := uint64(1); id <= n; id++ {
		seq, err := p.Append(ctx, idRecord("rec", kafkawal.PartitionAny, id, value(100, id)))
		if err != nil {
			t.Fatal(err)
		}
		if seq != id {
			t.Fatalf("seq %d for id %d", seq, id)
		}
		ids = append(ids, id)
		wg.Go(func() {
			r, err := p.WaitDelivered(ctx, seq)
			if err != nil {
				t.Errorf("WaitDelivered(%d): %v", seq, err)
			}
			results[seq] = r
		})
	}
	wg.Wait()
	recs, err := kafkatest.ReadAll(ctx, b.Bootstrap(), []string{"rec"}, n)
	if err != nil {
		t.Fatal(err)
	}
	at := map[[2]int64]uint64{}
	for _, r := range recs {
		id, _ := recordID(r)
		at[[2]int64{int64(r.Partition), r.Offset}] = id
	}
	mu.Lock()
	defer mu.Unlock()
	for seq := uint64(1); seq <= n; seq++ {
		r := results[seq]
		where := [2]int64{int64(r.Partition), r.Offset}
		if r.Seq != seq || r.Topic != "rec" || at[where] != seq {
			t.Fatalf("WaitDelivered(%d) = %+v; Kafka holds id %d there", seq, r, at[where])
		}
		if s := viaStruct[seq]; s != r {
			t.Fatalf("OnDeliveryResult(%d) = %+v, WaitDelivered %+v", seq, s, r)
		}
		if viaPositional[seq] != where {
			t.Fatalf("OnDelivered(%d) = %v, WaitDelivered %v", seq, viaPositional[seq], where)
		}
	}
	// Asked again, long after: still the same answer (from the ring).
	if r, err := p.WaitDelivered(ctx, 7); err != nil || r != results[7] {
		t.Fatalf("WaitDelivered(7) again: %+v, %v", r, err)
	}
	for _, seq := range []uint64{0, n + 1} {
		if _, err := p.WaitDelivered(ctx, seq); err == nil {
			t.Fatalf("WaitDelivered(%d) of a sequence never appended: no error", seq)
		}
	}
	closeT(t, p, 10*time.Second)
	verify(t, b, []string{"rec"}, ids)

	// After a restart the ring is empty: a record delivered before is
	// delivered, where is not known.
	p = openT(t, cfg)
	if r, err := p.WaitDelivered(ctx, 7); err != nil || r.Partition != -1 || r.Offset != -1 {
		t.Fatalf("WaitDelivered(7) after a restart: %+v, %v; want delivered, place unknown", r, err)
	}
	closeT(t, p, 10*time.Second)
}

// A record Kafka refuses for good: WaitDelivered, Flush and Close each
// say so with a *DeadLetterError carrying Kafka's error code, and the
// dead-letter log keeps the code and the partition; after a restart,
// WaitDelivered finds the record in the dead-letter log.
func TestDeadLetterOutcome(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "small", 1, map[string]string{"max.message.bytes": "50000"})
	cfg := baseConfig(t, b)
	cfg.Kafka["compression.type"] = "none"
	cfg.Kafka["batch.size"] = 40000
	p := openT(t, cfg)
	ctx := testCtx(t, 2*time.Minute)

	appendOne := func(id uint64, size int) uint64 {
		seq, err := p.Append(ctx, idRecord("small", 0, id, value(size, id)))
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	checkDead := func(what string, err error, seq uint64, count int) {
		t.Helper()
		var dle *kafkawal.DeadLetterError
		if !errors.Is(err, kafkawal.ErrDeadLettered) || !errors.As(err, &dle) {
			t.Fatalf("%s: %v, want a *DeadLetterError", what, err)
		}
		if dle.Count != count || dle.First.Seq != seq || kafka.ErrorCode(dle.First.Code) != kafka.ErrMsgSizeTooLarge ||
			dle.First.SentToPartition != 0 {
			t.Fatalf("%s: %d dead letters, first %d code %d partition %d; want %d, %d, MSG_SIZE_TOO_LARGE, 0",
				what, dle.Count, dle.First.Seq, dle.First.Code, dle.First.SentToPartition, count, seq)
		}
	}

	appendOne(1, 100)
	big := appendOne(2, 100000)
	appendOne(3, 100)
	checkDead("Flush", p.Flush(ctx), big, 1)
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("a second Flush, with nothing dead-lettered since: %v", err)
	}
	r, err := p.WaitDelivered(ctx, big)
	checkDead("WaitDelivered", err, big, 1)
	if r.Err != err || r.Offset != -1 {
		t.Fatalf("result %+v", r)
	}
	// The case: a record dead-lettered while Close delivers it.
	appendOne(4, 100)
	big2 := appendOne(5, 100000)
	appendOne(6, 100)
	appendOne(7, 100000)
	checkDead("Close", p.Close(ctx), big2, 2)

	p = openT(t, cfg)
	r, err = p.WaitDelivered(ctx, big)
	checkDead("WaitDelivered after a restart", err, big, 1)
	if r.Topic != "small" || r.Partition != 0 {
		t.Fatalf("result after a restart %+v", r)
	}
	if _, err := p.WaitDelivered(ctx, 1); err != nil {
		t.Fatalf("WaitDelivered(1) after a restart: %v", err)
	}
	closeT(t, p, 10*time.Second)
}

// While Kafka is unreachable WaitDelivered waits for its context; Close
// wakes it with ErrClosed (the record stays in the WAL).
func TestWaitDeliveredOutage(t *testing.T) {
	cfg := kafkawal.Config{Dir: t.TempDir(), Kafka: kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"}}
	p := openT(t, cfg)
	seq, err := p.Append(testCtx(t, time.Minute), kafkawal.Record{Topic: "t", Value: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := p.WaitDelivered(short, seq); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDelivered during an outage: %v, want the context's deadline", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.WaitDelivered(context.Background(), seq)
		done <- err
	}()
	closeCtx, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if err := p.Close(closeCtx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, kafkawal.ErrClosed) {
			t.Fatalf("WaitDelivered across Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitDelivered still waits 10s after Close")
	}
}
