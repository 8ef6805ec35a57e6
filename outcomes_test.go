package kafkawal

import (
	"errors"
	"testing"
)

// The ring keeps the last len(slots) outcomes by sequence: a slot is
// reused by seq+n, and a lookup never returns another record's outcome.
func TestOutcomeRing(t *testing.T) {
	o := newOutcomes(4)
	o.record(1, outcomeDelivered, "orders", 2, 100, nil)
	dl := &DeadLetter{Seq: 2, Err: "Broker: Message size too large", Code: 10, SentToPartition: 1}
	o.record(2, outcomeDeadLettered, "orders", 1, -1, dl)
	o.record(3, outcomeLost, "", -1, -1, nil)

	if r, ok := o.lookup(1); !ok || r.Topic != "orders" || r.Partition != 2 || r.Offset != 100 || r.Err != nil {
		t.Fatalf("seq 1: %+v %v", r, ok)
	}
	r, ok := o.lookup(2)
	var dle *DeadLetterError
	if !ok || !errors.As(r.Err, &dle) || !errors.Is(r.Err, ErrDeadLettered) || dle.First.Code != 10 || r.Offset != -1 || r.Partition != 1 {
		t.Fatalf("seq 2: %+v %v", r, ok)
	}
	if r, ok := o.lookup(3); !ok || !errors.Is(r.Err, ErrCorrupt) {
		t.Fatalf("seq 3: %+v %v", r, ok)
	}
	if _, ok := o.lookup(4); ok {
		t.Fatal("seq 4 has no outcome yet")
	}
	o.record(5, outcomeDelivered, "orders", 0, 7, nil) // slot of seq 1
	if _, ok := o.lookup(1); ok {
		t.Fatal("seq 1 still found after seq 5 took its slot")
	}
	if r, ok := o.lookup(5); !ok || r.Offset != 7 {
		t.Fatalf("seq 5: %+v %v", r, ok)
	}
	if o.maxDead.Load() != 2 {
		t.Fatalf("maxDead %d, want 2", o.maxDead.Load())
	}
}

// A ring that grows keeps every outcome it held (where two fall on one
// slot of the new ring, the later), never shrinks, and lookups from other
// goroutines see either ring whole while it grows (run with -race).
func TestOutcomeRingGrows(t *testing.T) {
	o := newOutcomes(4)
	for seq := uint64(1); seq <= 4; seq++ {
		o.record(seq, outcomeDelivered, "orders", 0, int64(seq*10), nil)
	}
	o.grow(2) // never shrinks
	if n := len(*o.ring.Load()); n != 4 {
		t.Fatalf("ring of %d slots after grow(2); want 4", n)
	}
	o.grow(8)
	if n := len(*o.ring.Load()); n != 8 {
		t.Fatalf("ring of %d slots after grow(8); want 8", n)
	}
	for seq := uint64(1); seq <= 4; seq++ {
		if r, ok := o.lookup(seq); !ok || r.Offset != int64(seq*10) {
			t.Fatalf("seq %d after growing: %+v %v", seq, r, ok)
		}
	}
	// Seqs 5..8 now have slots of their own: seq 1 stays.
	for seq := uint64(5); seq <= 8; seq++ {
		o.record(seq, outcomeDelivered, "orders", 0, int64(seq*10), nil)
	}
	if r, ok := o.lookup(1); !ok || r.Offset != 10 {
		t.Fatalf("seq 1 lost to seq 5 in a ring of 8: %+v %v", r, ok)
	}
	// 9 and 3, in two slots of a ring of 4, fall on one slot of a ring of
	// 6: the later stays.
	p := newOutcomes(4)
	p.record(9, outcomeDelivered, "orders", 0, 90, nil)
	p.record(3, outcomeDelivered, "orders", 0, 30, nil)
	p.grow(6)
	if r, ok := p.lookup(9); !ok || r.Offset != 90 {
		t.Fatalf("seq 9 lost when the ring grew: %+v %v", r, ok)
	}
	if _, ok := p.lookup(3); ok {
		t.Fatal("seq 3 found in the slot seq 9 took")
	}

	q := newOutcomes(16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seq := uint64(1); seq <= 20000; seq++ {
			q.record(seq, outcomeDelivered, "orders", 0, int64(seq), nil)
			if seq%1000 == 0 {
				q.grow(int(seq / 10))
			}
		}
	}()
	for {
		select {
		case <-done:
			if r, ok := q.lookup(20000); !ok || r.Offset != 20000 {
				t.Fatalf("seq 20000 after growing: %+v %v", r, ok)
			}
			return
		default:
		}
		for seq := uint64(1); seq <= 20000; seq += 997 {
			if r, ok := q.lookup(seq); ok && r.Offset != int64(seq) {
				t.Fatalf("lookup(%d) returned another record's outcome: %+v", seq, r)
			}
		}
	}
}

// Waiters cost memory only while they wait: an outcome, the watermark or
// a cancellation takes each one out again.
func TestOutcomeWaiters(t *testing.T) {
	o := newOutcomes(8)
	started := make(chan struct{}, 10)
	watch := func(*outcomes) { started <- struct{}{} }
	a := o.register(10, watch)
	b := o.register(10, watch)
	c := o.register(12, watch)
	d := o.register(20, watch)
	<-started
	if len(started) != 0 {
		t.Fatal("a second watch goroutine started")
	}
	o.record(10, outcomeDelivered, "t", 0, 5, nil)
	for _, w := range []*waiter{a, b} {
		if ev := <-w.ch; !ev.has || ev.r.Offset != 5 {
			t.Fatalf("waiter of 10 got %+v", ev)
		}
	}
	if !o.release(12, false) {
		t.Fatal("release reports nobody left, but seq 20 waits")
	}
	if ev := <-c.ch; !ev.resolved {
		t.Fatalf("waiter of 12 got %+v, want resolved", ev)
	}
	if o.release(100, true) {
		t.Fatal("waiters left after a closing release")
	}
	if ev := <-d.ch; !ev.closed {
		t.Fatalf("waiter of 20 got %+v, want closed", ev)
	}
	for _, w := range []*waiter{a, b, c, d} {
		o.unregister(w)
	}
	if len(o.bySeq) != 0 || len(o.queue) != 0 || o.waiting.Load() != 0 || o.watching {
		t.Fatalf("after every waiter left: %d seqs, %d queued, %d waiting, watching %v", len(o.bySeq), len(o.queue), o.waiting.Load(), o.watching)
	}
	// A cancelled waiter leaves at once, from the middle of the queue too.
	ws := []*waiter{o.register(3, watch), o.register(1, watch), o.register(2, watch)}
	o.unregister(ws[2])
	o.unregister(ws[0])
	o.unregister(ws[1])
	if len(o.bySeq) != 0 || len(o.queue) != 0 || o.waiting.Load() != 0 {
		t.Fatalf("after cancellations: %d seqs, %d queued, %d waiting", len(o.bySeq), len(o.queue), o.waiting.Load())
	}
}

// BenchmarkOutcomeRecord is the cost the ring adds to each delivery report
// on the sender goroutine, with nobody waiting.
func BenchmarkOutcomeRecord(b *testing.B) {
	o := newOutcomes(32768)
	seq := uint64(0)
	for b.Loop() {
		seq++
		o.record(seq, outcomeDelivered, "orders", int32(seq%3), int64(seq), nil)
	}
}
