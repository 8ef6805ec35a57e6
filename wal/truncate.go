package wal

import (
	"errors"
	"fmt"
	"os"
	"time"

	twal "github.com/tidwall/wal"
)

// maybeTruncate deletes the sealed segments that lie wholly at or below the
// persisted cursor, oldest first, so that a crash part-way leaves a
// contiguous log. It deletes files instead of calling tidwall's
// TruncateFront, which copies the rest of a segment on every call: deletion
// writes nothing, so bytes written per byte appended stay at 1.
//
// tidwall is not told: its segment list keeps the deleted segments' names
// until it is reopened. That is safe because nothing reads below the
// cursor (Read refuses sequences below FirstSeq) and tidwall only ever
// touches the tail file when writing. A reopen re-reads and re-parses the
// tail segment and empties tidwall's read cache, so it happens only once
// staleSegmentsMax deleted segments have accumulated, to keep tidwall's list
// from growing without bound.
func (l *Log) maybeTruncate() {
	l.w.truncDeferred = false
	if l.w.failed != nil {
		return
	}
	if l.w.inflight != nil || len(l.w.unsynced) > 0 {
		l.w.truncDeferred = true // never close tidwall under an fsync in flight
		return
	}
	acked := l.acked.Load()
	segs := l.w.segs.segs
	n := 0
	for n < len(segs)-1 && segs[n+1].First-1 <= acked {
		n++
	}
	if n == 0 {
		l.pressure.Store(false)
		return
	}
	urgent := l.pressure.Swap(false) || l.disk.nearlyFull(l.opts.SegmentBytes)
	if !urgent && time.Now().Sub(l.w.lastTrunc) < truncateEvery {
		return
	}
	l.w.lastTrunc = time.Now()

	// Readers never ask below FirstSeq; raise it before a file goes.
	l.first.Store(segs[n].First)
	var freed int64
	deleted := 0
	var err error
	for _, s := range segs[:n] {
		if err = os.Remove(s.Path); err != nil && !os.IsNotExist(err) {
			break
		}
		err = nil
		freed += s.Bytes
		deleted++
	}
	if err == nil {
		err = SyncDir(l.segDir)
	}
	l.w.segs.segs = append([]SegmentFile(nil), segs[deleted:]...)
	l.first.Store(l.w.segs.segs[0].First)
	l.w.markGood()
	l.segsChanged()
	l.w.stale += deleted
	if deleted > 0 {
		l.disk.free(freed)
		l.log.Debug().Int("segments", deleted).Int64("bytes", freed).Uint64("cursor", acked).
			Msg("wal: deleted acknowledged segments")
	}
	if err == nil && l.w.stale >= staleSegmentsMax {
		err = l.reopenTidwall()
	}
	if err != nil {
		l.fail(fmt.Errorf("truncate: %w", err), "truncate")
	}
}

// staleSegmentsMax is how many deleted segments tidwall may still list
// before maybeTruncate reopens it (a few hundred bytes of memory each).
const staleSegmentsMax = 64

// reopenTidwall closes and reopens tidwall so that its segment list matches
// the files again.
func (l *Log) reopenTidwall() error {
	l.tlMu.Lock()
	defer l.tlMu.Unlock()
	if err := closeTidwall(l.tl); err != nil && !errors.Is(err, twal.ErrClosed) {
		l.tl = nil
		return fmt.Errorf("close before reopen: %w", err)
	}
	l.tl = nil
	return l.reopenChecked("reopen")
}

// reopenChecked opens tidwall (closed by the caller), proves it ends where
// the writer does, and reopens the writer's tail descriptor.
func (l *Log) reopenChecked(after string) error {
	if err := l.openTidwall(); err != nil {
		return err
	}
	l.w.stale = 0
	if last, _ := l.tl.LastIndex(); last != l.w.last {
		return fmt.Errorf("after %s the log ends at %d, want %d", after, last, l.w.last)
	}
	return l.w.openTail()
}
