package wal

import (
	"testing"
	"time"
)

// Under SyncPeriodic and SyncNever the writer starts the tail's writeback
// every writebackChunk bytes, whole pages only, and starts over on each
// new segment.
func TestWritebackStartsEveryChunk(t *testing.T) {
	for _, mode := range []SyncMode{SyncPeriodic, SyncNever, SyncAlways} {
		t.Run(mode.String(), func(t *testing.T) {
			l := openT(t, t.TempDir(), Options{Sync: mode, SegmentBytes: 4 * writebackChunk, SyncInterval: time.Hour})
			val := make([]byte, 1000)
			batch := make([]Record, 100)
			for i := range batch {
				batch[i] = Record{Topic: "t", Value: val}
			}
			for range 6 * writebackChunk / (100 * 1000) { // 1.5 segments
				if _, err := l.Append(bg, batch); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			segs := len(l.w.segs.segs)
			tail := l.w.segs.tail().Bytes
			if segs != 2 {
				t.Fatalf("%d segments, want 2", segs)
			}
			if mode == SyncAlways {
				if l.w.kicked != 0 {
					t.Fatalf("SyncAlways started writeback up to %d; its fsyncs do that", l.w.kicked)
				}
				return
			}
			if k := l.w.kicked; k%(4<<10) != 0 || k > tail || tail-k >= writebackChunk+4<<10 || k == 0 {
				t.Fatalf("writeback started up to %d of the tail's %d bytes, want whole pages within %d of its end", k, tail, writebackChunk)
			}
		})
	}
}

// Under SyncNever (no periodic fsync) the tail is still fsync'd in the
// background once three quarters full, before the fsyncs that seal it.
func TestTailFsyncedBeforeItIsSealed(t *testing.T) {
	opts := Options{Sync: SyncNever, SegmentBytes: 64 << 10}
	started, release := holdFsyncs(t, &opts, nil)
	l := openT(t, t.TempDir(), opts)
	defer l.Close()
	defer release()
	val := make([]byte, 1000)
	for l.w.segs.tail().Bytes < 48<<10 {
		if _, err := l.Append(bg, []Record{{Topic: "t", Value: val}}); err != nil {
			t.Fatal(err)
		}
	}
	if len(l.w.segs.segs) > 1 {
		t.Fatal("the first segment was sealed before three quarters of it were written")
	}
	select { // the writer starts it after answering the append
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("no background fsync at three quarters of a segment")
	}
}
