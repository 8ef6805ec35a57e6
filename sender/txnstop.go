package sender

import (
	"errors"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// When exactly-once delivery cannot go on (txn.go): a fencing, a fatal
// error that needs a new producer, an operator's problem (no
// authorization, a checkpoint that cannot be trusted), and shutdown.

// authorization reports whether err is Kafka refusing this principal.
func authorization(err error) bool {
	var ke kafka.Error
	if !errors.As(err, &ke) {
		return false
	}
	switch ke.Code() {
	case kafka.ErrTransactionalIDAuthorizationFailed, kafka.ErrClusterAuthorizationFailed, kafka.ErrTopicAuthorizationFailed:
		return true
	}
	return false
}

// txnFenced: the producer was fenced, by a newer instance or, for a
// transaction older than transaction.timeout.ms, maybe by the
// coordinator's timeout.
func (s *Sender) txnFenced(err error) {
	t := s.tx
	open := t.phase == txnOpen || t.phase == txnCommitting || t.phase == txnAborting
	if open && time.Since(t.begun) >= t.timeout {
		s.lg.Warn().Err(err).Dur("age", time.Since(t.begun)).
			Msg("sender: transaction older than transaction.timeout.ms ended on the broker; replacing the producer")
		s.txnFatal(err)
		return
	}
	s.txnStop(fmt.Errorf("%w: %v", ErrFenced, err))
}

// txnFatal replaces the producer (rebuild.go); the new one starts with
// InitTransactions and a checkpoint read that checks it is still ours.
func (s *Sender) txnFatal(err error) {
	s.tx.rebuildAfter = time.Now().Add(s.backoff)
	s.backoff = min(2*s.backoff, maxBackoff)
	s.startRebuild(err)
}

// txnStop stops delivery for good: this producer was fenced. Everything
// not committed stays in the WAL, and the cursor stays at the committed
// position.
func (s *Sender) txnStop(err error) {
	t := s.tx
	if t.phase == txnStopped {
		return
	}
	t.phase = txnStopped
	t.stats.fenced.Store(errors.Is(err, ErrFenced))
	t.stats.stopErr.Store(&err)
	s.lg.Error().Err(err).Str("transactional_id", string(t.store.key)).Uint64("committed_through", s.watermark()).
		Msg("sender: fenced by another producer with the same TransactionalID; delivery stopped for good, records stay in the WAL")
	if err := s.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking); err != nil {
		s.lg.Debug().Err(err).Msg("sender: purge failed")
	}
	s.wakeFlushes()
}

// txnProblem records an unusable checkpoint: delivery waits, the records
// stay in the WAL, and the read is tried again every checkpointRetry.
func (s *Sender) txnProblem(err error) {
	t := s.tx
	msg := err.Error()
	if msg != t.problem {
		s.lg.Error().Err(err).Msg("sender: exactly-once delivery waits for an operator; records stay in the WAL")
	}
	t.problem = msg
	t.stats.problem.Store(&msg)
	s.wakeFlushes()
}

// stopErr is why delivery stopped for good, nil while it goes on.
func (s *Sender) stopErr() error {
	if s.tx == nil {
		return nil
	}
	if p := s.tx.stats.stopErr.Load(); p != nil {
		return *p
	}
	return nil
}

// waitErr is why delivery waits for an operator (an unusable
// checkpoint), nil if it does not.
func (s *Sender) waitErr() error {
	if s.tx == nil {
		return nil
	}
	if p := s.tx.stats.problem.Load(); p != nil {
		return errors.New(*p)
	}
	return nil
}

// txnShutdown ends the transactional side: no new call starts, and the
// one running (at most txnCallTimeout more) is waited for, its result
// applied. The open transaction, if any, is left to the next
// InitTransactions (or the coordinator's timeout) to abort.
func (s *Sender) txnShutdown() {
	t := s.tx
	t.closing = true
	t.cancel()
	for t.calling {
		select {
		case r := <-t.results:
			s.txnOnResult(r)
		case ev := <-s.events:
			s.handle(ev)
		case lg := <-s.logs:
			s.logLibrdkafka(lg)
		}
	}
	t.store.closing.Wait()
}
