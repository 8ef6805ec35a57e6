package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// ReadInto is ReadShared for a reader that recycles its memory, such as
// the sender's read-ahead. Records of sealed segments older than the two
// tidwall holds in memory are read straight from their files into buf,
// grown when a record does not fit, and alias it: they are valid until the
// caller reuses the returned buffer. The others alias the log's memory, as
// with ReadShared. It returns the entries and the buffer to reuse next
// time.
//
// tidwall/wal serves a sealed segment from memory only while it is one of
// the two it caches, and ReadInto reads those through it; a reader further
// behind the writer (a backlog after an outage, or appends faster than
// Kafka takes them) would make tidwall read each segment file whole into a
// new buffer and index every entry. Here a call reads what its entries
// need (in steps of readStep) into memory the caller reuses.
// BenchmarkReadSealed, per 100 B record: 285 ns and 209 B allocated
// through tidwall, 166 ns and 1 B here; per 1 KiB record: 682 ns and
// 1,112 B, 403 ns and 1 B.
//
// One call reads from one segment at most: it stops at a sealed segment's
// end, and the next call goes on in the next one.
func (l *Log) ReadInto(seq uint64, dst []Entry, buf []byte, maxBytes int) ([]Entry, []byte, error) {
	l.readMu.Lock()
	defer l.readMu.Unlock()
	l.tlMu.RLock()
	defer l.tlMu.RUnlock()
	if seq >= l.filesBelow() || l.tl == nil {
		dst, err := l.readLocked(seq, dst, maxBytes, false)
		return dst, buf, err
	}
	if first := l.first.Load(); seq < first {
		return dst, buf, fmt.Errorf("kafkawal: read %d: below the first sequence on disk %d", seq, first)
	}
	return l.sr.read(l, seq, dst, buf, maxBytes)
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
// that near the tail (end to end, 100 B SyncAlways batches, reading them
// from the files too took 4.1-4.2 us of CPU per record against 3.0-3.8:
// bench/HISTORY.md).
func (l *Log) filesBelow() uint64 {
	firsts := *l.segFirsts.Load()
	return min(l.sealed.Load(), firsts[max(0, len(firsts)-1-tidwallCached)])
}

// readStep is the most ReadInto reads from a segment file at a time.
const readStep = 64 << 10

// sealedReader reads sealed segment files sequentially. It remembers where
// the last read ended, so the next one starts there without a scan, and
// takes each segment's bounds from the writer's segment list (segFirsts):
// a segment holds the sequences from its first to the next segment's
// first, whatever else its file holds. It holds a file open only while a
// read may go on in it (a deleted segment's space is freed only when its
// last descriptor closes). Its state is guarded by readMu.
type sealedReader struct {
	f     *os.File // nil between segments
	first uint64   // first sequence of f's segment
	end   uint64   // first sequence of the segment after it
	size  int64    // f's size: a sealed segment never changes
	next  uint64   // sequence of the entry at off
	off   int64
}

func (r *sealedReader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// read decodes the entries from seq onward in the sealed segment holding it.
func (r *sealedReader) read(l *Log, seq uint64, dst []Entry, buf []byte, maxBytes int) ([]Entry, []byte, error) {
	if err := r.seek(l, seq); err != nil {
		r.close()
		return dst, buf, err
	}
	if cap(buf) == 0 {
		buf = make([]byte, maxBytes)
	}
	// Read from off in steps of readStep into buf, only as far as the
	// entries asked for need (a batch of small records may take a small
	// part of buf); decode every whole entry.
	buf = buf[:0]
	data := buf
	total := 0
	topic := ""
	for r.next < r.end && len(dst) < cap(dst) && (total < maxBytes || total == 0) {
		size, hdr := binary.Uvarint(data)
		if hdr <= 0 || uint64(len(data)-hdr) < size {
			// Not a whole entry: read more after it, if buf and the
			// file have more.
			read := r.off + int64(len(data)) // where the file's next unread byte is
			if len(buf) < cap(buf) && read < r.size {
				n, err := r.f.ReadAt(buf[len(buf):min(cap(buf), len(buf)+readStep, len(buf)+int(r.size-read))], read)
				if err != nil && !errors.Is(err, io.EOF) {
					r.close()
					return dst, buf, fmt.Errorf("kafkawal: read seq %d: %w", r.next, err)
				}
				if n == 0 {
					r.size = read // shorter than it was: never for a sealed segment
				}
				buf = buf[:len(buf)+n]
				data = buf[len(buf)-len(data)-n:]
				continue
			}
			if total > 0 {
				break // the rest is read by the next call
			}
			if r.off >= r.size {
				r.close()
				return dst, buf, fmt.Errorf("%w: read seq %d: segment %s ends before it, and the next segment starts at %d", ErrCorrupt, seq, SegmentName(r.first), r.end)
			}
			// The first entry does not fit in buf: grow buf and read
			// again, unless the file ends before the entry does.
			if hdr < 0 || read >= r.size || (hdr > 0 && size > uint64(r.size-r.off)) {
				r.close()
				return dst, buf, fmt.Errorf("%w: read seq %d: entry at offset %d of segment %s runs past its end", ErrCorrupt, seq, r.off, SegmentName(r.first))
			}
			need := 2 * cap(buf)
			if hdr > 0 {
				need = hdr + int(size)
			}
			return r.read(l, seq, dst, make([]byte, need), maxBytes)
		}
		ent := data[hdr : hdr+int(size)]
		data = data[hdr+int(size):]
		e := Entry{Seq: r.next, Size: len(ent)}
		if IsHole(ent) {
			e.Hole = true
		} else {
			rec, err := decode(ent, topic)
			if err != nil {
				return dst, buf, fmt.Errorf("read seq %d: %w", r.next, err)
			}
			topic = rec.Topic
			e.Record = rec
		}
		dst = append(dst, e)
		total += len(ent)
		r.off += int64(hdr) + int64(size)
		r.next++
	}
	if r.next == r.end {
		r.close() // the next call opens the next segment
	}
	return dst, buf, nil
}

// seek positions r at seq: where the last read ended, or else in the
// segment that holds seq, scanning from its start.
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
	*r = sealedReader{f: f, first: firsts[i], end: firsts[i+1], size: fi.Size(), next: firsts[i]}
	return r.skip(seq)
}

// skip moves r forward over whole entries to seq, within its segment,
// reading their length prefixes readStep bytes at a time.
func (r *sealedReader) skip(seq uint64) error {
	var buf []byte
	data := buf // unparsed bytes, from off
	for r.next < seq {
		size, k := binary.Uvarint(data)
		if k <= 0 || uint64(len(data)-k) < size {
			// The entry is not whole in data: skip it straight from its
			// length if that is whole, else read from off again.
			if k > 0 && size <= uint64(r.size) && r.off+int64(k)+int64(size) <= r.size {
				r.off += int64(k) + int64(size)
				r.next++
				data = nil
				continue
			}
			if k != 0 || r.off+int64(len(data)) >= r.size {
				if r.off >= r.size {
					return fmt.Errorf("%w: read seq %d: segment %s ends at seq %d, and the next segment starts at %d", ErrCorrupt, seq, SegmentName(r.first), r.next, r.end)
				}
				return fmt.Errorf("%w: read seq %d: entry at offset %d of segment %s runs past its end", ErrCorrupt, r.next, r.off, SegmentName(r.first))
			}
			if buf == nil {
				buf = make([]byte, readStep)
			}
			n, err := r.f.ReadAt(buf[:min(int64(len(buf)), r.size-r.off)], r.off)
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("kafkawal: read seq %d: %w", seq, err)
			}
			if n == 0 {
				r.size = r.off // shorter than it was: never for a sealed segment
			}
			data = buf[:n]
			continue
		}
		data = data[k+int(size):]
		r.off += int64(k) + int64(size)
		r.next++
	}
	return nil
}
