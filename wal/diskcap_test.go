package wal

import (
	"context"
	"errors"
	"testing"
	"time"
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
}
