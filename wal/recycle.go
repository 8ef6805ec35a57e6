package wal

import (
	"sync"
	"unsafe"

	twal "github.com/tidwall/wal"
)

// Tail buffers are recycled. tidwall keeps the tail segment in memory (ebuf,
// and the entries' positions in epos), and presizeTail gives each new tail
// buffers with room for a whole segment. Allocated afresh, that is a
// segment's worth of zeroed memory per segment written (8 MiB at the
// default size), and the garbage collections it brings: at 1 KiB records
// the largest cost of the append path after write(2) itself (profiles and
// figures in bench/HISTORY.md). So the writer reuses the buffers of a
// segment once nothing can read them any more:
//
//   - tidwall no longer holds them: it drops a sealed segment's buffers from
//     its cache (SegmentCacheSize) or forgets them when it is reopened, and
//     reads an older segment's file into new memory. The writer checks
//     tidwall's segment list itself, under tlMu held exclusively (no Read
//     runs), rather than predicting tidwall's cache;
//   - no records a reader took from them are still in use: ReadInto's
//     records of the tail and of the segments tidwall holds alias these
//     buffers. A reader that says when it is done with its records
//     (ReadIntoPinned, UnpinReads: the sender's read-ahead) pins their
//     sequences; a buffer any other reader took records from (ReadInto) is
//     never reused, and left to the garbage collector.
//
// Only the writer changes tailBufs, with tlMu held exclusively; readers
// look at it, and mark buffers aliased, under tlMu held shared and readMu.

// MaxReadPins is the number of pin slots (see ReadIntoPinned).
const MaxReadPins = 4

// noPin is the slot of a read that does not pin its records.
const noPin = -1

// readPins: for each slot, the sequences its records span; last 0 is
// none. Readers set them under tlMu (shared) and readMu, the consumer
// clears them at any time: hence the mutex.
type readPins struct {
	mu    sync.Mutex
	first [MaxReadPins]uint64
	last  [MaxReadPins]uint64
}

// pin records the sequences of ents as slot's (none: the slot holds
// nothing); it does nothing for noPin.
func (l *Log) pin(slot int, ents []Entry) {
	if slot == noPin {
		return
	}
	p := &l.pins
	p.mu.Lock()
	if len(ents) == 0 {
		p.first[slot], p.last[slot] = 0, 0
	} else {
		p.first[slot], p.last[slot] = ents[0].Seq, ents[len(ents)-1].Seq
	}
	p.mu.Unlock()
}

// UnpinReads releases the records ReadIntoPinned read into slot: the
// memory they alias may be reused from now on.
func (l *Log) UnpinReads(slot int) {
	p := &l.pins
	p.mu.Lock()
	p.first[slot], p.last[slot] = 0, 0
	p.mu.Unlock()
}

// pinned reports whether a record from first to last (inclusive) is
// pinned.
func (l *Log) pinned(first, last uint64) bool {
	p := &l.pins
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.last {
		if p.last[i] != 0 && p.first[i] <= last && first <= p.last[i] {
			return true
		}
	}
	return false
}

// aliasedForever marks the buffer entry lies in as never to be reused: a
// reader that does not pin holds entry for as long as it likes. The
// caller holds readMu and tlMu (shared).
func (l *Log) aliasedForever(entry []byte) {
	if i := l.givenHolding(entry); i >= 0 {
		l.w.bufs.given[i].aliased = true
	}
}

// givenHolding returns the index in the given buffers of the one entry
// lies in, or -1.
func (l *Log) givenHolding(entry []byte) int {
	if len(entry) == 0 {
		return -1
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(entry)))
	for i, b := range l.w.bufs.given {
		base := uintptr(unsafe.Pointer(unsafe.SliceData(b.ebuf)))
		if p >= base && p+uintptr(len(entry)) <= base+uintptr(cap(b.ebuf)) {
			return i
		}
	}
	return -1
}

// tailBuf is a pair of buffers the writer gave tidwall for the tail
// segment whose first sequence is first; end is the first sequence of the
// segment after it, once that exists (0 before).
type tailBuf struct {
	ebuf       []byte
	epos       []tidwallPos
	first, end uint64
	// disk is how many bytes at the start of ebuf were copied from the
	// segment file (the tail tidwall loaded when it was (re)opened).
	disk int
	// aliased: a reader that does not pin took records from ebuf; it is
	// never reused.
	aliased bool
}

// tailBufs are the writer's buffers: given to tidwall (oldest first), and
// free to be given again (at most keepFree).
type tailBufs struct {
	given  []tailBuf
	free   []tailBuf
	reused int // tails given a free buffer (tests read it)
}

// keepFree: a rotation frees the buffers of the segment tidwall drops and
// takes them for the new tail, so one free pair is all it needs.
const keepFree = 1

// sealedAt records that the tail segment holding first was sealed and the
// next one starts at end.
func (t *tailBufs) sealedAt(end uint64) {
	for i := range t.given {
		if t.given[i].end == 0 {
			t.given[i].end = end
		}
	}
}

// reclaim moves to free the given buffers that tidwall no longer holds and
// whose records no reader has pinned. Only the writer calls it, with tlMu
// held exclusively.
func (l *Log) reclaim() {
	t := &l.w.bufs
	if len(t.given) == 0 {
		return
	}
	held := tidwallBuffers(l.tl, l.w.heldScratch[:0])
	l.w.heldScratch = held
	kept := t.given[:0]
	for _, b := range t.given {
		if b.aliased && b.end != 0 {
			continue // sealed: forget it, the garbage collector frees it
		}
		if b.end == 0 || containsPtr(held, unsafe.Pointer(unsafe.SliceData(b.ebuf))) ||
			containsPtr(held, unsafe.Pointer(unsafe.SliceData(b.epos))) || l.pinned(b.first, b.end-1) {
			kept = append(kept, b)
			continue
		}
		f := tailBuf{ebuf: b.ebuf[:0], epos: b.epos[:0]}
		if len(t.free) < keepFree {
			t.free = append(t.free, f)
		} else if i := smallest(t.free); cap(t.free[i].ebuf) < cap(f.ebuf) {
			t.free[i] = f
		}
	}
	clear(t.given[len(kept):])
	t.given = kept
}

func smallest(bs []tailBuf) int {
	i := 0
	for j := range bs {
		if cap(bs[j].ebuf) < cap(bs[i].ebuf) {
			i = j
		}
	}
	return i
}

func containsPtr(ps []unsafe.Pointer, p unsafe.Pointer) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// tidwallBuffers appends the data pointers of every segment's ebuf and
// epos that tidwall holds. tl must not be in use (tlMu held exclusively).
func tidwallBuffers(tl *twal.Log, dst []unsafe.Pointer) []unsafe.Pointer {
	if twLayoutErr != nil || tl == nil {
		return dst
	}
	segs := *(*[]unsafe.Pointer)(unsafe.Add(unsafe.Pointer(tl), twLayout.segments))
	for _, s := range segs {
		if s == nil {
			continue
		}
		if p := unsafe.SliceData(*(*[]byte)(unsafe.Add(s, twLayout.ebuf))); p != nil {
			dst = append(dst, unsafe.Pointer(p))
		}
		if p := unsafe.SliceData(*(*[]tidwallPos)(unsafe.Add(s, twLayout.epos))); p != nil {
			dst = append(dst, unsafe.Pointer(p))
		}
	}
	return dst
}

// takeFree returns a free ebuf of at least capacity n (its epos too, if
// large enough), or nils.
func (t *tailBufs) takeFree(n int) ([]byte, []tidwallPos) {
	for i, b := range t.free {
		if cap(b.ebuf) >= n {
			t.free = append(t.free[:i], t.free[i+1:]...)
			t.reused++
			return b.ebuf, b.epos
		}
	}
	return nil, nil
}

// give records the tail's buffers as given to tidwall for the segment
// starting at first, replacing a record of the same segment.
func (t *tailBufs) give(ebuf []byte, epos []tidwallPos, first uint64) {
	for i := range t.given {
		if t.given[i].first == first && t.given[i].end == 0 {
			t.given[i].ebuf, t.given[i].epos = ebuf, epos
			return
		}
	}
	t.given = append(t.given, tailBuf{ebuf: ebuf, epos: epos, first: first, disk: len(ebuf)})
}

// inMemory reports whether entry (returned by tidwall's Read) lies in a
// buffer the writer gave tidwall, past what was copied into it from the
// segment file: its bytes then went from the encoder through WriteBatch
// into that memory and never came back from the disk, and their checksum,
// which protects what the disk returns, need not be checked again.
// Whatever was read from a file is checked: the tail tidwall loads when
// it is (re)opened, a segment it loads again into memory of its own,
// ReadInto's reads of sealed files, recovery's scan. The caller holds
// tlMu (shared), so the writer does not change the list meanwhile.
func (l *Log) inMemory(entry []byte) bool {
	i := l.givenHolding(entry)
	if i < 0 {
		return false
	}
	b := &l.w.bufs.given[i]
	return uintptr(unsafe.Pointer(unsafe.SliceData(entry))) >= uintptr(unsafe.Pointer(unsafe.SliceData(b.ebuf)))+uintptr(b.disk)
}
