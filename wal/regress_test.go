package wal

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Regression tests for the findings of a review of the second wave (each
// failed on 12d6b79, before its fix).

// A record whose checksum fails in a sealed segment read from its file
// must stay an error however often it is read: the sender's read-ahead
// reads again from the failed sequence. After the first failure the
// sealed reader keeps its position past the bad entry while its sequence
// stays at the bad one, so the second read returns the NEXT record under
// the bad record's sequence (and every later one shifted by one).
func TestSealedDecodeErrorKeepsSequences(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 10}
	l := openT(t, dir, opts)
	fillSegments(t, l, 6, make([]byte, 1000)) // segs[1] is read from its file
	l.Close()
	segs, _ := ListSegments(dir)
	seg := segs[1]
	// Flip the last byte of the third entry of segs[1]: its framing stays
	// intact, its checksum fails.
	data, err := os.ReadFile(seg.Path)
	if err != nil {
		t.Fatal(err)
	}
	sr := NewSegmentBytesReader(data)
	for range 3 {
		if !sr.Next() {
			t.Fatalf("segment %s: fewer than 3 entries: %v", seg.Path, sr.Err())
		}
	}
	bad := seg.First + 2
	at := sr.End() - 1
	f, err := os.OpenFile(seg.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{data[at] ^ 0x01}, at); err != nil {
		t.Fatal(err)
	}
	f.Close()

	l = openT(t, dir, opts)
	defer l.Close()
	got, buf, err := l.ReadInto(seg.First, make([]Entry, 0, 16), nil, 1<<20)
	if !errors.Is(err, ErrCorrupt) || len(got) != 2 {
		t.Fatalf("first read: %d entries, err %v; want the 2 records before the bad one and ErrCorrupt", len(got), err)
	}
	// What the prefetcher does next: read again from the failed sequence.
	for try := 1; try <= 2; try++ {
		got, buf, err = l.ReadInto(bad, make([]Entry, 0, 16), buf, 1<<20)
		for _, e := range got {
			if want := fmt.Sprint(e.Seq); string(e.Record.Key) != want {
				t.Fatalf("read %d from seq %d: entry labelled seq %d holds the record appended as seq %s (err %v)",
					try, bad, e.Seq, e.Record.Key, err)
			}
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read %d from the damaged seq %d: %d entries, err %v; want ErrCorrupt again", try, bad, len(got), err)
		}
	}
}

// Open lowers a cursor found beyond the last record on disk (records lost
// by an OS crash under SyncPeriodic/SyncNever) but only in memory: the
// cursor file keeps the old value. New appends then reuse the sequences
// between the last record and the old cursor, and the next Open trusts the
// old cursor again: those new, never delivered records count as delivered
// (skipped by the sender, deletable by truncation, and "Delivered" damage
// for recovery's triage).
func TestCursorClampIsPersisted(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	for i := 1; i <= 10; i++ {
		appendOne(t, l, rec("t", i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The cursor a sender persisted for records 11..20 that the OS crash
	// then took from the segment files.
	c, _, err := openCursor(dir, DefaultFileMode)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.store(20, 0); err != nil {
		t.Fatal(err)
	}

	l, info, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !info.CursorClamped || l.Cursor() != 10 {
		t.Fatalf("Open: clamped %v, cursor %d; want the cursor lowered to 10", info.CursorClamped, l.Cursor())
	}
	// Kafka is down: 15 new records are appended and none is delivered.
	for i := 11; i <= 25; i++ {
		appendOne(t, l, rec("t", i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l, info, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Cursor(); got > 10 {
		t.Fatalf("after reopening: cursor %d (clamped %v), LastSeq %d: records 11..%d were appended after the clamp and never delivered, yet sit at or below the cursor",
			got, info.CursorClamped, l.LastSeq(), got)
	}
}

// AppendAsync: "Calls made one after another get increasing sequences".
// Under SyncAlways, while an fsync runs the writer holds what arrives
// (held) and writes it when the fsync ends, unless held is full: then it
// writes the new group at once, AHEAD of the older held requests. An
// asynchronous call in a held group then gets a higher sequence than a
// later call from the same goroutine: its record lands after the later
// one in its partition.
func TestAsyncHeldOverflowKeepsOrder(t *testing.T) {
	opts := Options{} // SyncAlways
	started, release := holdFsyncs(t, &opts, nil)
	l := openT(t, t.TempDir(), opts)
	defer l.Close()
	defer release()

	var wg sync.WaitGroup
	appendBg := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Append(bg, []Record{rec("sync", i)}); err != nil {
				t.Errorf("Append: %v", err)
			}
		}()
	}
	appendBg(0)
	select {
	case <-started: // an fsync is in flight and stays so until release
	case <-time.After(10 * time.Second):
		t.Fatal("no fsync started")
	}

	var mu sync.Mutex
	var seqs []uint64
	var errs []error
	taken := func() bool {
		l.async.mu.Lock()
		defer l.async.mu.Unlock()
		return l.async.unwritten == nil
	}
	// Each round: one asynchronous call, then one Append, whose arrival
	// makes the writer take the call: a group of two requests, held.
	const rounds = 600 // held holds at most 1023 requests
	for i := range rounds {
		l.AppendAsync(bg, &Record{Topic: "async", Partition: 0, Value: []byte(fmt.Sprint(i))}, time.Time{}, func(seq uint64, err error) {
			mu.Lock()
			defer mu.Unlock()
			seqs = append(seqs, seq)
			errs = append(errs, err)
		})
		appendBg(i + 1)
		deadline := time.Now().Add(10 * time.Second)
		for !taken() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the writer did not take the asynchronous call", i)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	release()
	wg.Wait()
	if err := l.AsyncBarrier(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seqs) != rounds {
		t.Fatalf("%d callbacks, want %d", len(seqs), rounds)
	}
	var bad []string
	for i := 1; i < rounds; i++ {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if seqs[i] <= seqs[i-1] && len(bad) < 3 {
			bad = append(bad, fmt.Sprintf("call %d got seq %d after call %d got %d", i, seqs[i], i-1, seqs[i-1]))
		}
	}
	if len(bad) > 0 {
		t.Fatalf("AppendAsync calls made one after another got decreasing sequences: %s", strings.Join(bad, "; "))
	}
}
