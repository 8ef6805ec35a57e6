package wal

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestDiskCap(t *testing.T) {
	seg := int64(64 << 10)
	val := make([]byte, 2000)
	t.Run("reject", func(t *testing.T) {
		l := openT(t, t.TempDir(), Options{SegmentBytes: seg, MaxDiskBytes: 4 * seg, FullPolicy: Reject})
		defer l.Close()
		var err error
		n := 0
		for ; err == nil; n++ {
			_, err = l.Append(bg, []Record{{Topic: "t", Value: val}})
		}
		if !errors.Is(err, ErrFull) {
			t.Fatalf("err %v, want ErrFull", err)
		}
		if l.LastSeq() != uint64(n-1) {
			t.Fatalf("LastSeq %d after %d accepted appends", l.LastSeq(), n-1)
		}
		if d := l.Stats().DiskBytes; d > 4*seg {
			t.Fatalf("disk %d over cap %d", d, 4*seg)
		}
		// Acknowledging frees room: whole segments go and appends resume.
		if err := l.SetCursor(l.LastSeq()); err != nil {
			t.Fatal(err)
		}
		l.askTruncate()
		waitFor(t, 5*time.Second, "room after truncation", func() bool {
			_, err := l.Append(bg, []Record{{Topic: "t", Value: val}})
			return err == nil
		})
	})
	t.Run("block", func(t *testing.T) {
		l := openT(t, t.TempDir(), Options{SegmentBytes: seg, MaxDiskBytes: 4 * seg})
		defer l.Close()
		// Fill to the cap with a short deadline per append.
		for {
			ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
			_, err := l.Append(ctx, []Record{{Topic: "t", Value: val}})
			cancel()
			if err != nil {
				if !errors.Is(err, ErrFull) {
					t.Fatalf("err %v, want ErrFull", err)
				}
				break
			}
		}
		full := l.LastSeq()
		after := append([]byte("after"), val...)
		// A blocked append resumes once the cursor frees whole segments.
		done := make(chan error, 1)
		var seq uint64
		go func() {
			var err error
			seq, err = l.Append(ctxTimeout(t, 10*time.Second), []Record{{Topic: "t", Value: after}})
			done <- err
		}()
		waitFor(t, 5*time.Second, "the append to block at the cap", func() bool { return l.disk.waiters() == 1 })
		select {
		case err := <-done:
			t.Fatalf("append did not block at the cap: %v", err)
		default:
		}
		if err := l.SetCursor(full); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("blocked append: %v", err)
		}
		if seq != full+1 {
			t.Fatalf("blocked append got seq %d, want %d", seq, full+1)
		}
		e, _ := l.Read(seq, make([]Entry, 0, 1), 1)
		if len(e) != 1 || string(e[0].Record.Value) != string(after) {
			t.Fatalf("read back %+v", e)
		}
	})
	t.Run("close wakes blocked", func(t *testing.T) {
		l := openT(t, t.TempDir(), Options{SegmentBytes: seg, MaxDiskBytes: 4 * seg})
		for {
			ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
			_, err := l.Append(ctx, []Record{{Topic: "t", Value: val}})
			cancel()
			if err != nil {
				break
			}
		}
		done := make(chan error, 1)
		go func() { _, err := l.Append(bg, []Record{{Topic: "t", Value: val}}); done <- err }()
		waitFor(t, 5*time.Second, "the append to block at the cap", func() bool { return l.disk.waiters() == 1 })
		l.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked append after Close: %v, want ErrClosed", err)
		}
	})
	t.Run("released reservation wakes blocked", func(t *testing.T) {
		// An append whose reservation is given back (its write failed)
		// frees room as a deleted segment does: an appender waiting at the
		// cap goes on. Here the first append fits, the second does not,
		// and the first one's fsync fails.
		var failNext atomic.Bool
		started, gate := make(chan struct{}, 1), make(chan struct{})
		opts := Options{SegmentBytes: seg, MaxDiskBytes: 4 * seg, RetryAfterError: time.Nanosecond}
		opts.hooks = &hooks{fdatasync: func(f *os.File) error {
			if failNext.CompareAndSwap(true, false) {
				started <- struct{}{}
				<-gate
				return syscall.EIO
			}
			return unix.Fdatasync(int(f.Fd()))
		}}
		l := openT(t, t.TempDir(), opts)
		defer l.Close()
		r := []Record{{Topic: "t", Value: val}}
		framed := FramedLen(EncodedLen(&r[0]))
		for l.disk.usedBytes()+2*framed <= l.opts.MaxDiskBytes {
			appendOne(t, l, r[0])
		}
		failNext.Store(true)
		first := make(chan error, 1)
		go func() { _, err := l.Append(bg, r); first <- err }()
		<-started // its bytes are reserved and written, their fsync held
		second := make(chan error, 1)
		go func() { _, err := l.Append(ctxTimeout(t, 10*time.Second), r); second <- err }()
		waitFor(t, 5*time.Second, "the second append to block at the cap", func() bool { return l.disk.waiters() == 1 })
		close(gate)
		if err := <-first; !errors.Is(err, syscall.EIO) {
			t.Fatalf("append whose fsync failed: %v, want EIO", err)
		}
		if err := <-second; err != nil {
			t.Fatalf("append blocked at the cap after the failed one gave its room back: %v", err)
		}
	})
}
