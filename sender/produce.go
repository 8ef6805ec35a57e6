package sender

import (
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal/wal"
)

// fill produces from the WAL while the window has room: the main stream,
// then the lanes.
func (s *Sender) fill() {
	if s.mode != normal {
		return
	}
	if !s.retryAt.IsZero() {
		if time.Now().Before(s.retryAt) {
			return
		}
		s.retryAt = time.Time{}
	}
	s.rt.tick()
	s.fillMain()
	if len(s.lanes) > 0 {
		s.fillLanes()
	}
	s.published()
}

// fillMain produces the main stream's records, in sequence order, handing
// those of lagging partitions to their lanes.
func (s *Sender) fillMain() {
	for n := 1; ; n++ {
		if n%clockEvery == 0 {
			s.rt.tick()
		}
		if s.win.full() {
			s.unblock()
			if s.win.full() {
				return
			}
		}
		if !s.hasBudget() || s.globalSolo {
			return
		}
		if s.win.nextDone() {
			s.win.skip()
			continue
		}
		e := s.peek()
		if e == nil {
			return // caught up, or waiting for the read-ahead
		}
		if len(s.parkSkip) > 0 && s.skipParked(e.Seq) {
			s.win.skip() // in a park log found at Open: its lane sends it
			continue
		}
		if e.Hole {
			s.lg.Error().Uint64("seq", e.Seq).Msg("sender: skipping a record recovery could not read (counted lost)")
			s.stats.holes.Add(1)
			if s.cfg.OnHole != nil {
				s.cfg.OnHole(e.Seq)
			}
			s.win.skip()
			continue
		}
		global := e.Seq < s.isolateUntil // isolated with no known partition
		d := s.dest(e, global)
		if d.wait {
			return // setMeta's answer wakes the loop
		}
		if d.lane != nil {
			s.handOver(d.lane, e)
			continue
		}
		ok, alone := s.gate(d.p, e.Seq)
		if !ok {
			return // a record produced alone is out (isolate.go)
		}
		if d.p != nil && !alone && s.atShare(d.p) {
			if !s.lagging(d.p) {
				return // busy: its reports will come soon
			}
			s.deferPart(d.p)
			continue // the same record again, now to the lane (or, keyless, elsewhere)
		}
		if s.tx != nil && !s.txnMayProduce() {
			return // no transaction takes records now
		}
		pid, opaque := e.Record.Partition, d.opaque || alone
		if d.p != nil && !global {
			pid = d.p.id
		}
		m := s.message(e, pid, opaque)
		err := s.p.Produce(m, nil)
		if err != nil {
			c := classify(err)
			if !opaque && e.Record.Partition == wal.PartitionAny && c == permanent {
				// The partition we chose does not exist (a topic re-created
				// with fewer): forget the count; the record goes again with
				// PartitionAny and Opaque until new metadata is in.
				s.lg.Warn().Err(err).Str("topic", e.Record.Topic).Msg("sender: chosen partition refused; refreshing the topic's partitions")
				s.rt.forget(e.Record.Topic)
				if d.p.t.lanes == 0 {
					continue
				}
			}
			switch c {
			case permanent:
				if s.deadLetter(e.Seq, e.Record.Clone(), m.TopicPartition.Partition, err) {
					if s.tx != nil {
						s.win.skipDead() // covered by the next commit
					} else {
						s.win.skip()
					}
					continue
				}
			case fatal:
				s.fatalError(err)
			default: // ErrQueueFull and friends: wait for reports to free room
				s.retryLater()
			}
			return
		}
		switch {
		case alone && global:
			s.producedAlone(nil, e.Seq, nil)
		case alone:
			s.producedAlone(d.p, e.Seq, nil)
		case !opaque:
			s.pushFlight(d.p, flight{seq: e.Seq, at: s.rt.now.UnixNano(), size: int32(e.Size)})
		}
		if pid == wal.PartitionAny {
			t := s.rt.topic(e.Record.Topic)
			t.anyHigh = max(t.anyHigh, e.Seq)
		}
		if e.Seq < s.win.hi {
			s.stats.resent.Add(1)
		}
		if s.tx != nil {
			s.tx.records++
			s.tx.bytes += int64(e.Size)
		}
		s.win.addTo(e.Seq, e.Size, e.Record.Timestamp.UnixNano(), d.p)
	}
}

// peek returns the record at win.next from the read-ahead, or nil when it
// has not been read yet. It moves the prefetcher when win.next is not
// where it reads (after a rewind or a skip past what it read).
func (s *Sender) peek() *wal.Entry {
	next := s.win.next
	for {
		for len(s.pending) > 0 && s.pending[0].Seq < next {
			s.pending = s.pending[1:]
		}
		if len(s.pending) > 0 {
			if s.pending[0].Seq == next {
				return &s.pending[0]
			}
			s.pending = nil // read ahead of next: a rewind went back
		}
		if s.pfNext != next {
			s.pfGen++
			s.pf.seekTo(s.pfGen, next)
			s.pfNext = next
		}
		select {
		case b := <-s.pf.out:
			s.take(b)
		default:
			return nil
		}
		if len(s.pending) == 0 {
			return nil // a read failed, or a batch from before a seek
		}
	}
}

// take accepts a batch from the prefetcher: records, or a read error
// (retried after a backoff, from the same sequence).
func (s *Sender) take(b readBatch) {
	if b.gen != s.pfGen {
		s.pf.recycle(b.chunk) // read before the latest seek
		return
	}
	if b.err != nil {
		s.pf.recycle(b.chunk)
		s.lg.Error().Err(b.err).Uint64("seq", s.pfNext).Msg("sender: cannot read the WAL; retrying")
		s.pfNext = 0 // seek again when retrying
		s.retryLater()
		return
	}
	if s.tx != nil {
		if e := s.inHand(s.win.next - 1); e != nil {
			s.passedFP.seq, s.passedFP.fp = e.Seq, fingerprintOf(e)
		}
	}
	s.pf.recycle(s.cur)
	s.cur, s.pending = b.chunk, b.ents
	s.pfNext = b.ents[len(b.ents)-1].Seq + 1
}

// message fills the sender's one reusable kafka.Message with e, to
// partition part, with its sequence as Opaque if opaque. Produce copies
// what it needs (librdkafka's RD_KAFKA_MSG_F_COPY) and keeps no reference
// to the Message, so one per sender saves an allocation per record.
func (s *Sender) message(e *wal.Entry, part int32, opaque bool) *kafka.Message {
	r := &e.Record
	m := &s.msg
	*m = kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &r.Topic, Partition: part},
		Key:            r.Key,
		Value:          r.Value,
		Timestamp:      r.Timestamp,
	}
	if opaque {
		m.Opaque = e.Seq
	}
	if len(r.Headers) > 0 {
		s.hdrs = s.hdrs[:0]
		for _, h := range r.Headers {
			s.hdrs = append(s.hdrs, kafka.Header{Key: h.Key, Value: h.Value})
		}
		m.Headers = s.hdrs
	}
	return m
}

// dest is where a record goes.
type dest struct {
	p *part // its partition; nil: not known, librdkafka partitions it
	// opaque: its report is attributed by Opaque, not by position: when
	// reports are not positional, for records sent alone to confirm a
	// permanent error (the dead-letter decision must not rest on our
	// choice of partition), and for PartitionAny records of a topic whose
	// partitions are not known yet.
	opaque bool
	lane   *lane // the active lane that carries its partition's records
	// wait: the record waits for its topic's partition count. Its topic
	// has lanes, and only the count tells whether one of them owns it.
	wait bool
}

// dest returns where the record at the main stream's next goes. Keyless
// PartitionAny records go to a partition that accepts them; when none
// does, to the topic's keyless lane.
func (s *Sender) dest(e *wal.Entry, isolated bool) dest {
	r := &e.Record
	if !s.positional {
		return dest{opaque: true}
	}
	t := s.rt.topic(r.Topic)
	if r.Partition != wal.PartitionAny {
		p := t.part(r.Partition)
		if p.lane != nil && p.lane.active {
			return dest{lane: p.lane}
		}
		return dest{p: p, opaque: isolated}
	}
	s.askMeta(t, false)
	if !s.rt.kind.keyless(r.Key) {
		q, ok := s.rt.partition(t, r.Key)
		if !ok {
			if t.lanes > 0 {
				// Lanes made before the count was known (resumed from an
				// exactly-once checkpoint at Open): the record may be
				// one of theirs, and sent now it would overtake their
				// older ones.
				s.askMeta(t, true)
				return dest{wait: true}
			}
			return dest{opaque: true}
		}
		p := t.part(q)
		if p.lane != nil && p.lane.active {
			return dest{lane: p.lane}
		}
		return dest{p: p, opaque: isolated}
	}
	if t.keyless != nil && t.keyless.active {
		return dest{lane: t.keyless}
	}
	if isolated || t.count <= 0 {
		return dest{opaque: true}
	}
	q, ok := s.rt.steer(t, s.accepts)
	if !ok {
		// Every partition busy (the record waits for one) or refusing
		// (the keyless lane takes it).
		if q, ok = s.rt.steer(t, s.open); !ok {
			return dest{lane: s.keylessLane(t)}
		}
	}
	return dest{p: t.part(q)}
}

func (s *Sender) retryLater() {
	s.retryAt = time.Now().Add(s.backoff)
	s.backoff = min(2*s.backoff, maxBackoff)
}

// askMeta asks for t's partitions when it is time: not while a request is
// out or before its retry time, and not while every broker is down: it
// could not be answered, and it would make librdkafka try to connect at
// once (metabackoff.go). needed: records wait for the answer, so nothing
// else may be produced that would tell the sender the cluster is back;
// then it asks even so (a failure then backs off to metaRefresh), and the
// loop comes back at the retry time.
func (s *Sender) askMeta(t *topicRoute, needed bool) {
	if needed {
		s.waitingForCount(t)
	}
	switch {
	case t.fetching || (s.stats.unreachable.Load() && !needed):
	case s.rt.now.Before(t.fetchAt):
		if needed {
			s.wakeAt(t.fetchAt)
		}
	case s.meta.ask(t.name):
		t.fetching = true
	default:
		t.fetchAt = s.rt.now.Add(metaRetry)
		if needed {
			s.wakeAt(t.fetchAt)
		}
	}
}

// waitingForCount notes that records of t wait for its partition count,
// and says so once they have waited countWaitLog: a topic deleted while
// its partitions were deferred, or one this producer may no longer
// describe, would otherwise hold them without a word.
func (s *Sender) waitingForCount(t *topicRoute) {
	now := s.rt.now
	if t.countWait.IsZero() {
		t.countWait = now
	}
	if t.countWaitLogged {
		return
	}
	if at := t.countWait.Add(countWaitLog); now.Before(at) {
		s.wakeAt(at)
		return
	}
	t.countWaitLogged = true
	s.lg.Warn().Str("topic", t.name).Float64("waiting_seconds", now.Sub(t.countWait).Seconds()).
		Msg("sender: records of the topic wait for its partition count, which partitions resumed at Open need to tell their records apart; is the topic deleted, or not described to this producer?")
}
