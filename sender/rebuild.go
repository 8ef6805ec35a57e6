package sender

import (
	"errors"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func (s *Sender) newProducer() error {
	cfg := kafka.ConfigMap{}
	for k, v := range s.kcfg {
		cfg[k] = v
	}
	p, err := kafka.NewProducer(&cfg)
	if err != nil {
		return configError(s.kcfg, err)
	}
	s.p, s.events, s.logs = p, p.Events(), p.Logs()
	s.builtAt = time.Now()
	s.meta = startMeta(p)
	s.rt.restartFetches()
	return nil
}

// startRebuild purges librdkafka and waits (bounded) for the purged
// records' reports; checkRebuild then replaces the producer.
func (s *Sender) startRebuild(cause error) {
	if s.mode == rebuilding {
		return
	}
	s.mode = rebuilding
	now := time.Now()
	s.rebuildBy = now.Add(purgeWait)
	s.rebuildPaced(now)
	key := cause.Error()
	var kerr kafka.Error
	if errors.As(cause, &kerr) {
		key = kerr.Code().String()
	}
	if ok, held := s.rebuildLog.allow(key, now); ok {
		flying, _ := s.inFlight()
		ev := s.lg.Error().Err(cause).Uint64("from_seq", s.watermark()+1).Int("in_flight", flying)
		if held > 0 {
			ev = ev.Int("suppressed", held)
		}
		if s.rebuildPause > 0 {
			ev = ev.Dur("pause", s.rebuildPause)
		}
		ev.Msg("sender: fatal producer error; rebuilding the producer and re-sending unacknowledged records")
	}
	s.purge()
}

// purge takes back everything librdkafka holds, queued or in flight: each
// record comes back as a failure report. Without a producer (closed, and
// none rebuilt yet) there is nothing to take back.
func (s *Sender) purge() {
	if s.p == nil {
		return
	}
	if err := s.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking); err != nil {
		s.lg.Warn().Err(err).Msg("sender: purge failed")
	}
}

func (s *Sender) checkRebuild() {
	now := time.Now()
	flying, _ := s.inFlight()
	if s.mode != rebuilding || (flying > 0 && now.Before(s.rebuildBy)) || now.Before(s.rebuildNotBefore) {
		return
	}
	if s.tx != nil && (s.tx.calling || time.Now().Before(s.tx.rebuildAfter)) {
		return // a call still uses the old producer, or the backoff runs
	}
	if flying > 0 {
		s.lg.Warn().Int("in_flight", flying).Msg("sender: purged records did not report in time; re-sending them")
		for seq := s.win.low; seq < s.win.next; seq++ {
			s.win.resolve(seq, false)
		}
		for _, l := range s.lanes {
			for i := range l.owned {
				if o := l.owned[i]; o.state == inFlight {
					s.resolve(l, o.seq, false)
				}
			}
		}
	}
	s.closeProducer()
	if err := s.newProducer(); err != nil {
		s.lg.Error().Err(err).Msg("sender: cannot create a producer; retrying")
		s.rebuildBy = time.Now().Add(maxBackoff)
		return
	}
	s.stats.rebuilds.Add(1)
	if s.tx != nil {
		s.txnAbortedAll()
	}
	s.rewind()
	s.closing = false
	s.mode = normal
	if s.tx != nil {
		s.txnStartInit()
	}
}

// fatalError handles a fatal error of the producer: a rebuild, or under
// exactly-once delivery, when it is a fencing, maybe the end (txn.go).
func (s *Sender) fatalError(err error) {
	err = s.fatalCause(err)
	if s.tx != nil {
		switch {
		case s.tx.phase == txnStopped:
			return
		case classifyTxn(err) == txnFenced:
			s.txnFenced(err)
			return
		}
	}
	s.startRebuild(err)
}

// closeProducer closes librdkafka while draining its channels: Close waits
// for the poller, which may be blocked sending an event. From the start of
// that Close on, nothing may call the producer: the sender holds none (nil
// channels, so that the run loop does not spin on closed ones) until
// newProducer, and the reports drained here are settled, never handled.
func (s *Sender) closeProducer() {
	if s.p == nil {
		return // closed before, and no new one could be made since
	}
	s.meta.close()
	p, events, logs := s.p, s.events, s.logs
	s.p, s.events, s.logs = nil, nil, nil
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	for {
		select {
		case <-closed:
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if m, isMsg := ev.(*kafka.Message); isMsg {
				s.settle(m) // a late success still counts
			}
		case lg, ok := <-logs:
			if !ok {
				logs = nil
				continue
			}
			s.logLibrdkafka(lg)
		}
	}
}

// fatalCause returns the error that made the producer fatal when err is a
// delivery report's bare "Local: Fatal error" (ERR__FATAL): librdkafka
// keeps the cause, which the error event carries too. Resolved, a rebuild
// reads the same whichever of the two came first: in its log line, in the
// rebuild log's limiter (per error code, so a report's code and the
// event's counted as two causes and logged twice), and for fencing.
func (s *Sender) fatalCause(err error) error {
	var kerr kafka.Error
	if s.p == nil || !errors.As(err, &kerr) || kerr.Code() != kafka.ErrFatal {
		return err
	}
	if cause := s.p.GetFatalError(); cause != nil {
		return cause
	}
	return err
}
