package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	twal "github.com/tidwall/wal"
)

// appendReq is one Append call waiting for the writer.
type appendReq struct {
	entries [][]byte
	framed  []int64 // on-disk size of each entry
	bytes   int64   // sum of framed
	first   uint64  // result: sequence of entries[0]
	err     error   // result
	done    chan struct{}
}

// writer is the state owned by the writer goroutine (run).
type writer struct {
	segs      segTracker
	last      uint64   // last sequence written successfully
	tail      *os.File // our own descriptor of the tail segment, for fsync
	dirty     bool     // written since the last fsync
	dirDirty  bool     // a segment file was created since the last directory fsync
	batch     twal.Batch
	failed    error // sticky after a failed write, until repair succeeds
	failedAt  time.Time
	lastTrunc time.Time
}

func (w *writer) openTail() error {
	w.closeTail()
	f, err := os.Open(w.segs.tail().Path)
	if err != nil {
		return fmt.Errorf("kafkawal: open tail segment: %w", err)
	}
	w.tail = f
	return nil
}

func (w *writer) closeTail() {
	if w.tail != nil {
		w.tail.Close()
		w.tail = nil
	}
}

// truncateEvery spaces truncations out when there is no space pressure: each
// one closes and reopens the tidwall log, which re-reads the tail segment.
const truncateEvery = time.Second

// run is the writer goroutine: it owns every write to the segment files,
// every fsync of them and every deletion. Appenders queue requests; the
// writer takes all that are waiting (up to MaxBatchBytes), writes them with
// one WriteBatch and one fsync, then answers each (group commit).
func (l *Log) run() {
	defer close(l.writerDone)
	var syncTick <-chan time.Time
	if l.opts.Sync == SyncPeriodic {
		t := time.NewTicker(l.opts.SyncInterval)
		defer t.Stop()
		syncTick = t.C
	}
	house := time.NewTicker(truncateEvery)
	defer house.Stop()
	batch := make([]*appendReq, 0, 256)
	for {
		select {
		case r, ok := <-l.reqs:
			if !ok {
				l.finish()
				return
			}
			batch = append(batch[:0], r)
			size := r.bytes
			open := true
		drain:
			for size < int64(l.opts.MaxBatchBytes) {
				select {
				case r, ok := <-l.reqs:
					if !ok {
						open = false
						break drain
					}
					batch = append(batch, r)
					size += r.bytes
				default:
					break drain
				}
			}
			l.write(batch)
			clear(batch)
			if !open {
				l.finish()
				return
			}
		case <-syncTick:
			if l.w.failed == nil && (l.w.dirty || l.w.dirDirty) {
				if err := l.syncTail(); err != nil {
					l.fail(err, "fsync", l.w.segs.snapshot())
				}
			}
		case <-l.truncCh:
			l.maybeTruncate()
		case <-house.C:
			l.maybeTruncate()
		}
	}
}

// finish syncs what was written, whatever the mode, before Close returns.
func (l *Log) finish() {
	if l.w.failed == nil && (l.w.dirty || l.w.dirDirty) {
		if err := l.syncTail(); err != nil {
			l.log.Error().Err(err).Msg("wal: final fsync failed")
		}
	}
}

func (l *Log) write(batch []*appendReq) {
	if l.w.failed != nil && !l.tryRepair() {
		for _, r := range batch {
			l.answer(r, l.w.failed)
		}
		return
	}
	seq := l.w.last + 1
	var framed []int64
	for _, r := range batch {
		r.first = seq
		for i, e := range r.entries {
			l.w.batch.Write(seq, e)
			framed = append(framed, r.framed[i])
			seq++
		}
	}
	before := l.w.segs.snapshot()
	created := l.w.segs.apply(l.w.last+1, framed)

	l.tlMu.RLock()
	err := l.tl.WriteBatch(&l.w.batch)
	l.tlMu.RUnlock()
	l.w.batch.Clear()
	op := "write"
	if err == nil && created > 0 {
		l.w.dirDirty = true
		l.segCount.Store(int64(len(l.w.segs.segs)))
		err = l.w.openTail() // also proves the predicted file exists
	}
	if err == nil {
		err = l.checkTail()
	}
	if err == nil {
		l.w.dirty = true
		if l.opts.Sync == SyncAlways {
			op = "fsync"
			err = l.syncTail()
		}
	}
	if err != nil {
		l.fail(err, op, before)
		for _, r := range batch {
			l.answer(r, l.w.failed)
		}
		return
	}
	l.w.last = seq - 1
	l.visible.Store(l.w.last)
	for _, r := range batch {
		l.disk.commit(r.bytes)
		close(r.done)
	}
	select {
	case l.appended <- struct{}{}:
	default:
	}
}

// checkTail proves the segment tracker still agrees with tidwall: the file
// it calls the tail has exactly the bytes it predicts. A disagreement would
// mean fsyncing the wrong file, so it fails the write instead.
func (l *Log) checkTail() error {
	fi, err := l.w.tail.Stat()
	if err != nil {
		return err
	}
	if want := l.w.segs.tail().Bytes; fi.Size() != want {
		return fmt.Errorf("segment tracking diverged: %s has %d bytes, expected %d", fi.Name(), fi.Size(), want)
	}
	return nil
}

func (l *Log) answer(r *appendReq, err error) {
	l.disk.release(r.bytes)
	r.err = err
	close(r.done)
}

// syncTail makes everything written durable: the tail segment's data (the
// sealed ones were fsync'd by tidwall when it rotated) and, if a segment was
// created, the directory entry. It uses the writer's own descriptor so that
// readers are not held behind tidwall's lock during the fsync.
func (l *Log) syncTail() error {
	if l.w.dirty {
		if err := syscall.Fdatasync(int(l.w.tail.Fd())); err != nil {
			return fmt.Errorf("%s: %w", l.w.tail.Name(), err)
		}
		l.w.dirty = false
	}
	if l.w.dirDirty {
		if err := syncDir(l.segDir); err != nil {
			return fmt.Errorf("%s: %w", l.segDir, err)
		}
		l.w.dirDirty = false
	}
	return nil
}

// fail makes err sticky and rolls the segment view back to before the
// failed batch; repair later makes the files match that view. After a
// failed write tidwall's in-memory index may be ahead of its file, so the
// tidwall log is not used again until it has been reopened.
func (l *Log) fail(err error, op string, before []SegmentFile) {
	werr := &WriteError{Op: op, Err: err}
	l.log.Error().Err(err).Str("op", op).Uint64("last_seq", l.w.last).
		Msg("wal: write failed; appends fail until the tail is repaired")
	l.w.failed = werr
	l.w.failedAt = nowFunc()
	l.w.segs.segs = before
	l.segCount.Store(int64(len(before)))
}

// tryRepair restores the files to the last good state (dropping whatever the
// failed batch left: bytes past the good tail size, segment files it
// created), reopens tidwall and checks it agrees. It runs at most once per
// RetryAfterError.
func (l *Log) tryRepair() bool {
	if nowFunc().Sub(l.w.failedAt) < l.opts.RetryAfterError {
		return false
	}
	l.tlMu.Lock()
	err := l.repairLocked()
	l.tlMu.Unlock()
	if err != nil {
		l.w.failed = &WriteError{Op: "repair", Err: err}
		l.w.failedAt = nowFunc()
		l.log.Error().Err(err).Msg("wal: repair after write failure failed; will retry")
		return false
	}
	l.log.Warn().Uint64("last_seq", l.w.last).Msg("wal: tail repaired after write failure; accepting appends")
	l.w.failed = nil
	return true
}

func (l *Log) repairLocked() error {
	if l.tl != nil {
		_ = l.tl.Close() // may fail again; the files are fixed below
		l.tl = nil
	}
	l.w.closeTail()
	tail := l.w.segs.tail()
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
	if err := syncDir(l.segDir); err != nil {
		return err
	}
	if err := l.openTidwall(); err != nil {
		return err
	}
	if last, _ := l.tl.LastIndex(); last != l.w.last {
		return fmt.Errorf("after repair the log ends at %d, want %d", last, l.w.last)
	}
	return l.w.openTail()
}

// errNoLog is returned by readers while a failed repair left no open log.
var errNoLog = errors.New("kafkawal: wal unavailable after a failed repair")
