package sender

import (
	"math/rand"
	"testing"
	"time"

	"github.com/rs/zerolog"
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

// TestWindowReserve: growing the ring keeps every slot that carries
// state (in flight, delivered before a rewind) at its sequence, and the
// window then takes records up to the new size.
func TestWindowReserve(t *testing.T) {
	w := newWindow(3, 4) // sequences 3..6 fill a ring of 4, wrapping
	for range 4 {
		w.add(w.next, 10, int64(w.next))
	}
	if w.hasRoom(100, 1<<20) {
		t.Fatal("room beyond the ring before reserve")
	}
	w.resolve(4, true) // delivered out of order: low stays at 3
	w.resolve(5, false)
	w.reserve(2) // never shrinks
	if len(w.slots) != 4 {
		t.Fatalf("ring shrank to %d", len(w.slots))
	}
	w.reserve(16)
	if len(w.slots) != 16 {
		t.Fatalf("ring %d, want 16", len(w.slots))
	}
	want := map[uint64]slotState{3: inFlight, 4: done, 5: free, 6: inFlight}
	for seq, st := range want {
		if got := w.at(seq); got.state != st || (st == inFlight && got.ts != int64(seq)) {
			t.Errorf("seq %d: state %d ts %d after reserve, want state %d ts %d", seq, got.state, got.ts, st, seq)
		}
	}
	if w.low != 3 || w.next != 7 || w.produced != 2 || w.bytes != 20 { // 5 was given back
		t.Fatalf("low %d next %d produced %d bytes %d", w.low, w.next, w.produced, w.bytes)
	}
	for range 12 {
		if !w.hasRoom(100, 1<<20) {
			t.Fatalf("no room at next %d after reserve", w.next)
		}
		w.add(w.next, 10, 0)
	}
	if w.hasRoom(100, 1<<20) {
		t.Fatal("room beyond the grown ring")
	}
	w.resolve(3, true)
	if w.low != 5 {
		t.Fatalf("low %d after 3 and 4 delivered, want 5", w.low)
	}
	// A rewind after the growth re-sends from 5 (given back) and skips
	// what was delivered after it.
	w.resolve(6, true)
	for seq := uint64(7); seq < 19; seq++ {
		w.resolve(seq, true)
	}
	if w.low != 5 || w.rewind() != 14 || w.next != 5 {
		t.Fatalf("rewind: low %d next %d", w.low, w.next)
	}
	if w.nextDone() {
		t.Fatal("5 was given back, not delivered: it must be sent again")
	}
	w.next = 6
	if !w.nextDone() {
		t.Fatal("6 was delivered before the rewind: it must be skipped")
	}
}

// TestLaneAcksOldestFirst: a lane acknowledged oldest first drops each
// record from the front without moving the ones behind it (a copy per
// acknowledgement made a busy lane's deliveries quadratic), keeps what it
// owns in order and its counters right, and its array stays bounded by a
// small multiple of what it owns however many records pass through.
func TestLaneAcksOldestFirst(t *testing.T) {
	const held = 1000
	l := &lane{}
	next := uint64(1)
	for range held {
		l.own(owned{seq: next, size: 10, state: inFlight})
		next++
	}
	for seq := uint64(1); seq <= 50*held; seq++ {
		second := &l.owned[1]
		if _, ok := l.resolve(seq, true); !ok {
			t.Fatalf("resolve %d: not owned in flight", seq)
		}
		if &l.owned[0] != second {
			t.Fatalf("after acknowledging %d the records behind it moved", seq)
		}
		if l.owned[0].seq != seq+1 || l.need() != seq+1 {
			t.Fatalf("after acknowledging %d: front %d, need %d", seq, l.owned[0].seq, l.need())
		}
		l.own(owned{seq: next, size: 10, state: inFlight})
		next++
		if len(l.owned) != held || l.flightN != held || l.flightB != 10*held {
			t.Fatalf("after acknowledging %d: %d owned, %d (%d bytes) in flight; want %d", seq, len(l.owned), l.flightN, l.flightB, held)
		}
		if c := cap(l.owned); c > 4*held {
			t.Fatalf("owned's array grew to %d for %d records", c, held)
		}
	}
	// Out of order: the front stays until it is acknowledged.
	front := l.owned[0].seq
	if _, ok := l.resolve(front+1, true); !ok || l.owned[0].seq != front || l.need() != front {
		t.Fatalf("acknowledging %d before %d dropped the front: need %d", front+1, front, l.need())
	}
	if _, ok := l.resolve(front, true); !ok || l.owned[0].seq != front+2 {
		t.Fatalf("acknowledging %d then %d: front %d, want %d", front+1, front, l.owned[0].seq, front+2)
	}
}

// TestDeferPartTakesOverFlights: a partition handed to a lane brings the
// lane every record of it in flight, from the window and from the
// topic's keyless lane, in whatever order they were produced: the lane
// owns them in sequence order with its counters right, the keyless lane
// and the window give them up, and each flight names its new owner.
func TestDeferPartTakesOverFlights(t *testing.T) {
	const n = 3000
	s := &Sender{rt: newRouter(consistent, 0), win: newWindow(1, 2*n), mode: normal, positional: true}
	tr := s.rt.topic("t")
	tr.count = 4
	p := tr.part(0)
	k := s.keylessLane(tr)
	// Odd sequences are the keyless lane's (the window passes over them),
	// even ones the window's; the window's are produced first, so the
	// partition's flights are out of sequence order.
	for seq := uint64(1); seq <= n; seq++ {
		if seq%2 == 1 {
			s.win.skip()
			continue
		}
		s.win.addTo(seq, 10, int64(seq), p)
		s.pushFlight(p, flight{seq: seq, size: 10})
	}
	for seq := uint64(1); seq <= n; seq += 2 {
		k.own(owned{seq: seq, ts: int64(seq), size: 7, state: inFlight})
		s.laneFlightN++
		s.laneFlightB += 7
		s.pushFlight(p, flight{seq: seq, size: 7, lane: k})
	}
	// One record of the keyless lane not in flight stays with it.
	k.own(owned{seq: n + 1, size: 7, state: free})

	l := s.deferPart(p)
	if l == nil || l == k || p.lane != l {
		t.Fatalf("deferPart returned %p (keyless %p, partition's %p)", l, k, p.lane)
	}
	if len(l.owned) != n || l.flightN != n || l.flightB != n/2*10+n/2*7 {
		t.Fatalf("the lane owns %d records, %d (%d bytes) in flight; want %d, %d bytes", len(l.owned), l.flightN, l.flightB, n, n/2*10+n/2*7)
	}
	for i, o := range l.owned {
		if o.seq != uint64(i+1) || o.state != inFlight || o.ts != int64(o.seq) {
			t.Fatalf("owned[%d] = %+v; want seq %d in flight, ts %d", i, o, i+1, i+1)
		}
	}
	if len(k.owned) != 1 || k.owned[0].seq != n+1 || k.owned[0].state != free || k.flightN != 0 || k.flightB != 0 {
		t.Fatalf("keyless lane kept %+v, %d (%d bytes) in flight; want only record %d, free", k.owned, k.flightN, k.flightB, n+1)
	}
	if s.win.produced != 0 || s.win.bytes != 0 || s.win.low != n+1 {
		t.Fatalf("window: %d produced (%d bytes), low %d; want none, low %d", s.win.produced, s.win.bytes, s.win.low, n+1)
	}
	if s.laneFlightN != n || s.laneFlightB != int64(n/2*10+n/2*7) {
		t.Fatalf("lanes in flight %d (%d bytes); want %d", s.laneFlightN, s.laneFlightB, n)
	}
	for i := 0; i < p.q.n; i++ {
		if f := p.q.at(i); f.lane != l {
			t.Fatalf("flight %d (seq %d) owned by %p, want the partition's lane %p", i, f.seq, f.lane, l)
		}
	}
}

// TestStalledCountFollowsTheMarks: the count that lets an exactly-once
// commit skip its walk over every partition (txnStalledInFlight) rises
// when checkStalls marks a partition and falls when it recovers, and the
// walk still finds a stalled partition's records in flight.
func TestStalledCountFollowsTheMarks(t *testing.T) {
	c := Config{MaxInFlight: 1000, MaxInFlightBytes: 1 << 20}.withDefaults()
	lg := zerolog.Nop()
	s := &Sender{cfg: c, rt: newRouter(consistent, 0), win: newWindow(1, c.initialRing()), mode: normal, lg: &lg,
		tx: &txnState{probes: map[*part]*probe{}}}
	tr := s.rt.topic("t")
	tr.count = 100
	old := time.Now().Add(-c.PartitionStallTimeout - time.Second).UnixNano()
	for q := range int32(100) {
		p := tr.part(q)
		at := time.Now().UnixNano()
		if q == 42 {
			at = old // waited past PartitionStallTimeout, nothing delivered since
		}
		seq := uint64(q) + 1
		s.win.addTo(seq, 10, at, p)
		s.pushFlight(p, flight{seq: seq, size: 10, at: at})
		p.acked = at
	}
	if s.txnStalledInFlight(time.Now()) {
		t.Fatal("before checkStalls: a stalled partition reported, none is marked")
	}
	s.checkStalls()
	p := tr.part(42)
	if !p.stalled || s.stalledN != 1 {
		t.Fatalf("after checkStalls: partition 42 stalled %v, count %d; want true, 1", p.stalled, s.stalledN)
	}
	if !s.txnStalledInFlight(time.Now()) {
		t.Fatal("a stalled partition with records in flight not found")
	}
	s.checkStalls()
	if s.stalledN != 1 {
		t.Fatalf("a second checkStalls: count %d; want 1 (already marked)", s.stalledN)
	}
	s.recovered(p)
	if p.stalled || s.stalledN != 0 {
		t.Fatalf("after recovered: stalled %v, count %d; want false, 0", p.stalled, s.stalledN)
	}
	if s.txnStalledInFlight(time.Now()) {
		t.Fatal("after recovered: a stalled partition reported")
	}
}
