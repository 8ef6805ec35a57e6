package wal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Asynchronous appends (AppendAsync).
//
// A call encodes its record straight into a ring buffer and joins the open
// request: the calls made since the writer last took work. The writer takes
// every request waiting at once (its wake-ups coalesce), writes them with
// the rest of its group and answers each request once; one completion
// goroutine then runs the callbacks of each request in the order of the
// calls, and frees its part of the rings. A call thus costs an encode and
// a few uncontended lock operations, not a hand-off to the writer and a
// wake-up of its caller, and allocates nothing.
//
// The requests form one list, oldest first, with two positions in it: the
// writer's (the oldest request not yet taken) and the completion
// goroutine's (the oldest whose callbacks have not run). A request is open
// (more calls join it) until the writer takes it; the completion goroutine
// waits only for sealed ones.
//
// Every call, failed or not, is a slot of a request, so its callback runs
// in turn. The rings are the bound: AsyncQueue slots and AsyncQueueBytes of
// records, allocated on the first call and freed in order as callbacks
// return, so memory is fixed whatever the callbacks and the disk do. A call
// that waited for room until its context ended cannot take a slot; it
// joins the list as a request of its own holding only its callback.

// asyncSlot is one AppendAsync call: its callback, and the error that kept
// its record out of the log (nil: its record is the request's next entry).
type asyncSlot struct {
	durable func(seq uint64, err error)
	err     error
	start   int64 // time of the call, Unix nanos (0: unknown), for Options.ObserveAsyncAppend
}

// asyncReq is what an appendReq carries for asynchronous calls.
type asyncReq struct {
	slots  []asyncSlot // a view of the slot ring, or owned (overflow)
	next   *appendReq
	sealed bool
	// ends of the request in the rings: freed up to them when its
	// callbacks have run (overflow requests hold nothing)
	ring           bool
	slotEnd        uint64
	entEnd, bufEnd uint64
	barrier        chan struct{} // closed after its callbacks (AsyncBarrier)
}

// asyncQueue holds the asynchronous requests. mu guards every field but
// the channels; positions in the rings count up forever (index: modulo the
// ring's length) and go back to 0 whenever the queue is empty.
type asyncQueue struct {
	mu        sync.Mutex
	head      *appendReq // oldest request whose callbacks have not all run
	tail      *appendReq // newest request; open unless sealed
	unwritten *appendReq // oldest request the writer has not taken
	notified  bool       // ready holds a wake-up the writer has not taken
	closed    bool       // StopAppends began: no call joins any more
	waiting   int        // callers blocked for room (tests watch it)
	free      []*appendReq

	maxCount int
	maxBytes int64
	slots    []asyncSlot // ring of maxCount
	ents     [][]byte    // ring of maxCount: encoded records (views of buf)
	framed   []int64     // ring of maxCount, beside ents
	buf      []byte      // ring of maxBytes

	shead, stail uint64 // slots in use
	ehead, etail uint64 // entries in use
	bhead, btail uint64 // bytes in use

	room   chan struct{} // a token: room may have freed; a waiter that takes it and finds room passes it on
	ready  chan struct{} // wakes the writer: requests wait to be taken
	sealed chan struct{} // wakes the completion goroutine
	done   chan struct{} // closed when the completion goroutine has run every callback
}

func (q *asyncQueue) init(maxCount int, maxBytes int64) {
	q.maxCount, q.maxBytes = maxCount, maxBytes
	q.room = make(chan struct{}, 1)
	q.ready = make(chan struct{}, 1)
	q.sealed = make(chan struct{}, 1)
	q.done = make(chan struct{})
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// AppendAsync queues rec and returns; durable is called exactly once, on
// the log's completion goroutine, with rec's sequence once it is durable
// under the Sync mode, or with the error that kept it out of the log
// (nothing written). Calls made one after another get increasing
// sequences and their callbacks in the same order. While AsyncQueue calls
// (or AsyncQueueBytes of records) wait for their callbacks to return, it
// blocks until there is room or ctx ends (durable then gets ctx's error);
// under FullPolicy Block it also waits while the log is full. Once the log
// is closing, durable gets ErrClosed on the caller's goroutine, after
// every earlier callback. now is stored as the timestamp of a record
// without one (the zero now leaves it unset). durable must not block, nor
// call the log: it holds up every callback after it, and an AppendAsync
// from it may wait for room that only its return frees.
func (l *Log) AppendAsync(ctx context.Context, rec *Record, now time.Time, durable func(seq uint64, err error)) {
	q := &l.async
	n, err := l.check(0, rec)
	var framed int64
	if err == nil {
		framed = FramedLen(n)
		if err = l.disk.reserve(ctx, framed, l.opts.FullPolicy, l.done, l.askTruncate); err != nil {
			framed = 0
		}
	}
	if errors.Is(err, ErrClosed) {
		l.answerClosed(durable)
		return
	}
	var unset int64
	if err == nil && !now.IsZero() {
		unset = now.UnixNano()
	}
	q.mu.Lock()
	waited := false
	for {
		if q.closed {
			if waited {
				q.waiting--
			}
			q.mu.Unlock()
			signal(q.room) // the next waiter finds it closed too
			l.disk.release(framed)
			l.answerClosed(durable)
			return
		}
		if q.buf == nil {
			q.alloc()
		}
		if q.add(rec, n, framed, unset, durable, err) {
			if waited {
				q.waiting--
				if q.stail-q.shead < uint64(q.maxCount) {
					signal(q.room) // another waiter may fit too
				}
			}
			break
		}
		if !waited {
			q.waiting++
			waited = true
		}
		q.mu.Unlock()
		select {
		case <-q.room:
			q.mu.Lock()
			continue
		case <-ctx.Done():
		}
		q.mu.Lock()
		q.waiting--
		waited = false
		if q.closed {
			continue
		}
		l.disk.release(framed)
		if err == nil {
			err = fmt.Errorf("kafkawal: AppendAsync: queue full (%d records, %d bytes; AsyncQueue %d, AsyncQueueBytes %d) until the context ended: %w",
				q.stail-q.shead, q.btail-q.bhead, q.maxCount, q.maxBytes, context.Cause(ctx))
		}
		q.overflow(durable, err)
		break
	}
	wake := !q.notified
	q.notified = true
	q.mu.Unlock()
	if wake {
		signal(q.ready)
	}
}

// alloc makes the rings, on the first call.
func (q *asyncQueue) alloc() {
	q.slots = make([]asyncSlot, q.maxCount)
	q.ents = make([][]byte, q.maxCount)
	q.framed = make([]int64, q.maxCount)
	q.buf = make([]byte, q.maxBytes)
}

// add puts one call into the open request, opening one if needed, and
// reports false if the rings have no room for it. With err set the call
// has no record (n and framed are ignored).
func (q *asyncQueue) add(rec *Record, n int, framed int64, unset int64, durable func(uint64, error), err error) bool {
	size := uint64(q.maxCount)
	if q.stail-q.shead >= size {
		return false
	}
	var bpos uint64
	if err == nil {
		if q.etail-q.ehead >= size {
			return false
		}
		bsize := uint64(len(q.buf))
		bpos = q.btail
		if off := bpos % bsize; off+uint64(n) > bsize {
			bpos += bsize - off // a record is contiguous: skip the ring's end
		}
		if bpos+uint64(n)-q.bhead > bsize {
			return false
		}
	}
	r := q.tail
	// A request's slots and entries are contiguous in their rings: a
	// request reaching a ring's end is sealed and the next one starts at
	// its beginning.
	if r == nil || r.sealed || !r.ring || q.stail%size == 0 || (err == nil && q.etail%size == 0 && len(r.entries) > 0) {
		r = q.open()
	}
	si := q.stail % size
	q.slots[si] = asyncSlot{durable: durable, err: err, start: unset}
	q.stail++
	r.slots = q.slots[si-uint64(len(r.slots)) : si+1]
	r.slotEnd = q.stail
	if err == nil {
		ei := q.etail % size
		b := uint64(len(q.buf))
		p := bpos % b
		q.ents[ei] = appendEncode(q.buf[p:p:p+uint64(n)], rec, unset)
		q.framed[ei] = framed
		q.etail++
		q.btail = bpos + uint64(n)
		k := uint64(len(r.entries))
		r.entries = q.ents[ei-k : ei+1]
		r.framed = q.framed[ei-k : ei+1]
		r.bytes += framed
		r.entEnd, r.bufEnd = q.etail, q.btail
	}
	return true
}

// open appends a new request to the list, sealing the one before.
func (q *asyncQueue) open() *appendReq {
	r := q.newReq()
	r.ring = true
	r.buf = q.buf // the entries are slices of it
	r.entEnd, r.bufEnd = q.etail, q.btail
	q.link(r)
	return r
}

// overflow appends a request of its own for a call that found no room
// before its context ended.
func (q *asyncQueue) overflow(durable func(uint64, error), err error) {
	r := q.newReq()
	r.slots = append(r.slots, asyncSlot{durable: durable, err: err})
	q.link(r)
}

func (q *asyncQueue) newReq() *appendReq {
	var r *appendReq
	if k := len(q.free); k > 0 {
		r, q.free = q.free[k-1], q.free[:k-1]
	} else {
		r = &appendReq{done: make(chan struct{}, 1)}
	}
	return r
}

func (q *asyncQueue) link(r *appendReq) {
	if t := q.tail; t != nil {
		if !t.sealed {
			t.sealed = true
			signal(q.sealed)
		}
		t.next = r
	} else {
		q.head = r
	}
	q.tail = r
	if q.unwritten == nil {
		q.unwritten = r
	}
}

// answerClosed answers a call made once the log is closing: after every
// callback of the calls before it, on the caller's goroutine, since the
// completion goroutine has stopped.
func (l *Log) answerClosed(durable func(uint64, error)) {
	<-l.async.done
	if durable != nil {
		durable(0, ErrClosed)
	}
}

// takeAsync seals every request the writer has not taken and appends the
// ones with records to batch; a request without (all its calls failed) is
// answered at once.
func (l *Log) takeAsync(batch []*appendReq) []*appendReq {
	q := &l.async
	q.mu.Lock()
	took := q.unwritten != nil
	for r := q.unwritten; r != nil; r = r.next {
		r.sealed = true
		if len(r.entries) == 0 {
			r.done <- struct{}{}
			continue
		}
		batch = append(batch, r)
	}
	q.unwritten = nil
	q.notified = false
	q.mu.Unlock()
	if took {
		signal(q.sealed)
	}
	return batch
}

// closeAsync lets no call join any more (StopAppends, before the writer's
// last round).
func (l *Log) closeAsync() {
	q := &l.async
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.sealed)
	signal(q.room)
}

// complete is the completion goroutine: it runs the callbacks of each
// sealed request, oldest first, once the writer has answered it, and ends
// once the log is closing and every callback has run.
func (l *Log) complete() {
	q := &l.async
	defer close(q.done)
	for {
		q.mu.Lock()
		r := q.head
		for r == nil || !r.sealed {
			if r == nil && q.closed {
				q.mu.Unlock()
				return
			}
			q.mu.Unlock()
			<-q.sealed
			q.mu.Lock()
			r = q.head
		}
		q.mu.Unlock()
		<-r.done
		now := time.Now().UnixNano()
		seq, ok := r.first, uint64(0)
		for i := range r.slots {
			s := &r.slots[i]
			err := s.err
			if err == nil {
				if err = r.err; err == nil {
					ok++
					if s.start != 0 {
						l.opts.ObserveAsyncAppend(time.Duration(now - s.start))
					}
					if s.durable != nil {
						s.durable(seq, nil)
					}
					seq++
					continue
				}
			}
			if s.durable != nil {
				s.durable(0, err)
			}
		}
		l.appendedOK.Add(ok)
		q.mu.Lock()
		clear(r.slots) // drop the callbacks
		if r.ring {
			q.shead, q.ehead, q.bhead = r.slotEnd, r.entEnd, r.bufEnd
		}
		q.head = r.next
		if q.head == nil {
			q.tail = nil
			q.shead, q.stail, q.ehead, q.etail, q.bhead, q.btail = 0, 0, 0, 0, 0, 0
		}
		barrier := r.barrier
		owned := r.slots[:0] // an overflow request's own slice, kept for reuse
		if r.ring {
			owned = nil
		}
		r.asyncReq = asyncReq{slots: owned}
		r.buf, r.entries, r.framed, r.bytes, r.first, r.err = nil, nil, nil, 0, 0, nil
		q.free = append(q.free, r)
		q.mu.Unlock()
		signal(q.room)
		if barrier != nil {
			close(barrier)
		}
	}
}

// AsyncBarrier waits until the callbacks of every AppendAsync call that
// returned before it have run, or ctx ends.
func (l *Log) AsyncBarrier(ctx context.Context) error {
	q := &l.async
	q.mu.Lock()
	r := q.tail
	if r == nil {
		q.mu.Unlock()
		return nil
	}
	if r.barrier == nil {
		r.barrier = make(chan struct{})
	}
	ch := r.barrier
	q.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// asyncWaiting reports how many AppendAsync calls wait for room.
func (l *Log) asyncWaiting() int {
	l.async.mu.Lock()
	defer l.async.mu.Unlock()
	return l.async.waiting
}

// check validates one record (i is its index in the call) and returns its
// encoded length.
func (l *Log) check(i int, r *Record) (int, error) {
	if r.Topic == "" {
		return 0, fmt.Errorf("%w: record %d: empty topic", ErrInvalidRecord, i)
	}
	if r.Partition < PartitionAny {
		return 0, fmt.Errorf("%w: record %d: partition %d (use PartitionAny, -1, to let the partitioner choose)", ErrInvalidRecord, i, r.Partition)
	}
	n := EncodedLen(r)
	if n > l.opts.MaxRecordBytes {
		return 0, fmt.Errorf("%w: record %d encodes to %d bytes, limit MaxRecordBytes %d", ErrTooLarge, i, n, l.opts.MaxRecordBytes)
	}
	return n, nil
}
