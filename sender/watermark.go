package sender

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// published makes the new watermark visible to Stats and Flush.
func (s *Sender) published() {
	n, _ := s.inFlight()
	s.stats.inFlight.Store(int64(n))
	oldest := s.oldest()
	s.stats.oldest.Store(oldest)
	if p := s.pending; oldest == 0 && len(p) > 0 && p[0].Seq == s.win.low && !p[0].Hole && !p[0].Record.Timestamp.IsZero() {
		// Nothing in flight: the oldest record of the backlog is the next
		// one to produce, already read ahead.
		oldest = p[0].Record.Timestamp.UnixNano()
	}
	s.stats.oldestBacklog.Store(oldest)
	if acked := s.watermark(); acked != s.stats.acked.Load() {
		s.stats.acked.Store(acked)
		s.wakeFlushes()
	}
}

// wakeFlushes wakes every Flush waiting, to look again.
func (s *Sender) wakeFlushes() {
	s.notifyM.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.notifyM.Unlock()
}

// oldest returns the timestamp of the oldest unacknowledged record in
// flight or owned by a lane, 0 if none.
func (s *Sender) oldest() int64 {
	ts := s.win.oldest()
	for _, l := range s.lanes {
		if o := l.oldest(); o != 0 && (ts == 0 || o < ts) {
			ts = o
		}
	}
	return ts
}

// persist stores the cursor: the watermark, or below it what lanes still
// read from the WAL. After a failure it waits before it tries again,
// doubling from CursorSyncInterval up to maxBackoff, so that a failing
// disk is not written, and the failure not logged, at every tick.
func (s *Sender) persist() {
	acked := s.cursorBound()
	if acked <= s.persisted || time.Now().Before(s.persistAt) {
		return
	}
	if err := s.wal.SetCursor(acked); err != nil {
		interval := s.cfg.CursorSyncInterval
		s.persistBackoff = min(max(2*s.persistBackoff, interval), max(maxBackoff, interval))
		s.persistAt = time.Now().Add(s.persistBackoff)
		s.lg.Error().Err(err).Uint64("cursor", acked).Float64("retry_in_seconds", s.persistBackoff.Seconds()).
			Msg("sender: cannot persist the cursor")
		return
	}
	if s.persistBackoff > 0 {
		s.lg.Info().Uint64("cursor", acked).Msg("sender: cursor persisted again")
		s.persistBackoff = 0
	}
	s.persisted = acked
}

// Flush waits until every sequence <= upTo is delivered or dead-lettered,
// or ctx ends.
func (s *Sender) Flush(ctx context.Context, upTo uint64) error {
	if s.stats.acked.Load() < upTo {
		for cur := s.flushTo.Load(); cur < upTo && !s.flushTo.CompareAndSwap(cur, upTo); cur = s.flushTo.Load() {
		}
		select {
		case s.flushes <- struct{}{}:
		default: // one is pending already
		}
	}
	for {
		s.notifyM.Lock()
		ch := s.notify
		s.notifyM.Unlock()
		if s.stats.acked.Load() >= upTo {
			return nil
		}
		if err := s.stopErr(); err != nil {
			return fmt.Errorf("kafkawal: flush: %w (committed through %d of %d)", err, s.stats.acked.Load(), upTo)
		}
		if err := s.waitErr(); err != nil {
			return fmt.Errorf("kafkawal: flush: delivery waits: %w (committed through %d of %d; the records stay in the WAL)", err, s.stats.acked.Load(), upTo)
		}
		select {
		case <-ch:
		case <-s.done:
			if s.stats.acked.Load() >= upTo {
				return nil
			}
			return errors.New("kafkawal: sender stopped before the flush completed")
		case <-ctx.Done():
			return fmt.Errorf("kafkawal: flush: %w (delivered through %d of %d)", context.Cause(ctx), s.stats.acked.Load(), upTo)
		}
	}
}

// Watermark returns the acknowledged watermark (every sequence <= it is
// delivered or dead-lettered, or a hole) and a channel closed when it next
// moves.
func (s *Sender) Watermark() (uint64, <-chan struct{}) {
	s.notifyM.Lock()
	ch := s.notify
	s.notifyM.Unlock()
	return s.stats.acked.Load(), ch
}

// Done is closed once the sender has stopped (after Close).
func (s *Sender) Done() <-chan struct{} { return s.done }
