package wal

import (
	"errors"
	"fmt"
	twal "github.com/tidwall/wal"
	"os"
)

// maybeTruncate deletes the sealed segments that lie wholly at or below the
// persisted cursor, oldest first, so that a crash part-way leaves a
// contiguous log. It deletes files instead of calling tidwall's
// TruncateFront, which copies the rest of a segment on every call: deletion
// writes nothing, so bytes written per byte appended stay at 1. tidwall is
// closed and reopened around the deletion so its segment list stays true.
func (l *Log) maybeTruncate() {
	if l.w.failed != nil || l.w.inflight != nil || len(l.w.unsynced) > 0 {
		return // never close tidwall under an fsync in flight
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
	if !urgent && nowFunc().Sub(l.w.lastTrunc) < truncateEvery {
		return
	}
	l.w.lastTrunc = nowFunc()

	l.tlMu.Lock()
	defer l.tlMu.Unlock()
	if err := l.tl.Close(); err != nil && !errors.Is(err, twal.ErrClosed) {
		l.fail(fmt.Errorf("close before truncation: %w", err), "truncate")
		l.tl = nil
		return
	}
	l.tl = nil
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
	l.w.markGood()
	l.segCount.Store(int64(len(l.w.segs.segs)))
	if oerr := l.openTidwall(); err == nil {
		err = oerr
	}
	if err == nil {
		err = l.w.openTail()
	}
	if deleted > 0 {
		l.first.Store(l.w.segs.segs[0].First)
		l.disk.free(freed)
		l.log.Debug().Int("segments", deleted).Int64("bytes", freed).Uint64("cursor", acked).
			Msg("wal: deleted acknowledged segments")
	}
	if err != nil {
		l.fail(fmt.Errorf("truncate: %w", err), "truncate")
	}
}
