package sender

import (
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"
)

func (s *Sender) brokerError(e kafka.Error) {
	if e.IsFatal() {
		s.startRebuild(e)
		return
	}
	switch e.Code() {
	case kafka.ErrAllBrokersDown:
		if !s.stats.unreachable.Swap(true) {
			s.outageSince = time.Now()
			st := s.wal.Stats()
			ev := s.lg.Warn().Str("err", e.String()).Uint64("backlog_records", s.backlogRecords(st.LastSeq)).
				Int64("backlog_bytes", st.BacklogBytes).Int64("disk_bytes", st.DiskBytes).Int64("max_disk_bytes", st.MaxDiskBytes)
			oldestField(ev, s.win.oldest(), s.outageSince).Msg("sender: Kafka unreachable; records wait in the WAL")
		}
	default:
		s.lg.Debug().Str("err", e.String()).Msg("sender: librdkafka error event")
	}
}

func (s *Sender) reachable() {
	if s.stats.unreachable.Swap(false) {
		s.rt.retryMetaNow()
		st := s.wal.Stats()
		s.lg.Info().Float64("outage_seconds", time.Since(s.outageSince).Seconds()).
			Uint64("backlog_records", s.backlogRecords(st.LastSeq)).Int64("backlog_bytes", st.BacklogBytes).
			Msg("sender: Kafka reachable again; draining the backlog")
	}
}

func (s *Sender) logLibrdkafka(e kafka.LogEvent) {
	lvl := zerolog.DebugLevel
	switch {
	case e.Level <= 3:
		lvl = zerolog.ErrorLevel
	case e.Level == 4:
		lvl = zerolog.WarnLevel
	case e.Level == 5:
		lvl = zerolog.InfoLevel
	}
	s.lg.WithLevel(lvl).Str("source", "librdkafka").Str("tag", e.Tag).Msg(e.Message)
}
