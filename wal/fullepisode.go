package wal

import (
	"errors"
	"time"
)

// The log at its cap: one warning when appends start being refused (or
// made to wait), one line when one fits again, and a count of the appends
// answered ErrFull, so that an operator sees the episode and its cost
// without a line per refused append.

// watchFull makes the disk cap report its episodes to the log's logger.
func (l *Log) watchFull() {
	l.disk.onFull = l.logFull
	l.disk.onRoom = l.logRoom
}

func (l *Log) logFull() {
	st := l.Stats()
	ev := l.log.Warn().Int64("disk_bytes", st.DiskBytes).Int64("max_disk_bytes", st.MaxDiskBytes).
		Int64("backlog_bytes", st.BacklogBytes).Uint64("backlog_records", backlog(st))
	if age, ok := l.oldestAge(); ok {
		ev = ev.Float64("oldest_record_age_seconds", age.Seconds())
	}
	if l.opts.FullPolicy == Reject {
		ev.Msg("wal: full at MaxDiskBytes; appends are refused with ErrFull until delivery frees a segment")
	} else {
		ev.Msg("wal: full at MaxDiskBytes; appends wait for room (or their context) until delivery frees a segment")
	}
}

func (l *Log) logRoom(ep episode) {
	st := l.Stats()
	l.log.Info().Float64("full_seconds", time.Since(ep.since).Seconds()).Uint64("refused", ep.refused).
		Int64("disk_bytes", st.DiskBytes).Int64("max_disk_bytes", st.MaxDiskBytes).
		Msg("wal: room again; appends accepted")
}

func backlog(st Stats) uint64 {
	if base := max(st.Cursor, st.FirstSeq-1); st.LastSeq > base {
		return st.LastSeq - base
	}
	return 0
}

// oldestAge reads the oldest record not yet acknowledged and returns how
// long ago it was appended (its timestamp, which Append sets when the
// application did not), false when there is none or it cannot be read.
func (l *Log) oldestAge() (time.Duration, bool) {
	seq := max(l.acked.Load()+1, l.first.Load())
	if seq > l.visible.Load() {
		return 0, false
	}
	ents, err := l.Read(seq, make([]Entry, 0, 1), 1)
	if err != nil || len(ents) == 0 || ents[0].Hole || ents[0].Record.Timestamp.IsZero() {
		return 0, false
	}
	return time.Since(ents[0].Record.Timestamp), true
}

// countFull counts an append answered with err when err matches ErrFull
// for lack of disk space (a *WriteError): those at the cap are counted by
// the disk cap itself.
func (l *Log) countFull(r *appendReq, err error) {
	var we *WriteError
	if errors.As(err, &we) && errors.Is(err, ErrFull) {
		l.writeFull.Add(uint64(max(len(r.slots), 1)))
	}
}
