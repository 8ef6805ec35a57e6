package wal

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func (w *writer) openTail() error {
	if w.tail != nil {
		// An fsync in flight may still use it; close it when none is.
		w.retired = append(w.retired, w.tail)
		w.tail = nil
	}
	w.closeRetired()
	f, err := os.Open(w.segs.tail().Path)
	if err != nil {
		return fmt.Errorf("kafkawal: open tail segment: %w", err)
	}
	w.tail = f
	w.kicked = 0
	w.sealKicked = false
	return nil
}

// writebackChunk is how many bytes of the tail may be written and not yet
// on their way to the disk, under SyncPeriodic and SyncNever.
const writebackChunk = 1 << 20

// startWriteback asks the kernel to start writing the tail to the disk once
// writebackChunk bytes were written since it last did (sync_file_range
// with SYNC_FILE_RANGE_WRITE, as RocksDB's bytes_per_sync does). It does
// not wait and promises nothing about durability: it only spreads the
// writing over time, so that the fsyncs that do make records durable (every
// SyncInterval, and tidwall's when it seals a segment, which hold the
// writer and so every appender) find at most about writebackChunk left to
// write instead of up to a whole segment. An I/O error of that writeback
// is kept by the kernel and returned by the next fdatasync of the file,
// which fails the log as any fsync error does; a refusal to start it
// changes nothing.
func (w *writer) startWriteback() {
	// Whole pages only: a partly filled last page written back now would
	// be written again once the next batch fills it.
	end := w.segs.tail().Bytes &^ (4<<10 - 1)
	if end-w.kicked < writebackChunk {
		return
	}
	_ = unix.SyncFileRange(int(w.tail.Fd()), w.kicked, end-w.kicked, unix.SYNC_FILE_RANGE_WRITE)
	w.kicked = end
}

func (w *writer) closeRetired() {
	if w.inflight != nil {
		return
	}
	for _, f := range w.retired {
		f.Close()
	}
	w.retired = w.retired[:0]
}

func (w *writer) closeTail() {
	if w.tail != nil {
		w.tail.Close()
		w.tail = nil
	}
	w.closeRetired()
}

// syncTail makes everything written durable: the tail segment's data (the
// sealed ones were fsync'd by tidwall when it rotated) and, if a segment was
// created, the directory entry. It uses the writer's own descriptor so that
// readers are not held behind tidwall's lock during the fsync.
func (l *Log) syncTail() error {
	if l.w.dirty {
		if err := l.syncData(); err != nil {
			return err
		}
	}
	if l.w.dirDirty {
		if err := SyncDir(l.segDir); err != nil {
			return fmt.Errorf("%s: %w", l.segDir, err)
		}
		l.w.dirDirty = false
	}
	return nil
}

// syncData fdatasyncs the tail segment through the writer's own
// descriptor, outside tidwall's lock.
func (l *Log) syncData() error {
	if err := l.fdatasync(l.w.tail); err != nil {
		return fmt.Errorf("%s: %w", l.w.tail.Name(), err)
	}
	l.w.dirty = false
	return nil
}

// fdatasync is every fdatasync of the tail segment (Options.hooks may
// replace it in tests), timed for Options.ObserveFsync.
func (l *Log) fdatasync(f *os.File) error {
	start := time.Now()
	defer func() { l.opts.ObserveFsync(time.Since(start)) }()
	if h := l.opts.hooks; h != nil && h.fdatasync != nil {
		return h.fdatasync(f)
	}
	return unix.Fdatasync(int(f.Fd()))
}
