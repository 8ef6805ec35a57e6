package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// ReadInto is Read without copying, for a reader that recycles its memory,
// such as the sender's read-ahead. Records of sealed segments older than
// the two tidwall holds in memory are read straight from their files into
// buf, grown when a record does not fit, and alias it: they are valid
// until the caller reuses the returned buffer. The others alias the log's
// in-memory segments, whose bytes are never modified once written (the log
// only appends, and truncation and repair replace segments rather than
// rewrite them) and never reused (but see ReadIntoPinned): they stay
// valid as long as the caller holds them. Either
// way the caller must not modify them (a change to the log's memory would
// be read back by the next reader, and fail its checksum); Record.Clone
// copies a record for code you do not control. Consecutive records with
// the same topic share one Topic string. It returns the entries and the
// buffer to reuse next time.
//
// tidwall/wal serves a sealed segment from memory only while it is one of
// the two it caches, and ReadInto reads those through it; a reader further
// behind the writer (a backlog after an outage, or appends faster than
// Kafka takes them) would make tidwall read each segment file whole into a
// new buffer and index every entry. Here a call reads what its entries
// need (in steps of readStep) into memory the caller reuses, with no
// allocation per record (BenchmarkReadSealed; bench/HISTORY.md, "The
// read-ahead reads old segments from their files").
//
// One call reads from one segment at most: it stops at a sealed segment's
// end, and the next call goes on in the next one.
func (l *Log) ReadInto(seq uint64, dst []Entry, buf []byte, maxBytes int) ([]Entry, []byte, error) {
	return l.readInto(&l.sr, noPin, seq, dst, buf, maxBytes)
}

// ReadIntoPinned is ReadInto for a consumer that says when it is done with
// the records it read: they stay valid until UnpinReads(slot) or the next
// ReadIntoPinned into the same slot (0 <= slot < MaxReadPins), and then
// the log may reuse the memory of their segment (see wal/recycle.go). The
// records of a plain ReadInto stay valid as long as they are held, and
// the memory they alias is never reused.
func (l *Log) ReadIntoPinned(slot int, seq uint64, dst []Entry, buf []byte, maxBytes int) ([]Entry, []byte, error) {
	return l.readInto(&l.sr, slot, seq, dst, buf, maxBytes)
}

// Reader is a sequential read position of its own in the log, for a reader
// beside the one ReadInto serves (the sender's lanes, which read back the
// records of one partition): each keeps its place in the segment files, so
// that two readers do not make each other scan a segment from its start
// on every call. Reads of all readers are serialized. A Reader does not
// pin: the memory its records alias is never reused, as for ReadInto.
type Reader struct {
	l  *Log
	sr sealedReader
}

// NewReader returns a new read position. Close it when done.
func (l *Log) NewReader() *Reader { return &Reader{l: l} }

// ReadInto is Log.ReadInto from r's position.
func (r *Reader) ReadInto(seq uint64, dst []Entry, buf []byte, maxBytes int) ([]Entry, []byte, error) {
	return r.l.readInto(&r.sr, noPin, seq, dst, buf, maxBytes)
}

// Close releases the segment file r holds open.
func (r *Reader) Close() {
	r.l.readMu.Lock()
	r.sr.close()
	r.l.readMu.Unlock()
}

func (l *Log) readInto(sr *sealedReader, slot int, seq uint64, dst []Entry, buf []byte, maxBytes int) ([]Entry, []byte, error) {
	l.readMu.Lock()
	defer l.readMu.Unlock()
	l.tlMu.RLock()
	defer l.tlMu.RUnlock()
	if seq >= l.filesBelow() || l.tl == nil {
		n := len(dst)
		dst, err := l.readLocked(seq, dst, maxBytes, false, slot)
		l.pin(slot, dst[n:])
		return dst, buf, err
	}
	l.pin(slot, nil) // records of files alias buf, not the log's memory
	if first := l.first.Load(); seq < first {
		return dst, buf, fmt.Errorf("kafkawal: read %d: below the first sequence on disk %d", seq, first)
	}
	return sr.read(l, seq, dst, buf, maxBytes)
}

// tidwallCached is how many sealed segments tidwall keeps in memory (its
// SegmentCacheSize): the ones it sealed last, unless a reader made it load
// an older one since.
const tidwallCached = 2

// filesBelow returns the sequence below which ReadInto reads records from
// the segment files: sealed (published, so Read returns them too) and
// older than the sealed segments tidwall holds in memory (when no reader
// made it load others). ReadInto reads those, and the tail, through
// tidwall, without a copy; a pread from the page cache costs more than
// that near the tail (bench/HISTORY.md, "After that run: the segments
// tidwall holds are read from its memory").
func (l *Log) filesBelow() uint64 {
	firsts := *l.segFirsts.Load()
	return min(l.sealed.Load(), firsts[max(0, len(firsts)-1-tidwallCached)])
}

// sealedReader reads sealed segment files sequentially. It remembers where
// the last read ended, so the next one starts there without a scan, and
// takes each segment's bounds from the writer's segment list (segFirsts):
// a segment holds the sequences from its first to the next segment's
// first, whatever else its file holds. It holds a file open only while a
// read may go on in it (a deleted segment's space is freed only when its
// last descriptor closes). Its state is guarded by readMu.
type sealedReader struct {
	f     *os.File // nil between segments
	sr    SegmentReader
	first uint64 // first sequence of f's segment
	end   uint64 // first sequence of the segment after it
	next  uint64 // sequence of the entry sr reads next
}

func (r *sealedReader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// read decodes the entries from seq onward in the sealed segment holding
// it, reading from the file into buf (in steps, only as far as the entries
// asked for need: a batch of small records may take a small part of buf),
// and returns buf, grown when its first entry does not fit.
func (r *sealedReader) read(l *Log, seq uint64, dst []Entry, buf []byte, maxBytes int) ([]Entry, []byte, error) {
	if err := r.seek(l, seq); err != nil {
		r.close()
		return dst, buf, err
	}
	if cap(buf) == 0 {
		buf = make([]byte, maxBytes)
	}
	r.sr.reuse(buf, true)
	total := 0
	topic := ""
	for r.next < r.end && len(dst) < cap(dst) && (total < maxBytes || total == 0) {
		if !r.sr.Next() {
			if err := r.sr.Err(); err != nil {
				r.close()
				return dst, r.sr.buf, fmt.Errorf("kafkawal: read seq %d: segment %s: %w", r.next, SegmentName(r.first), err)
			}
			if r.sr.End() >= r.sr.size {
				r.close()
				return dst, r.sr.buf, fmt.Errorf("%w: read seq %d: segment %s ends before it, and the next segment starts at %d", ErrCorrupt, r.next, SegmentName(r.first), r.end)
			}
			break // buf is full: the rest is read by the next call
		}
		ent := r.sr.Entry()
		e := Entry{Seq: r.next, Size: len(ent)}
		if IsHole(ent) {
			e.Hole = true
		} else {
			rec, err := decode(ent, topic)
			if err != nil {
				// Forget the position: it is already past the bad entry, and
				// the retry must find it again, not read the next record
				// under its sequence.
				buf = r.sr.buf
				r.close()
				return dst, buf, fmt.Errorf("read seq %d: %w", r.next, err)
			}
			topic = rec.Topic
			e.Record = rec
		}
		dst = append(dst, e)
		total += len(ent)
		r.next++
	}
	buf = r.sr.buf
	if r.next == r.end {
		r.close() // the next call opens the next segment
	}
	return dst, buf, nil
}

// seek positions r at seq: where the last read ended, or else in the
// segment that holds seq, passing over the entries before it from the
// segment's start.
func (r *sealedReader) seek(l *Log, seq uint64) error {
	if r.f != nil && seq == r.next && r.next < r.end {
		return nil
	}
	r.close()
	firsts := *l.segFirsts.Load()
	i := sort.Search(len(firsts), func(i int) bool { return firsts[i] > seq }) - 1
	if i < 0 || i+1 >= len(firsts) {
		return fmt.Errorf("kafkawal: read seq %d: no sealed segment holds it", seq)
	}
	f, err := os.Open(filepath.Join(l.segDir, SegmentName(firsts[i])))
	if err != nil {
		return fmt.Errorf("kafkawal: read seq %d: %w", seq, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("kafkawal: read seq %d: %w", seq, err)
	}
	r.f, r.first, r.end, r.next = f, firsts[i], firsts[i+1], firsts[i]
	r.sr.reset(f, fi.Size())
	for r.next < seq {
		if !r.sr.Skip() {
			if err := r.sr.Err(); err != nil {
				return fmt.Errorf("kafkawal: read seq %d: segment %s: %w", seq, SegmentName(r.first), err)
			}
			return fmt.Errorf("%w: read seq %d: segment %s ends at seq %d, and the next segment starts at %d", ErrCorrupt, seq, SegmentName(r.first), r.next, r.end)
		}
		r.next++
	}
	return nil
}
