package sender

import "time"

// Under exactly-once delivery a delivery report does not make a record
// acknowledged: only the commit of its transaction does. Two more slot
// states hold records between the two, so that the watermark (and with it
// the cursor, which decides what the WAL may delete) never passes what
// Kafka committed:
//
//	inFlight --success report--> sent --commit--> done
//	                                  --abort---> free (produced again)
//	record refused for good --dead-lettered--> dead --commit--> done
//	                                                --abort---> dead (kept)
//
// A dead-lettered record stays dead through an abort: it is in the
// dead-letter log for good, and the next transaction's checkpoint covers it.
const (
	sent slotState = done + 1 + iota // delivered in the open transaction
	dead                             // dead-lettered, not yet covered by a commit
)

// markSent records a success report of seq in the open transaction. It
// returns false for a report that is stale (seq not in flight).
func (w *window) markSent(seq uint64) bool { return w.settle(seq, sent) }

// markDead records that the in-flight record seq was dead-lettered.
func (w *window) markDead(seq uint64) bool { return w.settle(seq, dead) }

// settle moves the in-flight record seq out of flight, into state. It
// returns false for a sequence outside the window or not in flight.
func (w *window) settle(seq uint64, state slotState) bool {
	if seq < w.low || seq >= w.next {
		return false
	}
	s := w.at(seq)
	if s.state != inFlight {
		return false
	}
	w.bytes -= int64(s.size)
	w.produced--
	s.state = state
	return true
}

// skipDead passes over sequence next, dead-lettered before it was
// produced (librdkafka refused it at Produce).
func (w *window) skipDead() {
	*w.at(w.next) = slot{state: dead}
	w.next++
	w.hi = max(w.hi, w.next)
}

// commitTxn marks the records of the committed transaction done: those
// whose reports have not been read yet were delivered too (their reports
// then find them done, and are ignored). It returns the number of records
// delivered, dead-lettered ones not counted, and whether free slots (a
// record that failed, yet the transaction committed) remain: they must be
// produced again.
//
// observe gets, for each record delivered that has a timestamp, the time
// from it to now (the commit: when consumers see the record).
func (w *window) commitTxn(now int64, observe func(time.Duration)) (delivered int, gaps bool) {
	for seq := w.low; seq < w.next; seq++ {
		s := w.at(seq)
		switch s.state {
		case inFlight:
			w.bytes -= int64(s.size)
			w.produced--
			fallthrough
		case sent:
			delivered++
			if s.ts > 0 {
				observe(time.Duration(now - s.ts))
			}
		case free:
			gaps = true
			continue
		}
		s.state = done
	}
	w.advance()
	return delivered, gaps
}

// firstFree is the lowest sequence below next not produced (or produced
// and failed), next if none: what a checkpoint may claim is covered.
func (w *window) firstFree() uint64 {
	for seq := w.low; seq < w.next; seq++ {
		if w.at(seq).state == free {
			return seq
		}
	}
	return w.next
}

// abortTxn frees the records the aborted transaction delivered, to be
// produced again; records still in flight are freed by their (purged)
// reports.
func (w *window) abortTxn() {
	for seq := w.low; seq < w.next; seq++ {
		if s := w.at(seq); s.state == sent {
			s.state = free
		}
	}
}

// committedThrough marks every record below end done: a commit that the
// sender believed failed was found committed (its checkpoint is in
// Kafka). Nothing may be in flight.
func (w *window) committedThrough(end uint64) {
	for seq := w.low; seq < min(end, w.next); seq++ {
		*w.at(seq) = slot{state: done}
	}
	w.advance()
	if w.low < end {
		// Committed beyond what this window produced: start after it.
		w.low, w.next = end, end
		w.hi = max(w.hi, end)
	}
}

// pendingDead reports whether a dead-lettered record waits for a commit.
func (w *window) pendingDead() bool {
	for seq := w.low; seq < w.next; seq++ {
		if w.at(seq).state == dead {
			return true
		}
	}
	return false
}
