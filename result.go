package kafkawal

import (
	"context"
	"errors"
	"fmt"

	"github.com/kafkawal/kafkawal/recovery"
	"github.com/kafkawal/kafkawal/sender"
	"github.com/kafkawal/kafkawal/wal"
)

// DeliveryResult is what became of one appended record: delivered to
// Kafka (Err nil), refused by Kafka for good and dead-lettered (Err is a
// *DeadLetterError, matching ErrDeadLettered), or lost to corruption of
// the WAL before it was sent (Err matches ErrCorrupt).
type DeliveryResult struct {
	// Seq is the record's sequence, as Append returned it.
	Seq uint64
	// Topic, Partition and Offset say where the record is in Kafka.
	// Topic is "" and Partition and Offset are -1 when they are not known:
	// the record was delivered before this Open, or its outcome has left
	// the ring of recent outcomes (see WaitDelivered). For a dead
	// letter, Partition is the one Kafka refused it in (-1: none yet) and
	// Offset is -1.
	Topic     string
	Partition int32
	Offset    int64
	// Err is nil for a record in Kafka.
	Err error
}

// ErrDeadLettered matches the errors of records Kafka refused for good
// (too large, invalid, not authorized, topic missing): they are in the
// dead-letter log (DIR/deadletter.log, `kafkawal dump --dead`), not in
// Kafka, and are never sent again. The error is a *DeadLetterError.
var ErrDeadLettered = errors.New("kafkawal: dead-lettered")

// DeadLetterError reports records that were dead-lettered: one record for
// WaitDelivered and DeliveryResult.Err, every record dead-lettered among
// those a Flush or Close waited for.
type DeadLetterError struct {
	// Count is the number of records dead-lettered; First is the one with
	// the lowest sequence, with Kafka's error (DeadLetter.Err, .Code).
	Count int
	First DeadLetter
}

func (e *DeadLetterError) Error() string {
	if e.Count == 1 {
		return fmt.Sprintf("kafkawal: record %d dead-lettered: %s", e.First.Seq, e.First.Err)
	}
	return fmt.Sprintf("kafkawal: %d records dead-lettered, the first (%d): %s", e.Count, e.First.Seq, e.First.Err)
}

// Is makes a DeadLetterError match ErrDeadLettered.
func (e *DeadLetterError) Is(target error) bool { return target == ErrDeadLettered }

// errLost is the error of a record lost to corruption.
func errLost(seq uint64) error {
	return fmt.Errorf("%w: record %d could not be read from the WAL and was never sent (its bytes are in quarantine/)", ErrCorrupt, seq)
}

func result(seq uint64, state uint32, topic string, partition int32, offset int64, dl *DeadLetter) DeliveryResult {
	r := DeliveryResult{Seq: seq, Topic: topic, Partition: partition, Offset: offset}
	switch state {
	case outcomeDeadLettered:
		r.Offset = -1
		if dl != nil {
			r.Err = &DeadLetterError{Count: 1, First: *dl}
		}
	case outcomeLost:
		r.Partition, r.Offset = -1, -1
		r.Err = errLost(seq)
	}
	return r
}

// WaitDelivered waits until the record with sequence seq is delivered to
// Kafka, dead-lettered or found lost, and returns where it is (partition
// and offset) or why it is not there (DeliveryResult.Err, also returned
// as the error); or until ctx ends or the producer is closed, with an
// error wrapping ctx's error or ErrClosed (the record then stays in the
// WAL, and the next Open delivers it).
//
// Outcomes are remembered in a ring as long as the in-flight window's
// (which grows with the partitions produced to, up to MaxInFlight), so a
// call made long after the record was resolved may find only that it was:
// a record delivered before this Open, or whose outcome has left the ring,
// comes back with Partition and Offset -1 and a nil error; a dead letter
// is then found in the dead-letter log (which is read for it) and a record
// lost to corruption is recognised if this Open's repair lost it. Memory
// does not grow with the backlog: each call waiting costs one small entry
// until it returns.
//
// seq must be one that Append returned: 0 or a sequence beyond the last
// appended is an error at once.
func (p *Producer) WaitDelivered(ctx context.Context, seq uint64) (DeliveryResult, error) {
	unknown := DeliveryResult{Seq: seq, Partition: -1, Offset: -1}
	if p == nil {
		return unknown, fmt.Errorf("%w: nil *Producer", ErrClosed)
	}
	if last := p.log.LastSeq(); seq == 0 || seq > last {
		return unknown, fmt.Errorf("kafkawal: wait delivered: sequence %d was never appended (the last is %d)", seq, last)
	}
	w := p.out.register(seq, p.watch)
	defer p.out.unregister(w)
	for {
		if r, ok := p.out.lookup(seq); ok {
			return r, r.Err
		}
		if acked, _ := p.snd.Watermark(); acked >= seq {
			r := p.resolvedResult(seq)
			return r, r.Err
		}
		select {
		case ev := <-w.ch:
			switch {
			case ev.has:
				return ev.r, ev.r.Err
			case ev.closed:
				if r, ok := p.out.lookup(seq); ok {
					return r, r.Err
				}
				if acked, _ := p.snd.Watermark(); acked >= seq {
					r := p.resolvedResult(seq)
					return r, r.Err
				}
				return unknown, fmt.Errorf("kafkawal: wait delivered: %w before record %d was delivered; it stays in the WAL for the next Open", ErrClosed, seq)
			}
			// resolved: the watermark passed seq; look again.
		case <-ctx.Done():
			return unknown, fmt.Errorf("kafkawal: wait delivered: record %d: %w", seq, context.Cause(ctx))
		}
	}
}

// watch wakes the waiters whose record the watermark has passed without
// an outcome they could see (a hole, or an outcome that left the ring),
// and all of them when the sender stops. It runs while anyone waits.
func (p *Producer) watch(o *outcomes) {
	for {
		acked, changed := p.snd.Watermark()
		if !o.release(acked, false) {
			return
		}
		select {
		case <-changed:
		case <-p.snd.Done():
			acked, _ = p.snd.Watermark()
			if o.release(acked, false) {
				o.release(0, true)
			}
			return
		}
	}
}

// resolvedResult answers for a record at or below the watermark whose
// outcome the ring does not hold.
func (p *Producer) resolvedResult(seq uint64) DeliveryResult {
	if r, ok := p.out.lookup(seq); ok {
		return r
	}
	r := DeliveryResult{Seq: seq, Partition: -1, Offset: -1}
	if p.lostAtOpen != nil && p.lostAtOpen(seq) {
		r.Err = errLost(seq)
		return r
	}
	if seq <= p.out.maxDead.Load() || p.deadAtOpen {
		if dle, err := p.deadLettersIn(seq, seq); err != nil {
			r.Err = err
		} else if dle != nil {
			r.Partition = dle.First.SentToPartition
			r.Topic = dle.First.Record.Topic
			r.Err = dle
		}
	}
	return r
}

// deadLettersIn reads the dead-letter log for records with sequences in
// [from, to] and returns them as one *DeadLetterError, or nil when there
// is none. A record dead-lettered twice (again after a restart) counts
// once.
func (p *Producer) deadLettersIn(from, to uint64) (*DeadLetterError, error) {
	var e *DeadLetterError
	seen := map[uint64]bool{}
	err := wal.ReadDeadLetters(p.cfg.Dir, func(dl wal.DeadLetter) error {
		if dl.Seq < from || dl.Seq > to || seen[dl.Seq] {
			return nil
		}
		seen[dl.Seq] = true
		if e == nil {
			e = &DeadLetterError{First: dl}
		} else if dl.Seq < e.First.Seq {
			e.First = dl
		}
		e.Count++
		return nil
	})
	if err != nil && !errors.Is(err, wal.ErrCorrupt) { // damage: reported by Open
		return nil, err
	}
	return e, nil
}

// deadLettered returns the records among [from, to] dead-lettered in this
// process, as a *DeadLetterError, or nil when none was. It is called once
// the watermark has passed to; reading the dead-letter log happens only
// when some record at or after from was dead-lettered.
func (p *Producer) deadLettered(from, to uint64) error {
	if from > to || p.out.maxDead.Load() < from {
		return nil
	}
	e, err := p.deadLettersIn(from, to)
	if err != nil {
		return fmt.Errorf("kafkawal: records were dead-lettered, but the dead-letter log cannot be read: %w", err)
	}
	if e == nil {
		return nil
	}
	return e
}

// hookOutcomes installs the sender's callbacks: each outcome is
// remembered for WaitDelivered, counted, and passed on to the
// application's callbacks.
func (p *Producer) hookOutcomes(sc *sender.Config) {
	cfg := p.cfg
	sc.OnDelivered = func(seq uint64, topic string, partition int32, offset int64) {
		p.out.record(seq, outcomeDelivered, topic, partition, offset, nil)
		if cfg.OnDelivered != nil {
			cfg.OnDelivered(seq, topic, partition, offset)
		}
		if cfg.OnDeliveryResult != nil {
			cfg.OnDeliveryResult(DeliveryResult{Seq: seq, Topic: topic, Partition: partition, Offset: offset})
		}
	}
	sc.OnDeadLetter = func(dl DeadLetter) {
		p.out.record(dl.Seq, outcomeDeadLettered, dl.Record.Topic, dl.SentToPartition, -1, &dl)
		if cfg.OnDeadLetter != nil {
			cfg.OnDeadLetter(dl)
		}
		if cfg.OnDeliveryResult != nil {
			cfg.OnDeliveryResult(result(dl.Seq, outcomeDeadLettered, dl.Record.Topic, dl.SentToPartition, -1, &dl))
		}
	}
	// The outcomes ring follows the window's, up to MaxInFlight: past
	// that, two records the window holds at once may share a slot, and a
	// look-up after the fact for the one whose outcome was overwritten
	// finds only that it was resolved (WaitDelivered).
	maxRing := sc.MaxInFlightOrDefault()
	sc.OnRing = func(n int) { p.out.grow(min(n, maxRing)) }
	sc.OnHole = func(seq uint64) {
		p.out.record(seq, outcomeLost, "", -1, -1, nil)
		if p.lostAtOpen == nil || !p.lostAtOpen(seq) {
			p.lostLater.Add(1)
		}
		if cfg.OnDeliveryResult != nil {
			cfg.OnDeliveryResult(result(seq, outcomeLost, "", -1, -1, nil))
		}
	}
}

// lostAtOpen returns the sequence ranges the repair at Open replaced by
// holes and counted lost, so that the sender does not count them again
// when it skips them.
func lostAtOpen(rep recovery.Report) func(seq uint64) bool {
	type span struct{ from, to uint64 }
	var spans []span
	for _, d := range rep.Damage {
		if !d.TornTail && !d.Delivered && d.Seq != 0 && d.LastSeq >= d.Seq {
			spans = append(spans, span{d.Seq, d.LastSeq})
		}
	}
	if len(spans) == 0 {
		return nil
	}
	return func(seq uint64) bool {
		for _, s := range spans {
			if seq >= s.from && seq <= s.to {
				return true
			}
		}
		return false
	}
}
