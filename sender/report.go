package sender

import (
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal/wal"
)

func (s *Sender) handle(ev kafka.Event) {
	switch e := ev.(type) {
	case *kafka.Message:
		s.report(e)
	case kafka.Error:
		s.brokerError(e)
	}
}

// attribute returns the sequence a report is for and who owns it (a
// lane, or nil for the window): its Opaque, or the oldest flight of its
// partition (p).
// alone says the record was produced alone (isolate.go).
func (s *Sender) attribute(m *kafka.Message) (seq uint64, p *part, owner *lane, alone, ok bool) {
	if seq, ok := m.Opaque.(uint64); ok {
		owner, alone := s.soloReported(seq)
		return seq, nil, owner, alone, true
	}
	tp := m.TopicPartition
	if tp.Topic == nil {
		return 0, nil, nil, false, false
	}
	p = s.rt.topic(*tp.Topic).part(tp.Partition)
	f, ok := s.popFlight(p)
	if !ok {
		s.anomaly("sender: a delivery report for a partition with no record in flight; ignored", m)
		return 0, nil, nil, false, false
	}
	if f.lane == nil && !p.stalled {
		s.noteWait(f.at)
	}
	return f.seq, p, f.lane, false, true
}

func (s *Sender) anomaly(msg string, m *kafka.Message) {
	s.stats.anomalies.Add(1)
	s.lg.Error().Str("topic", *m.TopicPartition.Topic).Int32("partition", m.TopicPartition.Partition).
		Int64("offset", int64(m.TopicPartition.Offset)).Msg(msg)
}

// positionalSuccess says whether a success attributed by position is
// believed (see partition.go): never after a failure since the last rewind
// (mode is not normal) or while a producer is closed after one (closing),
// and only while the partition's offsets rise in report order. If they do
// not, the tripwire trips: the report is counted and logged, and reports
// are attributed by Opaque from now on.
func (s *Sender) positionalSuccess(m *kafka.Message, q *part) (believe, tripped bool) {
	if s.mode != normal || s.closing {
		return false, false
	}
	if off := int64(m.TopicPartition.Offset); off >= 0 {
		if off <= q.lastOffset {
			s.anomaly("sender: delivery reports out of order in a partition; re-sending everything unacknowledged and attributing reports by Opaque from now on", m)
			s.positional = false
			return false, true
		}
		q.lastOffset = off
	}
	return true, false
}

// delivered marks seq, owned by owner (nil: the window), delivered on a
// success report from partition p (nil: attributed by Opaque).
//
// Under exactly-once the record is delivered in the open transaction;
// its commit acknowledges it (txnSent).
func (s *Sender) delivered(seq uint64, owner *lane, p *part, m *kafka.Message) {
	if s.tx != nil {
		s.txnSent(owner, seq, p, m)
		return
	}
	// The timestamp before resolve frees the record; valid if it succeeds.
	var ts int64
	if owner == nil {
		ts = s.win.at(seq).ts
	} else if i := owner.find(seq); i >= 0 {
		ts = owner.owned[i].ts
	}
	if s.resolve(owner, seq, true) {
		if ts > 0 {
			s.cfg.ObserveDelivery(time.Duration(s.now - ts))
		}
		s.stats.delivered.Add(1)
		s.backoff = minBackoff
		s.reachable()
		if p != nil {
			p.acked = s.now
			s.noteTurn(p)
			if p.stalled {
				s.recovered(p)
			}
		}
		if s.cfg.OnDelivered != nil {
			s.cfg.OnDelivered(seq, *m.TopicPartition.Topic, m.TopicPartition.Partition, int64(m.TopicPartition.Offset))
		}
	}
}

// settle takes a report that arrives while the producer is purged for
// shutdown or is being closed (closeProducer). It resolves the record as
// report would and does nothing else: it never calls the producer (a Purge
// racing its Close is a use after free in librdkafka), never dead-letters
// and never changes mode; what failed is re-sent after the rebuild or by
// the next Open. After a failure no positional success is believed
// (closing): the failure may have been that success's record's.
func (s *Sender) settle(m *kafka.Message) {
	s.now = time.Now().UnixNano() // settle runs outside the run loop's rounds
	seq, p, owner, _, ok := s.attribute(m)
	if !ok {
		return
	}
	if m.TopicPartition.Error != nil {
		s.resolve(owner, seq, false)
		s.closing = true
		return
	}
	if p != nil {
		if believe, _ := s.positionalSuccess(m, p); !believe {
			s.resolve(owner, seq, false)
			return
		}
	}
	s.delivered(seq, owner, p, m)
}

func (s *Sender) report(m *kafka.Message) {
	if s.tx != nil {
		if _, ok := m.Opaque.(ckptMarker); ok {
			s.txnCheckpointReport(m)
			return
		}
	}
	seq, p, owner, alone, ok := s.attribute(m)
	if !ok {
		return
	}
	err := m.TopicPartition.Error
	if err == nil && p != nil {
		if believe, tripped := s.positionalSuccess(m, p); !believe {
			s.resolve(owner, seq, false)
			if tripped {
				s.enter(errMisordered)
			}
			return
		}
	}
	if err == nil {
		s.delivered(seq, owner, p, m)
		return
	}
	switch c := classify(err); c {
	case permanent:
		if !alone {
			// Kafka may have refused the batch this record was in, not
			// the record: send everything not yet acknowledged again, the
			// partition's records one at a time, and believe the error
			// only then.
			s.isolate(p, m)
			s.resolve(owner, seq, false)
			s.enter(err)
			break
		}
		// The report carries no payload (go.delivery.report.fields=none):
		// read the record back for the dead-letter log.
		rec, rerr := s.readBack(seq, owner)
		if rerr != nil {
			s.lg.Error().Err(rerr).Uint64("seq", seq).Msg("sender: cannot read back a refused record; will retry it")
			s.resolve(owner, seq, false)
			s.enter(err)
			return
		}
		if s.deadLetter(seq, rec, m.TopicPartition.Partition, err) {
			if s.tx != nil {
				// The failure aborts the transaction; the record stays
				// dead-lettered, and the next commit covers it.
				s.markDead(owner, seq)
				s.txnDoom(err)
			} else {
				s.resolve(owner, seq, true)
			}
		} else {
			s.resolve(owner, seq, false)
			s.enter(err)
		}
	case fatal:
		s.resolve(owner, seq, false)
		s.fatalError(err)
	case purged:
		s.resolve(owner, seq, false)
		if s.mode == normal {
			s.enter(err)
		}
	default:
		s.resolve(owner, seq, false)
		s.enter(err)
	}
	s.maybeRewind()
}

// enter switches to draining (unless a rebuild is already under way): no
// more records are produced until every outstanding report is in, then
// everything unacknowledged is produced again in order.
func (s *Sender) enter(cause error) {
	if s.tx != nil {
		// The failed record makes the transaction abortable: aborting it
		// purges the rest (txnTick).
		s.txnDoom(cause)
	}
	if s.mode != normal {
		return
	}
	s.mode = draining
	if s.tx != nil {
		return
	}
	flying, _ := s.inFlight()
	s.lg.Warn().Err(cause).Uint64("from_seq", s.watermark()+1).Int("in_flight", flying).
		Msg("sender: transient delivery failure; re-sending from the oldest unacknowledged record")
	// Take back everything still queued or in flight now: left alone,
	// later records could be delivered before the failed one is re-sent,
	// and land ahead of it in its partition. A purged record that did reach
	// Kafka is sent again: a duplicate (counted in Resent), never a reorder.
	s.purge()
}

func (s *Sender) maybeRewind() {
	if n, _ := s.inFlight(); s.mode == draining && n == 0 && (s.tx == nil || s.tx.phase == txnIdle) {
		s.rewind()
		s.mode = normal
		s.retryLater()
	}
}

// rewind makes every stream produce its unacknowledged records again, in
// order, each from its own oldest: the window from its low (peek then
// finds next behind the read-ahead and seeks), each lane from its records
// reported failed. It must only run with nothing in flight.
func (s *Sender) rewind() {
	s.win.rewind()
	s.rewindLanes()
	s.resetRouter()
	s.resetSolos()
}

// resetRouter forgets the queues of reports to come: every report of
// what was produced is in (or, after a rebuild, will never come).
func (s *Sender) resetRouter() {
	if n := s.rt.outstanding(); n > 0 {
		if flying, _ := s.inFlight(); flying == 0 {
			s.stats.anomalies.Add(uint64(n))
			s.lg.Error().Int("records", n).Msg("sender: records produced without a delivery report; they are re-sent")
		}
	}
	s.rt.reset()
	s.active = 0
}

// readBack reads a record again by its sequence, for the dead-letter log.
func (s *Sender) readBack(seq uint64, owner *lane) (wal.Record, error) {
	if owner != nil && owner.park != nil {
		if i := owner.find(seq); i >= 0 && owner.owned[i].parked {
			return owner.park.log.Lookup(seq)
		}
	}
	ents, err := s.wal.Read(seq, make([]wal.Entry, 0, 1), 1)
	if err == nil && len(ents) != 1 {
		err = fmt.Errorf("kafkawal: read seq %d: not in the WAL", seq)
	}
	if err != nil {
		return wal.Record{}, err
	}
	return ents[0].Record, nil
}

// deadLetter records a refused record durably, then tells the application.
// partition is where Kafka refused it (negative: none yet). It returns
// false if the dead-letter log could not be written; the record is then
// retried, never dropped.
func (s *Sender) deadLetter(seq uint64, r wal.Record, partition int32, cause error) bool {
	dl := newDeadLetter(seq, r, partition, cause)
	if err := s.dl.Add(dl); err != nil {
		s.lg.Error().Err(err).Uint64("seq", seq).Msg("sender: cannot write the dead-letter log; retrying the record")
		return false
	}
	s.stats.deadLettered.Add(1)
	s.lg.Error().Err(cause).Uint64("seq", seq).Str("topic", r.Topic).Int32("partition", r.Partition).
		Msg("sender: record refused by Kafka for good; dead-lettered")
	if s.cfg.OnDeadLetter != nil {
		s.cfg.OnDeadLetter(dl)
	}
	return true
}
