package wal

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"
)

// fillSegments appends until the log has at least n segment files.
func fillSegments(t *testing.T, l *Log, n int, val []byte) {
	t.Helper()
	for i := 0; l.Stats().Segments < n; i++ {
		if _, err := l.Append(bg, []Record{{Topic: "t", Key: []byte(fmt.Sprint(l.LastSeq() + 1)), Value: val}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTruncationKeepsEverythingAtOrAboveCursor(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 10, MaxDiskBytes: 64 << 20}
	l := openT(t, dir, opts)
	val := make([]byte, 1000)
	fillSegments(t, l, 10, val)
	last := l.LastSeq()
	cursor := last / 2
	if err := l.SetCursor(cursor); err != nil {
		t.Fatal(err)
	}
	l.askTruncate()
	// FirstSeq rises before the files go (readers never ask below it) and
	// DiskBytes falls after: wait until the files, FirstSeq and DiskBytes
	// agree (a deadline, not a sleep: accounting that never agrees fails).
	var segs []SegmentFile
	var onDisk int64
	waitFor(t, 5*time.Second, "truncation, with FirstSeq and DiskBytes matching the files", func() bool {
		segs, _ = ListSegments(dir)
		onDisk = 0
		for _, s := range segs {
			onDisk += s.Bytes
		}
		return l.FirstSeq() > 1 && len(segs) > 0 && segs[0].First == l.FirstSeq() && l.Stats().DiskBytes == onDisk
	})
	if first := l.FirstSeq(); first > cursor+1 {
		t.Fatalf("FirstSeq %d deleted records above the cursor %d", first, cursor)
	}
	// Appends keep working after truncation.
	appendOne(t, l, rec("t", 1))
	l.Close()
	l = openT(t, dir, opts)
	defer l.Close()
	got := readAll(t, l, cursor+1)
	if uint64(len(got)) != last+1-cursor {
		t.Fatalf("after reopen read %d records from the cursor, want %d", len(got), last+1-cursor)
	}
	for i, e := range got {
		if e.Seq != cursor+1+uint64(i) {
			t.Fatalf("gap at %d", e.Seq)
		}
	}
}

// Truncation deletes files without telling tidwall and reopens it only
// every staleSegmentsMax segments. Across many deletions and reopens,
// appends and reads keep working, FirstSeq follows the cursor, and records
// read with readShared before a reopen keep their bytes after it.
func TestTruncationReopensLazilyAndSharedReadsStayValid(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 10, MaxDiskBytes: 64 << 20, Sync: SyncNever}
	l := openT(t, dir, opts)
	defer l.Close()
	val := make([]byte, 1000)
	batch := make([]Record, 64) // about one segment per batch
	var held []Entry            // shared reads from before any reopen
	rounds := 2*staleSegmentsMax + 10
	for i := 0; i < rounds; i++ {
		for j := range batch {
			v := append([]byte(nil), val...)
			binary.BigEndian.PutUint64(v, uint64(i*len(batch)+j))
			batch[j] = Record{Topic: "t", Value: v}
		}
		if _, err := l.Append(bg, batch); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			var err error
			held, err = l.readShared(1, make([]Entry, 0, 64), 1<<20)
			if err != nil || len(held) != 64 {
				t.Fatalf("shared read: %d entries, %v", len(held), err)
			}
		}
		// Keep the last batch; everything before it is delivered.
		cursor := l.LastSeq() - uint64(len(batch))
		if err := l.SetCursor(cursor); err != nil {
			t.Fatal(err)
		}
		l.askTruncate()
		waitFor(t, 5*time.Second, "truncation", func() bool {
			segs, _ := ListSegments(dir)
			return len(segs) > 0 && segs[0].First == l.FirstSeq() && l.Stats().Segments <= 3
		})
		if first := l.FirstSeq(); first > cursor+1 {
			t.Fatalf("round %d: FirstSeq %d beyond cursor+1 %d", i, first, cursor+1)
		}
		got, err := l.readShared(cursor+1, make([]Entry, 0, 64), 1<<20)
		if err != nil || len(got) != len(batch) {
			t.Fatalf("round %d: read %d entries from the cursor: %v", i, len(got), err)
		}
		if n := binary.BigEndian.Uint64(got[0].Record.Value); n != uint64(i*len(batch)) {
			t.Fatalf("round %d: first unacknowledged record holds %d", i, n)
		}
	}
	if _, err := l.Read(1, make([]Entry, 0, 1), 1); err == nil {
		t.Fatal("read below FirstSeq succeeded")
	}
	l.tlMu.RLock()
	tlFirst, _ := l.tl.FirstIndex()
	l.tlMu.RUnlock()
	if tlFirst < uint64(staleSegmentsMax*len(batch)) {
		t.Fatalf("tidwall's first index %d: it was not reopened after %d deleted segments", tlFirst, staleSegmentsMax)
	}
	for j, e := range held {
		if n := binary.BigEndian.Uint64(e.Record.Value); n != uint64(j) || e.Record.Topic != "t" {
			t.Fatalf("shared record %d changed after truncation and reopen: holds %d", j, n)
		}
	}
}
