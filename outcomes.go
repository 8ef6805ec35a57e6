package kafkawal

import (
	"container/heap"
	"sync"
	"sync/atomic"
)

// outcomes remembers what became of recent records and hands outcomes to
// the callers of WaitDelivered. Memory is bounded: a ring indexed by
// sequence, as long as the sender's window ring up to MaxInFlight
// (sender.Config.OnRing: it grows with the partitions produced to, so that
// a producer to a few partitions does not pay for the maximum), plus one
// entry per caller waiting. A caller waiting gets its record's outcome
// directly; a look-up after the fact finds it while no later record has
// taken its slot (one the window held at the same time, or one a ring's
// length later), else only that the record was resolved.
//
// The sender goroutine writes slots and grows the ring; callers read them
// without a lock, each slot guarded like a seqlock by its seq (0 while
// being written). A grown ring is published whole, after the slots it
// keeps are copied in; a reader still on the old one sees outcomes
// recorded before the growth, and a waiter is woken by record whichever
// ring it looked in.
type outcomes struct {
	ring atomic.Pointer[[]outcomeSlot]

	// Owned by the sender goroutine: topic names interned, so that a slot
	// holds a pointer without an allocation per record.
	topics    map[string]*outcomeInfo
	lastTopic *outcomeInfo

	// maxDead is the highest sequence dead-lettered since Open.
	maxDead atomic.Uint64

	waiting  atomic.Int64 // waiters registered
	mu       sync.Mutex
	bySeq    map[uint64][]*waiter
	queue    waiterHeap // by seq, for the watermark
	watching bool       // a watch goroutine runs
}

// outcomeSlot holds one outcome in as few words as possible: each store
// is an atomic exchange the sender pays per record.
type outcomeSlot struct {
	seq    atomic.Uint64 // 0 while being written
	meta   atomic.Uint64 // state << 32 | uint32(partition)
	offset atomic.Int64
	info   atomic.Pointer[outcomeInfo]
}

// outcomeInfo is a slot's topic (shared by every record of the topic) and,
// for a dead letter, the dead letter.
type outcomeInfo struct {
	topic string
	dl    *DeadLetter
}

const (
	outcomeDelivered uint32 = iota + 1
	outcomeDeadLettered
	outcomeLost
)

// waiter is one WaitDelivered call.
type waiter struct {
	seq   uint64
	ch    chan waitEvent // capacity 1: the first event is all a waiter needs
	index int            // in the heap; -1 once removed
}

// waitEvent wakes a waiter: the outcome itself, or news that the watermark
// passed its sequence (resolved) or that the producer stopped (closed).
type waitEvent struct {
	r        DeliveryResult
	has      bool
	resolved bool
	closed   bool
}

func newOutcomes(n int) *outcomes {
	o := &outcomes{
		topics: map[string]*outcomeInfo{},
		bySeq:  map[uint64][]*waiter{},
	}
	ring := make([]outcomeSlot, max(n, 1))
	o.ring.Store(&ring)
	return o
}

// grow makes the ring n slots long, keeping the outcomes it holds (where
// two fall on one slot of the new ring, the later); it never shrinks.
// Sender goroutine only.
func (o *outcomes) grow(n int) {
	old := *o.ring.Load()
	if n <= len(old) {
		return
	}
	ring := make([]outcomeSlot, n)
	for i := range old {
		from := &old[i]
		seq := from.seq.Load()
		if seq == 0 {
			continue
		}
		to := &ring[seq%uint64(n)]
		if to.seq.Load() > seq {
			continue
		}
		to.meta.Store(from.meta.Load())
		to.offset.Store(from.offset.Load())
		to.info.Store(from.info.Load())
		to.seq.Store(seq)
	}
	o.ring.Store(&ring)
}

// intern returns a shared outcomeInfo for topic. Sender goroutine only.
func (o *outcomes) intern(topic string) *outcomeInfo {
	if o.lastTopic != nil && o.lastTopic.topic == topic {
		return o.lastTopic
	}
	p, ok := o.topics[topic]
	if !ok {
		if len(o.topics) >= maxInternedTopics {
			clear(o.topics) // a producer to ever-new topics: keep the map bounded
		}
		p = &outcomeInfo{topic: topic}
		o.topics[topic] = p
	}
	o.lastTopic = p
	return p
}

// maxInternedTopics bounds the interned topic names.
const maxInternedTopics = 4096

// record stores seq's outcome and wakes its waiters. Sender goroutine only.
func (o *outcomes) record(seq uint64, state uint32, topic string, partition int32, offset int64, dl *DeadLetter) {
	info := o.intern(topic)
	if dl != nil {
		info = &outcomeInfo{topic: topic, dl: dl}
	}
	ring := *o.ring.Load()
	sl := &ring[seq%uint64(len(ring))]
	sl.seq.Store(0)
	sl.meta.Store(uint64(state)<<32 | uint64(uint32(partition)))
	sl.offset.Store(offset)
	sl.info.Store(info)
	sl.seq.Store(seq)
	if state == outcomeDeadLettered && seq > o.maxDead.Load() {
		o.maxDead.Store(seq)
	}
	if o.waiting.Load() == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if ws := o.bySeq[seq]; len(ws) > 0 {
		r := result(seq, state, topic, partition, offset, dl)
		for _, w := range ws {
			w.send(waitEvent{r: r, has: true})
		}
	}
}

// lookup returns seq's outcome if the ring still holds it.
func (o *outcomes) lookup(seq uint64) (DeliveryResult, bool) {
	ring := *o.ring.Load()
	sl := &ring[seq%uint64(len(ring))]
	if sl.seq.Load() != seq {
		return DeliveryResult{}, false
	}
	meta, off, info := sl.meta.Load(), sl.offset.Load(), sl.info.Load()
	if sl.seq.Load() != seq || info == nil {
		return DeliveryResult{}, false // rewritten meanwhile
	}
	return result(seq, uint32(meta>>32), info.topic, int32(uint32(meta)), off, info.dl), true
}

// register adds a waiter for seq; the caller must unregister it.
func (o *outcomes) register(seq uint64, watch func(*outcomes)) *waiter {
	w := &waiter{seq: seq, ch: make(chan waitEvent, 1)}
	o.mu.Lock()
	o.bySeq[seq] = append(o.bySeq[seq], w)
	heap.Push(&o.queue, w)
	o.waiting.Add(1)
	start := !o.watching
	o.watching = true
	o.mu.Unlock()
	if start {
		go watch(o)
	}
	return w
}

func (o *outcomes) unregister(w *waiter) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ws := o.bySeq[w.seq]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(o.bySeq, w.seq)
	} else {
		o.bySeq[w.seq] = ws
	}
	if w.index >= 0 {
		heap.Remove(&o.queue, w.index)
		o.waiting.Add(-1)
	}
}

// release wakes, and takes out of the queue, the waiters whose sequence is
// at or below acked (resolved), or all of them when closed. It reports
// whether any waiter is left.
func (o *outcomes) release(acked uint64, closed bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(o.queue) > 0 && (closed || o.queue[0].seq <= acked) {
		w := heap.Pop(&o.queue).(*waiter)
		o.waiting.Add(-1)
		w.send(waitEvent{resolved: !closed, closed: closed})
	}
	if len(o.queue) == 0 {
		o.watching = false
		return false
	}
	return true
}

func (w *waiter) send(ev waitEvent) {
	select {
	case w.ch <- ev:
	default: // it has an event already
	}
}

// waiterHeap orders waiters by sequence, lowest first.
type waiterHeap []*waiter

func (h waiterHeap) Len() int           { return len(h) }
func (h waiterHeap) Less(i, j int) bool { return h[i].seq < h[j].seq }
func (h waiterHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waiterHeap) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waiterHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.index = -1
	return w
}
