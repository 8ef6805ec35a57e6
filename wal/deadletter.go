package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DeadLetterFile is the name of the dead-letter log in a log directory.
const DeadLetterFile = "deadletter.log"

// DeadLetter is a record Kafka refused for good, with why and when.
type DeadLetter struct {
	// Seq is the record's sequence; Time when it was dead-lettered.
	Seq  uint64
	Time time.Time
	// Err is the error's text, Code its librdkafka error code (a
	// kafka.ErrorCode: Kafka's protocol codes and librdkafka's negative
	// local ones); 0 in dead letters written before the code was kept.
	Err  string
	Code int32
	// SentToPartition is the partition Kafka refused the record in; -1
	// when it was refused before it had one (an unknown topic, a local
	// size check) or in dead letters written before it was kept.
	SentToPartition int32
	// Record is the record as appended.
	Record Record
}

// DeadLetters is the append-only dead-letter log. Each frame:
//
//	u32 len(payload) | u32 crc32c(payload) | payload
//	payload, version 2 (written):
//	  u8 version=2 | u64 seq | i64 unix nanos | i32 code | i32 partition |
//	  uvarint len(err) | err | record entry (codec)
//	payload, version 1 (read: code 0, partition -1):
//	  u8 version=1 | u64 seq | i64 unix nanos | uvarint len(err) | err | record entry
//
// Frames are fsync'd before Add returns. A damaged last frame (a torn
// tail) is cut off when the log is opened again, and counted. A damaged
// frame followed by intact ones is not cut: the intact ones are the only
// copies of their records. Open reports it (DeadLetterDamage) and every
// reader skips it, resuming at the next offset where an intact frame
// starts.
type DeadLetters struct {
	mu     sync.Mutex
	f      *os.File
	path   string
	damage []DeadLetterDamage
}

// DeadLetterDamage is a damaged range inside the dead-letter log, with
// intact frames after it: at least one dead letter there cannot be read.
// It matches ErrCorrupt.
type DeadLetterDamage struct {
	Offset, Bytes int64
}

func (e *DeadLetterDamage) Error() string {
	return fmt.Sprintf("kafkawal: dead-letter log damaged at offset %d, %d bytes: at least one dead letter there cannot be read; the frames after it are intact", e.Offset, e.Bytes)
}

// Is makes it match ErrCorrupt.
func (e *DeadLetterDamage) Is(target error) bool { return target == ErrCorrupt }

// OpenDeadLetters opens dir's dead-letter log for appending, creating it
// with perm (0: DefaultFileMode). It returns how many bytes of a torn last
// frame it cut off; damage followed by intact frames stays in place (see
// Damage).
func OpenDeadLetters(dir string, perm os.FileMode) (*DeadLetters, int64, error) {
	if perm == 0 {
		perm = DefaultFileMode
	}
	path := filepath.Join(dir, DeadLetterFile)
	f, err := os.OpenFile(path, os.O_RDWR, perm)
	if errors.Is(err, fs.ErrNotExist) {
		// A new file: its name must be durable before a dead letter in
		// it is (Add fsyncs the file, not the directory).
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, perm)
		if err == nil {
			if err = SyncDir(dir); err != nil {
				f.Close()
			}
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("kafkawal: open dead letters: %w", err)
	}
	d := &DeadLetters{f: f, path: path}
	good, size, err := scanDeadLetters(f, nil, func(e DeadLetterDamage) { d.damage = append(d.damage, e) })
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if good < size {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("kafkawal: cut torn dead-letter tail: %w", err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, err
	}
	return d, size - good, nil
}

// Damage returns the damaged ranges OpenDeadLetters found with intact
// frames after them (they were left in place).
func (d *DeadLetters) Damage() []DeadLetterDamage { return d.damage }

// Add appends dl and fsyncs it.
func (d *DeadLetters) Add(dl DeadLetter) error {
	p := []byte{deadLetterVersion}
	p = binary.BigEndian.AppendUint64(p, dl.Seq)
	p = binary.BigEndian.AppendUint64(p, uint64(dl.Time.UnixNano()))
	p = binary.BigEndian.AppendUint32(p, uint32(dl.Code))
	p = binary.BigEndian.AppendUint32(p, uint32(dl.SentToPartition))
	p = binary.AppendUvarint(p, uint64(len(dl.Err)))
	p = append(p, dl.Err...)
	p = AppendEncode(p, &dl.Record)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(p)))
	frame = binary.BigEndian.AppendUint32(frame, crc32.Checksum(p, castagnoli))
	frame = append(frame, p...)
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.f.Write(frame); err != nil {
		return fmt.Errorf("kafkawal: write dead letter %d: %w", dl.Seq, err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("kafkawal: sync dead letter %d: %w", dl.Seq, err)
	}
	return nil
}

// Close closes the file.
func (d *DeadLetters) Close() error { return d.f.Close() }

// ReadDeadLetters calls fn for each dead letter in dir, oldest first. A
// missing file means none. A damaged last frame (torn) ends the scan
// without error. A damaged range with intact frames after it is skipped,
// and once every intact frame was read ReadDeadLetters returns a
// *DeadLetterDamage (matching ErrCorrupt) for the first such range.
func ReadDeadLetters(dir string, fn func(DeadLetter) error) error {
	f, err := os.Open(filepath.Join(dir, DeadLetterFile))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kafkawal: open dead letters: %w", err)
	}
	defer f.Close()
	var first *DeadLetterDamage
	_, _, err = scanDeadLetters(f, fn, func(e DeadLetterDamage) {
		if first == nil {
			first = &e
		}
	})
	if err == nil && first != nil {
		return first
	}
	return err
}

// deadLetterHeader is a frame's length and checksum.
const deadLetterHeader = 8

// scanDeadLetters reads the frames of f in order, calling fn for each
// intact one, and returns the offset after the last intact frame and the
// file size. A frame that fails its length or checksum starts a damaged
// range, which runs to the next offset where an intact frame starts:
// damage is called for it, and the scan goes on there. A damaged range
// with no intact frame after it is a torn tail: good is where it starts.
// fn's error ends the scan and is returned.
func scanDeadLetters(f *os.File, fn func(DeadLetter) error, damage func(DeadLetterDamage)) (good, size int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	size = fi.Size()
	r := bufio.NewReader(io.NewSectionReader(f, 0, size))
	for off := int64(0); off < size; {
		p, ok := readDeadLetterFrame(r, size-off)
		if !ok {
			next, err := nextDeadLetterFrame(f, off+1, size)
			if err != nil {
				return good, size, err
			}
			if next == size {
				return good, size, nil // torn tail
			}
			if damage != nil {
				damage(DeadLetterDamage{Offset: off, Bytes: next - off})
			}
			off = next
			r.Reset(io.NewSectionReader(f, off, size-off))
			continue
		}
		dl, derr := decodeDeadLetter(p)
		if derr != nil {
			return good, size, fmt.Errorf("kafkawal: dead letter at offset %d: %w", off, derr)
		}
		off += deadLetterHeader + int64(len(p))
		good = off
		if fn != nil {
			if err := fn(dl); err != nil {
				return good, size, err
			}
		}
	}
	return good, size, nil
}

// readDeadLetterFrame reads one frame from r, with left bytes left in the
// file, and returns its payload, or false when no intact frame starts
// there.
func readDeadLetterFrame(r io.Reader, left int64) ([]byte, bool) {
	var hdr [deadLetterHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, false
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	if n == 0 || n > left-deadLetterHeader {
		return nil, false
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, false
	}
	if crc32.Checksum(p, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
		return nil, false
	}
	return p, true
}

// nextDeadLetterFrame returns the first offset in [from, size) where an
// intact frame starts, or size. Only offsets whose length fits in the file
// and whose payload starts with a known version are checksummed.
func nextDeadLetterFrame(f *os.File, from, size int64) (int64, error) {
	var hdr [deadLetterHeader + 1]byte
	for off := from; off+deadLetterHeader < size; off++ {
		if _, err := f.ReadAt(hdr[:], off); err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("kafkawal: read dead letters: %w", err)
		}
		n := int64(binary.BigEndian.Uint32(hdr[:]))
		if n == 0 || n > size-off-deadLetterHeader || (hdr[deadLetterHeader] != 1 && hdr[deadLetterHeader] != deadLetterVersion) {
			continue
		}
		if _, ok := readDeadLetterFrame(io.NewSectionReader(f, off, size-off), size-off); ok {
			return off, nil
		}
	}
	return size, nil
}

// deadLetterVersion is the payload version Add writes.
const deadLetterVersion = 2

func decodeDeadLetter(p []byte) (DeadLetter, error) {
	dl := DeadLetter{SentToPartition: PartitionAny}
	if len(p) < 17 || (p[0] != 1 && p[0] != 2) {
		return dl, errors.New("unknown dead-letter version")
	}
	dl.Seq = binary.BigEndian.Uint64(p[1:])
	dl.Time = time.Unix(0, int64(binary.BigEndian.Uint64(p[9:])))
	rest := p[17:]
	if p[0] == 2 {
		if len(rest) < 8 {
			return dl, errors.New("dead letter too short")
		}
		dl.Code = int32(binary.BigEndian.Uint32(rest))
		dl.SentToPartition = int32(binary.BigEndian.Uint32(rest[4:]))
		rest = rest[8:]
	}
	d := decoder{b: rest}
	dl.Err = string(d.bytes())
	if d.err != nil {
		return dl, d.err
	}
	rec, err := Decode(d.b)
	if err != nil {
		return dl, err
	}
	dl.Record = rec
	return dl, nil
}
