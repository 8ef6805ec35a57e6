package wal

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// The synced watermark is the last sequence known to be fsync'd. It is
// kept in the cursor slots (version 2, cursor.go) so that recovery can tell
// the damage a power loss leaves, which lies after the last completed fsync
// and is repaired in every durability mode, from damage in data that was
// durable (decay), which CorruptionPolicy decides.
//
// It is stored with every cursor store, on its own every noteEvery while it
// advances without one (an outage), at Open (after an fsync of the tail,
// so that everything the repaired log holds is synced) and at Close. A
// slot's watermark can only lag the truth, never lead it: it is written
// after the fsync it names completed. A lag widens what repair treats as
// unsynced by what was fsync'd since (at most noteEvery of appends while the
// cursor does not move, less while it does).
const noteEvery = time.Second

// markSynced records that every sequence <= seq is fsync'd.
func (l *Log) markSynced(seq uint64) {
	for {
		old := l.syncedSeq.Load()
		if seq <= old || l.syncedSeq.CompareAndSwap(old, seq) {
			return
		}
	}
}

// storeCursorLocked persists acked with the current watermark. The caller
// holds curMu.
func (l *Log) storeCursorLocked(acked uint64) error {
	synced := l.syncedSeq.Load()
	if err := l.cur.store(acked, synced); err != nil {
		return err
	}
	l.noted = synced
	return nil
}

// noteLoop stores the watermark when it advanced without a cursor store,
// until Close starts.
func (l *Log) noteLoop() {
	defer close(l.noteDone)
	t := time.NewTicker(noteEvery)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		if err := l.noteSynced(); err != nil {
			l.log.Warn().Err(err).Uint64("synced_seq", l.syncedSeq.Load()).
				Msg("wal: cannot store the synced watermark; damage after the stored one counts as unsynced")
		}
	}
}

// noteSynced stores the watermark if it advanced since it was last stored.
func (l *Log) noteSynced() error {
	l.curMu.Lock()
	defer l.curMu.Unlock()
	if l.syncedSeq.Load() <= l.noted {
		return nil
	}
	return l.storeCursorLocked(l.acked.Load())
}

// syncAtOpen makes everything the repaired log holds durable (a crashed
// process may have left it in the page cache only) and stores the cursor,
// lowered if it was clamped, with the watermark at the last record: before
// any append, so that a later power loss is judged against this log, not
// against the one before the repair, and a lowered cursor is on disk
// before records reuse the sequences it no longer covers
// (TestCursorClampIsPersisted).
func (l *Log) syncAtOpen(acked, last uint64) error {
	// Not through l.fdatasync: its hooks and its histogram are the
	// writer's.
	if err := unix.Fdatasync(int(l.w.tail.Fd())); err != nil {
		return fmt.Errorf("kafkawal: sync %s: %w", l.w.tail.Name(), err)
	}
	l.markSynced(last)
	l.curMu.Lock()
	defer l.curMu.Unlock()
	return l.storeCursorLocked(acked)
}
