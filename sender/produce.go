package sender

import (
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal/wal"
)

// fill produces from the WAL while the window has room.
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
	for n := 1; s.win.hasRoom(s.cfg.MaxInFlight, s.cfg.MaxInFlightBytes); n++ {
		if n%clockEvery == 0 {
			s.rt.tick()
		}
		// Isolated: one record at a time, and the record after the range
		// waits for the last isolated one's report too, or librdkafka
		// would batch them together again.
		lastSolo := s.soloSeq != 0 && s.soloSeq == s.win.next-1
		if s.win.produced > 0 && (s.win.next < s.isolateUntil || lastSolo) {
			break
		}
		if s.win.nextDone() {
			s.win.skip()
			continue
		}
		e := s.peek()
		if e == nil {
			return // caught up, or waiting for the read-ahead
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
		m, q := s.message(e)
		err := s.p.Produce(m, nil)
		if err != nil {
			c := classify(err)
			if q != nil && e.Record.Partition == wal.PartitionAny && c == permanent {
				// The partition we chose does not exist (a topic re-created
				// with fewer): forget the count; the record goes again with
				// PartitionAny and Opaque until new metadata is in.
				s.lg.Warn().Err(err).Str("topic", e.Record.Topic).Msg("sender: chosen partition refused; refreshing the topic's partitions")
				s.rt.forget(e.Record.Topic)
				continue
			}
			switch c {
			case permanent:
				if s.deadLetter(e.Seq, e.Record.Clone(), m.TopicPartition.Partition, err) {
					s.win.skip()
					continue
				}
			case fatal:
				s.startRebuild(err)
			default: // ErrQueueFull and friends: wait for reports to free room
				s.retryLater()
			}
			return
		}
		if q != nil {
			q.push(e.Seq)
		}
		if e.Seq < s.win.hi {
			s.stats.resent.Add(1)
		}
		if e.Seq < s.isolateUntil {
			s.soloSeq = e.Seq
		}
		s.win.add(e.Seq, e.Size, e.Record.Timestamp.UnixNano())
	}
	s.stats.inFlight.Store(int64(s.win.produced))
	s.stats.oldest.Store(s.win.oldest())
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
	s.pf.recycle(s.cur)
	s.cur, s.pending = b.chunk, b.ents
	s.pfNext = b.ents[len(b.ents)-1].Seq + 1
}

// message fills the sender's one reusable kafka.Message with e: Produce
// copies what it needs (librdkafka's RD_KAFKA_MSG_F_COPY) and keeps no
// reference to the Message, so one per sender saves an allocation per
// record. It returns the queue of the partition the record goes to, to
// push its sequence on once produced, or nil when the record carries its
// sequence as Opaque instead.
func (s *Sender) message(e *wal.Entry) (*kafka.Message, *fifo) {
	r := &e.Record
	m := &s.msg
	part, q := s.route(e)
	*m = kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &r.Topic, Partition: part},
		Key:            r.Key,
		Value:          r.Value,
		Timestamp:      r.Timestamp,
	}
	if q == nil {
		m.Opaque = e.Seq
	}
	if len(r.Headers) > 0 {
		s.hdrs = s.hdrs[:0]
		for _, h := range r.Headers {
			s.hdrs = append(s.hdrs, kafka.Header{Key: h.Key, Value: h.Value})
		}
		m.Headers = s.hdrs
	}
	return m, q
}

// route returns the partition to produce e to and its queue, or the
// record's own partition and nil to attribute its report by Opaque: when
// reports are not positional, for records sent alone to confirm a
// permanent error (the dead-letter decision must not rest on our choice
// of partition), and for PartitionAny records of a topic whose partitions
// are not known yet.
func (s *Sender) route(e *wal.Entry) (int32, *fifo) {
	r := &e.Record
	if !s.positional || e.Seq < s.isolateUntil {
		return r.Partition, nil
	}
	t := s.rt.topic(r.Topic)
	p := r.Partition
	if p == wal.PartitionAny {
		// No request while every broker is down: it could not be
		// answered, and it would make librdkafka try to connect at once
		// (metabackoff.go).
		if !t.fetching && !s.rt.now.Before(t.fetchAt) && !s.stats.unreachable.Load() {
			if s.meta.ask(r.Topic) {
				t.fetching = true
			} else {
				t.fetchAt = s.rt.now.Add(metaRetry)
			}
		}
		var ok bool
		if p, ok = s.rt.partition(t, r.Key); !ok {
			return wal.PartitionAny, nil
		}
	}
	return p, t.queue(p)
}

func (s *Sender) retryLater() {
	s.retryAt = time.Now().Add(s.backoff)
	s.backoff = min(2*s.backoff, maxBackoff)
}
