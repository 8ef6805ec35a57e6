package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// seqValue is the value test records carry: their sequence, repeated.
func seqValue(seq uint64, n int) []byte {
	v := make([]byte, n)
	for i := 0; i < n; i += 8 {
		copy(v[i:], fmt.Sprintf("%08d", seq%1e8))
	}
	return v
}

// The buffers of sealed segments tidwall has dropped are given to new tail
// segments instead of fresh memory, and every record still reads back as
// written.
func TestTailBuffersRecycled(t *testing.T) {
	l := openT(t, t.TempDir(), Options{Sync: SyncNever, SegmentBytes: 64 << 10, MaxRecordBytes: 4 << 10})
	defer l.Close()
	for seq := uint64(1); len(l.w.segs.segs) < 40; {
		recs := make([]Record, 50)
		for i := range recs {
			recs[i] = Record{Topic: "t", Value: seqValue(seq+uint64(i), 500)}
		}
		if _, err := l.Append(bg, recs); err != nil {
			t.Fatal(err)
		}
		seq += uint64(len(recs))
	}
	l.tlMu.Lock()
	reused := l.w.bufs.reused
	l.tlMu.Unlock()
	if segs := len(l.w.segs.segs); reused < segs-5 {
		t.Fatalf("%d of %d tail segments got a recycled buffer", reused, segs)
	}
	for _, e := range readAll(t, l, 1) {
		if want := seqValue(e.Seq, 500); !bytes.Equal(e.Record.Value, want) {
			t.Fatalf("seq %d reads back %q, want %q", e.Seq, e.Record.Value[:16], want[:16])
		}
	}
}

// A record read with ReadIntoPinned keeps its memory while pinned, however
// far the writer goes, and may lose it once unpinned; one read with
// ReadInto keeps it for good.
func TestPinnedReadsStayValid(t *testing.T) {
	for _, c := range []struct {
		name     string
		pinned   bool // read with ReadIntoPinned
		unpin    bool // ...and unpinned
		survives bool
	}{
		{"pinned", true, false, true},
		{"unpinned", true, true, false},
		{"ReadInto", false, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := openT(t, t.TempDir(), Options{Sync: SyncNever, SegmentBytes: 64 << 10, MaxRecordBytes: 4 << 10})
			defer l.Close()
			// The record is the first of a new tail segment, the fourth.
			seq := uint64(1)
			for ; len(l.w.segs.segs) < 4; seq++ {
				appendOne(t, l, Record{Topic: "t", Value: seqValue(seq, 500)})
			}
			mine := seq
			appendOne(t, l, Record{Topic: "t", Value: seqValue(mine, 500)})
			seq++
			if got := l.w.segs.tail().First; got != mine {
				t.Fatalf("tail starts at %d, want %d", got, mine)
			}
			// Read it while its segment is the tail: it aliases the tail's
			// buffer.
			read := l.ReadInto
			if c.pinned {
				read = func(seq uint64, dst []Entry, buf []byte, n int) ([]Entry, []byte, error) {
					return l.ReadIntoPinned(1, seq, dst, buf, n)
				}
			}
			ents, _, err := read(mine, make([]Entry, 0, 1), nil, 1<<20)
			if err != nil || len(ents) != 1 {
				t.Fatalf("read: %v, %d entries", err, len(ents))
			}
			if c.unpin {
				l.UnpinReads(1)
			}
			held := ents[0].Record.Value
			for ; len(l.w.segs.segs) < 16; seq++ {
				appendOne(t, l, Record{Topic: "t", Value: seqValue(seq, 500)})
			}
			same := bytes.Equal(held, seqValue(mine, 500))
			if same != c.survives {
				t.Fatalf("held record unchanged: %v, want %v (%q)", same, c.survives, held[:16])
			}
		})
	}
}

// Readers like the sender's read-ahead: chunks read, held for a while
// (some far behind the writer), checked and recycled, while the writer
// rotates segments under them; pinned (ReadIntoPinned, UnpinReads on
// recycling) or not (ReadInto). No record a reader holds ever changes.
func TestReadersUnderRotation(t *testing.T) {
	for _, pinned := range []bool{true, false} {
		t.Run(fmt.Sprintf("pinned=%v", pinned), func(t *testing.T) { testReaderUnderRotation(t, pinned) })
	}
}

func testReaderUnderRotation(t *testing.T, pinned bool) {
	l := openT(t, t.TempDir(), Options{Sync: SyncNever, SegmentBytes: 64 << 10, MaxRecordBytes: 4 << 10, MaxDiskBytes: 1 << 30})
	defer l.Close()
	read := func(slot int, seq uint64, dst []Entry, buf []byte) ([]Entry, []byte, error) {
		if pinned {
			return l.ReadIntoPinned(slot, seq, dst, buf, 64<<10)
		}
		return l.ReadInto(seq, dst, buf, 64<<10)
	}
	const total = 120000
	done := make(chan error, 1)
	go func() {
		for seq := uint64(1); seq <= total; {
			recs := make([]Record, 1+rand.IntN(60))
			for i := range recs {
				recs[i] = Record{Topic: "t", Value: seqValue(seq+uint64(i), 100+rand.IntN(400))}
			}
			if _, err := l.Append(bg, recs); err != nil {
				done <- err
				return
			}
			seq += uint64(len(recs))
		}
		done <- nil
	}()
	type chunk struct {
		ents []Entry
		data []byte
		slot int
	}
	var held []chunk
	free := []chunk{{slot: 0}, {slot: 1}, {slot: 2}}
	check := func(c chunk) {
		for _, e := range c.ents {
			want := seqValue(e.Seq, len(e.Record.Value))
			if !bytes.Equal(e.Record.Value, want) {
				t.Fatalf("held seq %d changed: %q, want %q", e.Seq, e.Record.Value[:16], want[:16])
			}
		}
	}
	for next := uint64(1); next <= total; {
		if len(free) == 0 || (len(held) > 0 && rand.IntN(4) == 0) {
			// Recycle the oldest, after checking it; now and then hold
			// it far behind the writer first.
			c := held[0]
			held = held[1:]
			if rand.IntN(3) == 0 {
				// Hold it until the writer is segments ahead, so that
				// tidwall drops the segments it read from.
				last := c.ents[len(c.ents)-1].Seq
				for writing := true; writing && segmentsAfter(l, last) < 4; {
					select {
					case err := <-done:
						if err != nil {
							t.Fatal(err)
						}
						done <- nil
						writing = false
					case <-l.Appended():
					}
				}
			}
			check(c)
			if pinned {
				l.UnpinReads(c.slot)
			}
			c.ents = c.ents[:0]
			free = append(free, c)
			continue
		}
		if next > l.LastSeq() {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				done <- nil
			case <-l.Appended():
			}
			continue
		}
		c := free[len(free)-1]
		free = free[:len(free)-1]
		if c.ents == nil {
			c.ents = make([]Entry, 0, 200)
		}
		ents, data, err := read(c.slot, next, c.ents[:0], c.data)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) == 0 {
			free = append(free, c)
			continue
		}
		c.ents, c.data = ents, data
		held = append(held, c)
		next = ents[len(ents)-1].Seq + 1
	}
	for _, c := range held {
		check(c)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(l.w.segs.segs); n < 20 {
		t.Fatalf("only %d segments: the writer did not rotate enough to test", n)
	}
}

// segmentsAfter counts the segments that start after seq.
func segmentsAfter(l *Log, seq uint64) int {
	n := 0
	for _, f := range *l.segFirsts.Load() {
		if f > seq {
			n++
		}
	}
	return n
}

// Records the writer put into tidwall's memory since it opened the log are
// read without checking their checksum again; records tidwall loaded from
// a file (the tail at open) are checked, and a flipped bit there is
// ErrCorrupt, while later records read fine.
func TestChecksumCheckedOnBytesFromTheDisk(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Sync: SyncAlways, SegmentBytes: 1 << 20}
	l := openT(t, dir, opts)
	appendOne(t, l, Record{Topic: "t", Value: seqValue(1, 500)})
	appendOne(t, l, Record{Topic: "t", Value: seqValue(2, 500)})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Flip a value byte of record 1 in the file.
	segs, err := ListSegments(dir)
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	f, err := os.OpenFile(segs[0].Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	const off = 300 // inside record 1's value
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	l = openT(t, dir, opts)
	defer l.Close()
	appendOne(t, l, Record{Topic: "t", Value: seqValue(3, 500)})
	entry := func(seq uint64) []byte {
		l.readMu.Lock()
		defer l.readMu.Unlock()
		l.tlMu.RLock()
		defer l.tlMu.RUnlock()
		data, err := l.readEntry(seq)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.inMemory(data); got != (seq == 3) {
			t.Fatalf("seq %d: in memory %v", seq, got)
		}
		return data
	}
	entry(1)
	entry(2)
	entry(3)
	if _, err := l.Read(1, make([]Entry, 0, 1), 1<<20); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading the flipped record: %v, want ErrCorrupt", err)
	}
	ents, err := l.Read(2, make([]Entry, 0, 2), 1<<20)
	if err != nil || len(ents) != 2 || !bytes.Equal(ents[1].Record.Value, seqValue(3, 500)) {
		t.Fatalf("records 2-3: %d, %v", len(ents), err)
	}
}
