package sender

import (
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Under exactly-once delivery, lanes (lane.go) hold their records as the
// window does (txnwindow.go): a success report makes a record sent, a dead
// letter dead, and only the commit makes them done; an abort makes the
// sent ones free again, to be produced again from the lane.
//
// The checkpoint (checkpoint.go) says what the lanes hold back: Next is
// the window's, below which the lanes' records are all that is not
// committed, and each lane with records of its own not produced yet (an
// active lane from its read position, or records to produce again) is a
// Deferred partition, from its lowest such record. At start a Deferred
// partition becomes an active lane again, reading from there
// (txnResumeLanes), and the window starts at Next.

// markSent records a success report of seq, owned by l in flight.
func (l *lane) markSent(seq uint64) (int32, bool) {
	return l.markTxn(seq, sent)
}

// markDead records that seq, owned by l in flight, was dead-lettered.
func (l *lane) markDead(seq uint64) (int32, bool) {
	return l.markTxn(seq, dead)
}

func (l *lane) markTxn(seq uint64, st slotState) (int32, bool) {
	i := l.find(seq)
	if i < 0 || l.owned[i].state != inFlight {
		return 0, false
	}
	o := &l.owned[i]
	l.flightN--
	l.flightB -= int64(o.size)
	o.state = st
	return o.size, true
}

// commitTxn marks the records l produced in the committed transaction
// done (in flight: their reports have not been read yet). It returns how
// many were delivered (dead letters not counted), and how many of them,
// and their bytes, were still in flight. Its free records are the ones
// it has yet to produce again: not in the transaction, and below every
// record of theirs not committed (a partition's records are produced in
// order, and a transaction commits all or none of them, so what is
// committed of a partition is always a prefix of its records: the
// checkpoint's Deferred From, txnDeferred).
func (l *lane) commitTxn(now int64, observe func(time.Duration)) (delivered int, flyN int, flyB int64) {
	for i := range l.owned {
		o := &l.owned[i]
		switch o.state {
		case inFlight:
			l.flightN--
			l.flightB -= int64(o.size)
			flyN++
			flyB += int64(o.size)
			fallthrough
		case sent:
			delivered++
			if o.ts > 0 {
				observe(time.Duration(now - o.ts))
			}
		case free, done:
			continue
		}
		o.state = done
	}
	l.trim()
	return delivered, flyN, flyB
}

// abortTxn frees the records l delivered in the aborted transaction.
func (l *lane) abortTxn() {
	for i := range l.owned {
		if o := &l.owned[i]; o.state == sent {
			o.state = free
			l.freeN++
		}
	}
}

// hasDead reports whether a dead-lettered record of l waits for a commit.
func (l *lane) hasDead() bool {
	for i := range l.owned {
		if l.owned[i].state == dead {
			return true
		}
	}
	return false
}

// unproduced returns the lowest sequence of l's own that is not produced
// (to produce again, or not read yet by an active lane), noSeq if none.
func (l *lane) unproduced() uint64 {
	n := uint64(noSeq)
	for i := range l.owned {
		if l.owned[i].state == free {
			n = l.owned[i].seq
			break
		}
	}
	if l.active {
		n = min(n, l.readPos)
	}
	return n
}

// committedBelow marks l's records below from done: a commit the sender
// saw fail had landed, with from as the partition's first uncommitted
// sequence. Nothing may be in flight.
func (l *lane) committedBelow(from uint64) {
	for i := range l.owned {
		if o := &l.owned[i]; o.seq < from && o.state != done {
			if o.state == free {
				l.freeN--
			}
			o.state = done
		}
	}
	l.trim()
	if l.active {
		l.readPos = max(l.readPos, from)
	}
}

// txnSent records a success report of seq, owned by owner (nil: the
// window), from partition p (nil: attributed by Opaque): delivered in the
// open transaction, acknowledged by its commit (txnCommitted).
func (s *Sender) txnSent(owner *lane, seq uint64, p *part, m *kafka.Message) {
	if owner == nil {
		if !s.win.markSent(seq) {
			return
		}
	} else {
		size, ok := owner.markSent(seq)
		if !ok {
			return
		}
		s.laneFlightN--
		s.laneFlightB -= int64(size)
	}
	s.backoff = minBackoff
	s.reachable()
	if p != nil {
		p.acked = s.now
		s.noteTurn(p)
		if p.stalled {
			s.recovered(p)
		}
		delete(s.tx.probes, p)
	}
	if s.cfg.OnDelivered != nil {
		s.tx.reports = append(s.tx.reports, delivery{seq, m.TopicPartition.Topic, m.TopicPartition.Partition, int64(m.TopicPartition.Offset)})
	}
}

// markDead records that seq, owned by owner (nil: the window), in flight,
// was dead-lettered: the next commit covers it.
func (s *Sender) markDead(owner *lane, seq uint64) {
	if owner == nil {
		s.win.markDead(seq)
		return
	}
	if size, ok := owner.markDead(seq); ok {
		s.laneFlightN--
		s.laneFlightB -= int64(size)
	}
}

// txnHandOverSent gives l the window's records of p that were delivered
// in the open transaction (deferPart takes those in flight): an abort
// makes them free, and the lane, which produces its partition's records in
// order, must own every one it has not seen committed.
func (s *Sender) txnHandOverSent(p *part, l *lane) {
	for seq := s.win.low; seq < s.win.next; seq++ {
		if sl := s.win.at(seq); sl.state == sent && sl.p == p {
			l.own(owned{seq: seq, ts: sl.ts, size: sl.size, state: sent})
			sl.state = done
		}
	}
	s.win.advance()
}

// txnCommitAll marks every record of the committed transaction done, in
// the window and the lanes, and returns how many were delivered and
// whether free records remain.
func (s *Sender) txnCommitAll() (delivered int, gaps bool) {
	now := time.Now().UnixNano()
	delivered, gaps = s.win.commitTxn(now, s.cfg.ObserveDelivery)
	for _, l := range s.lanes {
		n, flyN, flyB := l.commitTxn(now, s.cfg.ObserveDelivery)
		delivered += n
		s.laneFlightN -= flyN
		s.laneFlightB -= flyB
	}
	for _, l := range append([]*lane(nil), s.lanes...) {
		s.maybeDropLane(l)
	}
	return delivered, gaps
}

// txnAbortedAll frees what the aborted transaction delivered, in the
// window and the lanes.
func (s *Sender) txnAbortedAll() {
	s.win.abortTxn()
	for _, l := range s.lanes {
		l.abortTxn()
	}
}

// txnPendingDead reports whether a dead-lettered record waits for a
// commit.
func (s *Sender) txnPendingDead() bool {
	if s.win.pendingDead() {
		return true
	}
	for _, l := range s.lanes {
		if l.hasDead() {
			return true
		}
	}
	return false
}

// txnDeferred lists, for the checkpoint, the lanes' partitions with
// records of their own not produced, from the lowest such record.
func (s *Sender) txnDeferred(next uint64) []PartitionFrom {
	var ds []PartitionFrom
	for _, l := range s.lanes {
		if from := l.unproduced(); from < next {
			ds = append(ds, PartitionFrom{Topic: l.t.name, Partition: l.partition(), From: from})
		}
	}
	return ds
}

// txnProduced reports whether every record up to target has been
// produced (in the window, and by every lane), and target is not yet
// acknowledged: then a Flush or Close waits for the commit alone.
func (s *Sender) txnProduced(target uint64) bool {
	if target <= s.watermark() || target >= s.win.next {
		return false
	}
	for _, l := range s.lanes {
		if l.unproduced() <= target {
			return false
		}
	}
	return true
}

// txnResumeLanes makes each partition the checkpoint c defers an active
// lane again, reading its records from its From, and sets lanes found
// with a park log at Open past what c says is committed.
func (s *Sender) txnResumeLanes(c Checkpoint) {
	from := map[[2]any]uint64{}
	for _, d := range c.Deferred {
		from[[2]any{d.Topic, d.Partition}] = d.From
	}
	for _, l := range s.lanes {
		key := [2]any{l.t.name, l.partition()}
		f, ok := from[key]
		if !ok {
			f = c.Next // none of its records below Next waits
		}
		delete(from, key)
		l.committedBelow(f)
		l.reseek = true
	}
	for _, d := range c.Deferred {
		f, ok := from[[2]any{d.Topic, d.Partition}]
		if !ok {
			continue // resumed above
		}
		t := s.rt.topic(d.Topic)
		var l *lane
		if d.Partition < 0 {
			l = s.keylessLane(t)
		} else {
			l = s.deferPart(t.part(d.Partition))
		}
		l.readPos, l.start = f, f
		l.reseek = true
	}
}
