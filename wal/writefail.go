package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// fail makes err sticky and fails every written but unsynced append. After
// a failed write tidwall's in-memory index may be ahead of its file, so the
// tidwall log is not used again until repair has cut the files back to the
// last good state and reopened it.
func (l *Log) fail(err error, op string) {
	werr := &WriteError{Op: op, Err: err}
	l.log.Error().Err(err).Str("op", op).Uint64("last_good_seq", l.w.good.last).
		Msg("wal: write failed; appends fail until the tail is repaired")
	l.w.failed = werr
	l.w.failedAt = time.Now()
	for _, r := range l.w.unsynced {
		l.answer(r, werr)
	}
	clear(l.w.unsynced)
	l.w.unsynced = l.w.unsynced[:0]
}

// tryRepair restores the files to the last good state (dropping whatever the
// failed batch left: bytes past the good tail size, segment files it
// created), reopens tidwall and checks it agrees. It runs at most once per
// RetryAfterError.
func (l *Log) tryRepair() bool {
	if l.w.inflight != nil || time.Now().Sub(l.w.failedAt) < l.opts.RetryAfterError {
		return false
	}
	l.tlMu.Lock()
	err := l.repairLocked()
	l.tlMu.Unlock()
	if err != nil {
		l.w.failed = &WriteError{Op: "repair", Err: err}
		l.w.failedAt = time.Now()
		l.log.Error().Err(err).Msg("wal: repair after write failure failed; will retry")
		return false
	}
	l.log.Warn().Uint64("last_seq", l.w.last).Msg("wal: tail repaired after write failure; accepting appends")
	l.w.failed = nil
	return true
}

func (l *Log) repairLocked() error {
	if l.tl != nil {
		_ = closeTidwall(l.tl) // may fail again; the files are fixed below
		l.tl = nil
	}
	l.w.closeTail()
	// Roll the view back to the last good batch; make the files match it.
	g := l.w.good
	for len(l.w.segs.segs) > 1 && l.w.segs.tail().First > g.tailFirst {
		l.w.segs.segs = l.w.segs.segs[:len(l.w.segs.segs)-1]
	}
	tail := l.w.segs.tail()
	if tail.First != g.tailFirst {
		return fmt.Errorf("last good tail segment %d is gone", g.tailFirst)
	}
	tail.Bytes = g.tailBytes
	l.w.last = g.last
	l.segsChanged()
	des, err := os.ReadDir(l.segDir)
	if err != nil {
		return err
	}
	for _, de := range des {
		first, perr := strconv.ParseUint(de.Name(), 10, 64)
		if perr == nil && len(de.Name()) == 20 && first > tail.First {
			if err := os.Remove(filepath.Join(l.segDir, de.Name())); err != nil {
				return err
			}
		}
	}
	f, err := os.OpenFile(tail.Path, os.O_WRONLY, l.opts.FileMode)
	if err != nil {
		return err
	}
	err = f.Truncate(tail.Bytes)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := SyncDir(l.segDir); err != nil {
		return err
	}
	return l.reopenChecked("repair")
}

// errNoLog is returned by readers while a failed repair left no open log.
var errNoLog = errors.New("kafkawal: wal unavailable after a failed repair")
