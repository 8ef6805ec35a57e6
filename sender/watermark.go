package sender

import (
	"context"
	"errors"
	"fmt"
)

// published makes the new watermark visible to Stats and Flush.
func (s *Sender) published() {
	s.stats.inFlight.Store(int64(s.win.produced))
	s.stats.oldest.Store(s.win.oldest())
	if acked := s.win.low - 1; acked != s.stats.acked.Load() {
		s.stats.acked.Store(acked)
		s.notifyM.Lock()
		close(s.notify)
		s.notify = make(chan struct{})
		s.notifyM.Unlock()
	}
}

// persist stores the watermark as the WAL cursor.
func (s *Sender) persist() {
	acked := s.win.low - 1
	if acked <= s.persisted {
		return
	}
	if err := s.wal.SetCursor(acked); err != nil {
		s.lg.Error().Err(err).Uint64("cursor", acked).Msg("sender: cannot persist the cursor")
		return
	}
	s.persisted = acked
}

// Flush waits until every sequence <= upTo is delivered or dead-lettered,
// or ctx ends.
func (s *Sender) Flush(ctx context.Context, upTo uint64) error {
	for {
		s.notifyM.Lock()
		ch := s.notify
		s.notifyM.Unlock()
		if s.stats.acked.Load() >= upTo {
			return nil
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
