package sender

import (
	"math/rand"
	"testing"
)

func TestWindowWatermarkOutOfOrder(t *testing.T) {
	w := newWindow(10, 100)
	for s := uint64(10); s < 20; s++ {
		w.add(s, 100, 0)
	}
	if w.bytes != 1000 || w.produced != 10 {
		t.Fatalf("bytes %d produced %d", w.bytes, w.produced)
	}
	// Acks in random order: low only moves over a contiguous prefix.
	order := rand.New(rand.NewSource(1)).Perm(10)
	acked := map[uint64]bool{}
	for _, i := range order {
		seq := uint64(10 + i)
		if !w.resolve(seq, true) {
			t.Fatalf("resolve(%d) refused", seq)
		}
		acked[seq] = true
		want := uint64(10)
		for acked[want] {
			want++
		}
		if w.low != want {
			t.Fatalf("after acking %d: low %d, want %d", seq, w.low, want)
		}
	}
	if w.resolve(12, true) {
		t.Fatal("a second report for the same sequence was accepted")
	}
	if w.bytes != 0 || w.produced != 0 {
		t.Fatalf("bytes %d produced %d after all acks", w.bytes, w.produced)
	}
}

func TestWindowRewindSkipsDelivered(t *testing.T) {
	w := newWindow(1, 100)
	for s := uint64(1); s <= 5; s++ {
		w.add(s, 10, int64(s))
	}
	w.resolve(2, false) // transient failure
	w.resolve(3, true)  // delivered out of order
	w.resolve(1, false)
	w.resolve(4, false)
	w.resolve(5, true)
	if w.produced != 0 || w.low != 1 {
		t.Fatalf("produced %d low %d", w.produced, w.low)
	}
	if n := w.rewind(); n != 5 || w.next != 1 {
		t.Fatalf("rewind span %d next %d", n, w.next)
	}
	var sent []uint64
	for w.next < 7 {
		if w.nextDone() {
			w.skip()
			continue
		}
		sent = append(sent, w.next)
		w.add(w.next, 10, 0)
	}
	want := []uint64{1, 2, 4, 6}
	if len(sent) != len(want) {
		t.Fatalf("re-sent %v, want %v", sent, want)
	}
	for i := range want {
		if sent[i] != want[i] {
			t.Fatalf("re-sent %v, want %v", sent, want)
		}
	}
	for _, s := range []uint64{1, 2, 4, 6} {
		w.resolve(s, true)
	}
	if w.low != 7 {
		t.Fatalf("low %d, want 7", w.low)
	}
}

func TestWindowBounds(t *testing.T) {
	w := newWindow(1, 4)
	for i := 0; i < 4; i++ {
		if !w.hasRoom(10, 1<<20) {
			t.Fatalf("no room at %d", i)
		}
		w.add(w.next, 1, 0)
	}
	if w.hasRoom(10, 1<<20) {
		t.Fatal("room beyond the ring")
	}
	w2 := newWindow(1, 100)
	w2.add(1, 1000, 0)
	if w2.hasRoom(100, 1000) {
		t.Fatal("room beyond MaxInFlightBytes")
	}
	// A single record larger than the byte bound is still sent alone.
	w3 := newWindow(1, 100)
	if !w3.hasRoom(100, 10) {
		t.Fatal("an empty window must take one record")
	}
}
