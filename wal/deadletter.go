package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
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
// Frames are fsync'd before Add returns; a torn last frame is cut off when
// the log is opened again (and counted).
type DeadLetters struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// OpenDeadLetters opens dir's dead-letter log for appending, creating it
// with perm (0: DefaultFileMode). It returns how many bytes of a torn last
// frame it cut off.
func OpenDeadLetters(dir string, perm os.FileMode) (*DeadLetters, int64, error) {
	if perm == 0 {
		perm = DefaultFileMode
	}
	path := filepath.Join(dir, DeadLetterFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, perm)
	if err != nil {
		return nil, 0, fmt.Errorf("kafkawal: open dead letters: %w", err)
	}
	good, size, err := scanDeadLetters(f, nil)
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
	return &DeadLetters{f: f, path: path}, size - good, nil
}

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
// missing file means none. A torn last frame ends the scan without error.
func ReadDeadLetters(dir string, fn func(DeadLetter) error) error {
	f, err := os.Open(filepath.Join(dir, DeadLetterFile))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kafkawal: open dead letters: %w", err)
	}
	defer f.Close()
	_, _, err = scanDeadLetters(f, fn)
	return err
}

// scanDeadLetters reads frames from the start of f and returns the offset
// after the last good frame and the file size. A frame that fails its
// length or checksum ends the scan (a torn tail); so does fn's error, which
// is returned.
func scanDeadLetters(f *os.File, fn func(DeadLetter) error) (good, size int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	size = fi.Size()
	r := bufio.NewReader(io.NewSectionReader(f, 0, size))
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return good, size, nil
		}
		n := int64(binary.BigEndian.Uint32(hdr[:]))
		if n > size-good-8 {
			return good, size, nil
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return good, size, nil
		}
		if crc32.Checksum(p, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			return good, size, nil
		}
		dl, derr := decodeDeadLetter(p)
		if derr != nil {
			return good, size, fmt.Errorf("kafkawal: dead letter at offset %d: %w", good, derr)
		}
		good += 8 + n
		if fn != nil {
			if err := fn(dl); err != nil {
				return good, size, err
			}
		}
	}
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
