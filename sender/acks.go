package sender

// window tracks the main stream's records, from low (the lowest sequence
// it has not yet seen acknowledged) to next (the next sequence to
// produce). Delivery reports arrive out of order across partitions; the
// window turns them into the contiguous mark low-1. Records the main stream
// hands to a lane (lane.go) count as done here: the lane answers for them,
// and the watermark is the least of low-1 and what every lane holds. It is
// owned by the sender goroutine.
type window struct {
	low, next uint64
	hi        uint64 // highest next ever: sequences below it were produced before
	slots     []slot // ring indexed by seq % len(slots)
	bytes     int64  // encoded bytes of produced, unacknowledged records
	produced  int    // produced and not yet reported
}

type slot struct {
	state slotState
	size  int32
	ts    int64 // record timestamp, Unix nanos (for the oldest-unacknowledged age)
	p     *part // the partition it was produced to, if known
}

type slotState uint8

const (
	free     slotState = iota // not yet produced (or produced, then reported and to be re-sent)
	inFlight                  // handed to librdkafka, no report yet
	done                      // delivered or dead-lettered
)

func newWindow(start uint64, capacity int) *window {
	return &window{low: start, next: start, hi: start, slots: make([]slot, max(capacity, 1))}
}

// reserve grows the ring to hold at least n records; it never shrinks.
// The window's size adapts upwards with the partitions produced to, and a
// ring sized for the maximum at Open would cost every producer the
// maximum's memory. The slots that carry state, low to hi (delivered
// before a rewind, or in flight), move to their places in the new ring.
func (w *window) reserve(n int) {
	if n <= len(w.slots) {
		return
	}
	slots := make([]slot, n)
	for seq := w.low; seq < w.hi; seq++ {
		slots[seq%uint64(n)] = *w.at(seq)
	}
	w.slots = slots
}

func (w *window) at(seq uint64) *slot { return &w.slots[seq%uint64(len(w.slots))] }

// span is the number of sequences between low and next.
func (w *window) span() int { return int(w.next - w.low) }

// hasRoom reports whether one more record of size bytes may be produced.
func (w *window) hasRoom(maxRecords int, maxBytes int64) bool {
	return w.span() < len(w.slots) && w.span() < maxRecords && (w.bytes < maxBytes || w.produced == 0)
}

// full reports whether the ring has no slot for next.
func (w *window) full() bool { return w.span() >= len(w.slots) }

// add records that seq (== next) was produced, to p if known.
func (w *window) add(seq uint64, size int, ts int64) { w.addTo(seq, size, ts, nil) }

func (w *window) addTo(seq uint64, size int, ts int64, p *part) {
	*w.at(seq) = slot{state: inFlight, size: int32(size), ts: ts, p: p}
	w.bytes += int64(size)
	w.produced++
	w.next = seq + 1
	w.hi = max(w.hi, w.next)
}

// skip passes over sequence next without producing it: it was delivered
// before a rewind, or it is a hole. It counts as done.
func (w *window) skip() {
	s := w.at(w.next)
	if s.state != done && s.state != dead {
		*s = slot{state: done}
	}
	w.next++
	w.hi = max(w.hi, w.next)
	w.advance()
}

func (w *window) advance() {
	for w.low < w.next && w.at(w.low).state == done {
		*w.at(w.low) = slot{}
		w.low++
	}
}

// resolve marks seq reported. ok means delivered (or dead-lettered):
// it counts towards the watermark; otherwise the slot becomes free to be
// produced again. It returns false for a sequence outside the window or not
// in flight (a stale report).
func (w *window) resolve(seq uint64, ok bool) bool {
	if seq < w.low || seq >= w.next {
		return false
	}
	s := w.at(seq)
	if s.state != inFlight {
		return false
	}
	w.bytes -= int64(s.size)
	w.produced--
	if !ok {
		s.state = free
		return true
	}
	s.state = done
	w.advance()
	return true
}

// handOver gives seq, in flight, to a lane: it counts as done here. It
// returns the slot's size and timestamp, or false if seq is not in flight.
func (w *window) handOver(seq uint64) (size int32, ts int64, ok bool) {
	if seq < w.low || seq >= w.next {
		return 0, 0, false
	}
	s := w.at(seq)
	if s.state != inFlight {
		return 0, 0, false
	}
	size, ts = s.size, s.ts
	w.bytes -= int64(size)
	w.produced--
	s.state = done
	w.advance()
	return size, ts, true
}

// inFlight reports whether seq is a record of the window in flight.
func (w *window) inFlight(seq uint64) bool {
	return seq >= w.low && seq < w.next && w.at(seq).state == inFlight
}

// heldParts returns the partitions the window holds unacknowledged
// records of (in flight or to be produced again), where it knows them.
func (w *window) heldParts() map[*part]bool {
	held := make(map[*part]bool)
	for seq := w.low; seq < w.next; seq++ {
		if sl := w.at(seq); sl.p != nil && (sl.state == inFlight || sl.state == free) {
			held[sl.p] = true
		}
	}
	return held
}

// lowPart returns the partition of the record at low when it is in
// flight there: the one holding the ring.
func (w *window) lowPart() *part {
	if w.low < w.next {
		if s := w.at(w.low); s.state == inFlight {
			return s.p
		}
	}
	return nil
}

// rewind moves next back to low so that every unacknowledged sequence is
// produced again, in order. It must only run with nothing in flight.
func (w *window) rewind() (resend int) {
	resend = w.span()
	w.next = w.low
	return resend
}

// nextDone reports whether next was already delivered before a rewind; such
// records are skipped, not sent again.
func (w *window) nextDone() bool {
	st := w.at(w.next).state
	return w.next < w.hi && (st == done || st == dead)
}

// oldest returns the timestamp of the oldest unacknowledged record in the
// window (the one at low: records are stamped in sequence order), 0 if none.
func (w *window) oldest() int64 {
	if w.low < w.next {
		return w.at(w.low).ts
	}
	return 0
}
