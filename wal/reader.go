package wal

import (
	"bytes"
	"errors"
	"fmt"

	twal "github.com/tidwall/wal"
)

// Entry is one record read back from the log.
type Entry struct {
	Seq    uint64
	Record Record
	Size   int // encoded bytes
	// Hole is set for a record that recovery could not read and replaced
	// (it was counted as lost then); Record is empty.
	Hole bool
}

// Read appends to dst the records from seq onward: at most cap(dst)-len(dst)
// of them, stopping once maxBytes of encoded records are read (always at
// least one), and never past LastSeq. It returns dst unchanged when seq is
// past LastSeq. Records alias fresh buffers that the caller owns.
//
// Reads are serialized (tidwall/wal's Read is not safe for concurrent use);
// they run alongside the writer.
func (l *Log) Read(seq uint64, dst []Entry, maxBytes int) ([]Entry, error) {
	return l.read(seq, dst, maxBytes, true)
}

func (l *Log) read(seq uint64, dst []Entry, maxBytes int, copied bool) ([]Entry, error) {
	l.readMu.Lock()
	defer l.readMu.Unlock()
	l.tlMu.RLock()
	defer l.tlMu.RUnlock()
	return l.readLocked(seq, dst, maxBytes, copied, noPin)
}

// readLocked is read under readMu and tlMu (shared). Records that are not
// copied alias tidwall's memory: under a pin slot (ReadIntoPinned) the
// caller pins them, otherwise the buffers they lie in are never recycled.
func (l *Log) readLocked(seq uint64, dst []Entry, maxBytes int, copied bool, slot int) ([]Entry, error) {
	if l.tl == nil {
		if l.lock.f == nil {
			return dst, ErrClosed
		}
		return dst, errNoLog
	}
	if first := l.first.Load(); seq < first {
		return dst, fmt.Errorf("kafkawal: read %d: below the first sequence on disk %d", seq, first)
	}
	last := l.visible.Load()
	total := 0
	topic := "" // the previous record's topic, shared by the next if equal
	for ; seq <= last && len(dst) < cap(dst) && (total < maxBytes || total == 0); seq++ {
		data, err := l.readEntry(seq)
		if err != nil {
			return dst, fmt.Errorf("kafkawal: read seq %d: %w", seq, err)
		}
		if IsHole(data) {
			dst = append(dst, Entry{Seq: seq, Size: len(data), Hole: true})
			total += len(data)
			continue
		}
		verify := !l.inMemory(data)
		if !copied && slot == noPin {
			l.aliasedForever(data)
		}
		if copied {
			// tidwall returns its own memory (NoCopy): copy once, and the
			// decoded record aliases the copy.
			data = bytes.Clone(data)
		}
		rec, err := decodeEntry(data, topic, verify)
		if err != nil {
			return dst, fmt.Errorf("read seq %d: %w", seq, err)
		}
		topic = rec.Topic
		dst = append(dst, Entry{Seq: seq, Record: rec, Size: len(data)})
		total += len(data)
	}
	return dst, nil
}

// readEntry calls tidwall's Read. Damage comes back matching ErrCorrupt:
// tidwall's ErrCorrupt (an entry that does not parse), and its panic on a
// sealed segment with fewer entries than its file name promises (it
// indexes without a bounds check; Open checks only the tail segment, so
// such damage can first show up here). Any other error (the file cannot
// be read) keeps its cause. The data aliases tidwall's segment memory
// (NoCopy).
func (l *Log) readEntry(seq uint64) (data []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: segment holding seq %d is shorter than its name says: %v", ErrCorrupt, seq, r)
		}
	}()
	data, err = l.tl.Read(seq)
	if errors.Is(err, twal.ErrCorrupt) {
		err = fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return data, err
}
