package sender

import (
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"
)

func (s *Sender) brokerError(e kafka.Error) {
	auth := authFailure(e.Code(), e.String())
	if auth {
		s.authFailed(e)
	}
	if e.IsFatal() {
		s.fatalError(e)
		return
	}
	switch {
	case auth:
	case e.Code() == kafka.ErrAllBrokersDown:
		if !s.stats.unreachable.Swap(true) {
			// Logged by outageTick if it lasts.
			s.outageSince, s.outageErr, s.outageLogged = time.Now(), e.String(), false
		}
	default:
		s.lg.Debug().Str("err", e.String()).Msg("sender: librdkafka error event")
	}
}

// txnLogTags are librdkafka's log tags for transactional failures.
var txnLogTags = map[string]bool{"TXNERR": true, "FATAL": true, "ADDPARTS": true, "ADDOFFSETS": true, "ENDTXN": true, "GETPID": true}

func (s *Sender) reachable() {
	s.authRecovered()
	if s.stats.unreachable.Swap(false) {
		s.rt.retryMetaNow()
		if !s.outageLogged {
			return // too short to have been logged: no end either
		}
		st := s.wal.Stats()
		s.lg.Info().Float64("outage_seconds", time.Since(s.outageSince).Seconds()).
			Uint64("backlog_records", s.backlogRecords(st.LastSeq)).Int64("backlog_bytes", st.BacklogBytes).
			Msg("sender: Kafka reachable again; draining the backlog")
	}
}

func (s *Sender) logLibrdkafka(e kafka.LogEvent) {
	if s.tx != nil && e.Level <= 3 && txnLogTags[e.Tag] {
		// Under exactly-once every failure of a transaction reaches the
		// sender through the API too, and it says what the failure means
		// in a line of its own (an abort, a fencing); librdkafka's lines
		// about it are detail.
		e.Level = 4
	}
	lvl := zerolog.DebugLevel
	switch {
	case e.Level <= 3:
		lvl = zerolog.ErrorLevel
	case e.Level == 4:
		lvl = zerolog.WarnLevel
	case e.Level == 5:
		lvl = zerolog.InfoLevel
	}
	var held int
	if lvl >= zerolog.WarnLevel {
		if e.Tag == "FAIL" && authFailureLine(e.Message) {
			lvl = zerolog.DebugLevel // the error event says it, once per repeatEvery
		} else {
			var ok bool
			if ok, held = s.rdLines.allow(lineKey(e.Tag, e.Message), time.Now()); !ok {
				return
			}
		}
	}
	ev := s.lg.WithLevel(lvl).Str("source", "librdkafka").Str("tag", e.Tag)
	if held > 0 {
		ev = ev.Int("suppressed", held)
	}
	ev.Msg(e.Message)
}
