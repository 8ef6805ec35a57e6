package sender

import (
	"context"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// shutdown purges what librdkafka still holds (it is replayed from the WAL
// by the next Open), collects every report it can, closes the producer and
// persists the final cursor.
func (s *Sender) shutdown() {
	if s.tx != nil {
		s.txnShutdown()
	}
	if n, _ := s.inFlight(); n > 0 {
		s.purge()
		deadline := time.NewTimer(closePurgeWait)
		defer deadline.Stop()
	collect:
		for n > 0 {
			select {
			case ev := <-s.events:
				if m, ok := ev.(*kafka.Message); ok {
					s.settle(m)
				}
				n, _ = s.inFlight()
			case lg := <-s.logs:
				s.logLibrdkafka(lg)
			case <-deadline.C:
				break collect
			}
		}
	}
	s.closeProducer()
	s.published()
	s.unpark()
	s.persistAt = time.Time{} // the last chance, whatever the backoff
	s.persist()
}

// Close delivers what it can until everything up to upTo is delivered or
// ctx ends, then stops: librdkafka is purged and closed, the cursor
// persisted. Whatever is left stays in the WAL for the next Open.
func (s *Sender) Close(ctx context.Context, upTo uint64) error {
	select {
	case s.closeCh <- closeReq{ctx: ctx, target: upTo}:
	case <-s.done:
	}
	<-s.done
	if err := s.stopErr(); err != nil {
		return fmt.Errorf("kafkawal: close: %w: committed through %d of %d; the rest stays in the WAL", err, s.stats.acked.Load(), upTo)
	}
	if err := s.waitErr(); err != nil && s.stats.acked.Load() < upTo {
		return fmt.Errorf("kafkawal: close: delivery waits: %w: committed through %d of %d; the rest stays in the WAL", err, s.stats.acked.Load(), upTo)
	}
	if acked := s.stats.acked.Load(); acked < upTo {
		return fmt.Errorf("kafkawal: close: %w: delivered through %d of %d; the rest stays in the WAL", context.Cause(ctx), acked, upTo)
	}
	return nil
}
