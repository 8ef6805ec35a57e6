package sender

import (
	"time"

	"github.com/rs/zerolog"
)

// OutageSummaryEvery is how often the sender logs a summary while records
// wait undelivered: while librdkafka reports every broker down, or while
// records are in flight and nothing has been delivered for that long (a
// silent network, which librdkafka notices only after its socket
// timeouts).
const OutageSummaryEvery = time.Minute

// outageLog is the sender's state for the outage summaries; owned by run.
type outageLog struct {
	delivered  uint64    // Stats.Delivered at the last tick
	progressAt time.Time // when a delivery was last seen (or the sender started)
	due        time.Time // next summary; zero: no stretch without delivery
}

// summarize runs at every cursor tick and logs a summary when one is due.
func (s *Sender) summarize(now time.Time) {
	o := &s.outage
	if d := s.stats.delivered.Load(); d != o.delivered || o.progressAt.IsZero() {
		o.delivered, o.progressAt = d, now
	}
	down := s.stats.unreachable.Load()
	stalled := s.win.produced > 0 && now.Sub(o.progressAt) >= OutageSummaryEvery
	if !down && !stalled {
		o.due = time.Time{}
		return
	}
	if o.due.IsZero() {
		// A broker outage's start has its own warning: its first summary
		// comes an interval later. A stall is found an interval in.
		o.due = now
		if down {
			o.due = s.outageSince.Add(OutageSummaryEvery)
		}
	}
	if now.Before(o.due) {
		return
	}
	o.due = now.Add(OutageSummaryEvery)
	st := s.wal.Stats()
	ev := s.lg.Warn().Bool("brokers_down", down).
		Float64("undelivered_seconds", now.Sub(o.progressAt).Seconds())
	if down {
		ev = ev.Float64("outage_seconds", now.Sub(s.outageSince).Seconds())
	}
	ev = ev.Uint64("backlog_records", s.backlogRecords(st.LastSeq)).Int64("backlog_bytes", st.BacklogBytes).
		Int64("disk_bytes", st.DiskBytes).Int64("max_disk_bytes", st.MaxDiskBytes)
	if st.MaxDiskBytes > 0 {
		ev = ev.Float64("disk_used_percent", float64(100*st.DiskBytes/st.MaxDiskBytes))
	}
	ev = oldestField(ev, s.oldest(), now)
	ev.Msg("sender: records still undelivered; they wait in the WAL")
}

// backlogRecords is the number of records appended and not yet
// acknowledged.
func (s *Sender) backlogRecords(last uint64) uint64 {
	if w := s.watermark(); last > w {
		return last - w
	}
	return 0
}

// oldestField adds the age of the oldest record in flight (its timestamp:
// when it was appended, unless the application set one), if any.
func oldestField(ev *zerolog.Event, oldest int64, now time.Time) *zerolog.Event {
	if oldest == 0 {
		return ev
	}
	return ev.Float64("oldest_unacknowledged_age_seconds", now.Sub(time.Unix(0, oldest)).Seconds())
}
