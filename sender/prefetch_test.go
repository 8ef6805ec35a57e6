package sender

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

func appendN(t *testing.T, l *wal.Log, n int) {
	t.Helper()
	recs := make([]wal.Record, n)
	for i := range recs {
		recs[i] = wal.Record{Topic: "t", Value: []byte(fmt.Sprintf("%-100d", l.LastSeq()+1+uint64(i)))}
	}
	if _, err := l.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

// peekWithin calls peek until it returns the record at win.next (the
// prefetcher delivers asynchronously) or the deadline passes.
func peekWithin(t *testing.T, s *Sender, d time.Duration) *wal.Entry {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if e := s.peek(); e != nil {
			return e
		}
		if time.Now().After(deadline) {
			return nil
		}
		select {
		case b := <-s.pf.out:
			s.take(b)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// The read-ahead hands the producing loop every record in order, follows
// appends made after it caught up, goes back on a rewind, skips forward,
// and turns a failed read into a retry from the same sequence.
func TestPrefetchFollowsTheWindow(t *testing.T) {
	l, _, err := wal.Open(t.TempDir(), wal.Options{SegmentBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 3000) // three batches of prefetchEntries and some
	s := &Sender{wal: l, win: newWindow(1, 1<<20), pf: newPrefetcher(l), lg: Config{}.withDefaults().Logger}
	go s.pf.run()
	defer s.pf.stop()
	produce := func(upTo uint64) {
		t.Helper()
		for s.win.next <= upTo {
			e := peekWithin(t, s, 5*time.Second)
			if e == nil {
				t.Fatalf("no record at %d", s.win.next)
			}
			if e.Seq != s.win.next || string(e.Record.Value) != fmt.Sprintf("%-100d", e.Seq) {
				t.Fatalf("at %d got seq %d value %q", s.win.next, e.Seq, e.Record.Value)
			}
			s.win.add(e.Seq, e.Size, 0)
		}
	}
	produce(3000)
	if e := s.peek(); e != nil {
		t.Fatalf("caught up, yet peek returned %d", e.Seq)
	}
	appendN(t, l, 10) // the prefetcher waits for appends
	produce(3010)

	// A transient failure: acknowledge up to 1500, rewind, re-read.
	for seq := uint64(1); seq <= 1500; seq++ {
		s.win.resolve(seq, true)
	}
	for seq := uint64(1501); seq <= 3010; seq++ {
		s.win.resolve(seq, false)
	}
	s.win.rewind()
	if s.win.next != 1501 {
		t.Fatalf("rewind to %d, want 1501", s.win.next)
	}
	gen := s.pfGen
	produce(3010)
	if s.pfGen == gen {
		t.Fatal("the rewind did not move the prefetcher")
	}

	// A read the WAL refuses (below its first sequence, once delivered
	// segments are deleted) becomes a retry.
	if err := l.SetCursor(3010); err != nil {
		t.Fatal(err)
	}
	waitUntil := time.Now().Add(5 * time.Second)
	for l.FirstSeq() == 1 {
		if time.Now().After(waitUntil) {
			t.Fatal("delivered segments were not deleted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.win = newWindow(1, 1<<20)
	deadline := time.Now().Add(5 * time.Second)
	for s.retryAt.IsZero() {
		if e := s.peek(); e != nil {
			t.Fatalf("read at 0 returned seq %d", e.Seq)
		}
		if time.Now().After(deadline) {
			t.Fatal("a failed read was not turned into a retry")
		}
		select {
		case b := <-s.pf.out:
			s.take(b)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if s.pfNext != 0 {
		t.Fatalf("after a failed read pfNext %d, want 0 (seek again)", s.pfNext)
	}
}
