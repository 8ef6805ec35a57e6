package sender

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

// Checkpoint is the WAL position that Kafka has committed for one
// TransactionalID: the value of its record in the checkpoint topic, written
// inside every transaction together with the records it covers, so that
// the records and the position become visible (read_committed) together or
// not at all (Kafka Connect's exactly-once sources, KIP-618, do the same
// with their offsets topic).
//
// Every WAL sequence below Next is in Kafka (committed) or dead-lettered,
// except the records of each Deferred partition from its From onward:
// partitions kept out of the transactions while they stall, so that they
// do not hold back the others, resume from there.
type Checkpoint struct {
	// WALID identifies the WAL directory whose sequences these are.
	WALID [16]byte
	// Writer identifies the Sender (one per Open) that committed it, and
	// Commit counts the commits of this TransactionalID: together they
	// tell a Sender whether the latest checkpoint is its own.
	Writer uint64
	Commit uint64
	// Time is when the transaction was committed (its start of commit).
	Time time.Time
	// Last is a fingerprint of the record at Next-1 (fingerprint), 0
	// when there is none: a WAL whose record there differs is another
	// history (a copy of the directory that appended on its own), whose
	// records this checkpoint does not cover.
	Last uint32
	// Next is the lowest sequence not committed.
	Next uint64
	// Deferred lists partitions whose records from From on are not
	// committed, though below Next. Sorted by topic and partition.
	Deferred []PartitionFrom
}

// PartitionFrom is a partition's first uncommitted sequence.
type PartitionFrom struct {
	Topic     string
	Partition int32
	From      uint64
}

// checkpointVersion is the layout below; a new layout gets a new version,
// and decodeCheckpoint keeps reading the old ones.
//
// The record's key is the TransactionalID. Its value, integers big endian:
//
//	offset  size  field
//	0       1     version = 1
//	1       16    WAL id
//	17      8     writer
//	25      8     commit
//	33      8     time, Unix milliseconds
//	41      4     fingerprint of the record at next-1 (0: none)
//	45      uv    next
//	        uv    number of deferred partitions, then for each:
//	              uv len(topic), topic bytes, 4 partition (int32), uv from
//
// Kafka checksums the record batch; the value carries no checksum of its
// own.
const checkpointVersion = 1

// checkpointFixed is the size of the fixed fields.
const checkpointFixed = 45

// maxDeferred bounds the partitions a checkpoint may list, so that a
// corrupt count cannot make decode allocate without bound.
const maxDeferred = 1 << 16

func (c *Checkpoint) encode() []byte {
	b := make([]byte, checkpointFixed, checkpointFixed+2*binary.MaxVarintLen64+len(c.Deferred)*32)
	b[0] = checkpointVersion
	copy(b[1:17], c.WALID[:])
	binary.BigEndian.PutUint64(b[17:], c.Writer)
	binary.BigEndian.PutUint64(b[25:], c.Commit)
	binary.BigEndian.PutUint64(b[33:], uint64(c.Time.UnixMilli()))
	binary.BigEndian.PutUint32(b[41:], c.Last)
	b = binary.AppendUvarint(b, c.Next)
	b = binary.AppendUvarint(b, uint64(len(c.Deferred)))
	for _, d := range c.Deferred {
		b = binary.AppendUvarint(b, uint64(len(d.Topic)))
		b = append(b, d.Topic...)
		b = binary.BigEndian.AppendUint32(b, uint32(d.Partition))
		b = binary.AppendUvarint(b, d.From)
	}
	return b
}

var errCheckpointShort = errors.New("truncated")

// decodeCheckpoint parses a checkpoint record's value.
func decodeCheckpoint(b []byte) (Checkpoint, error) {
	var c Checkpoint
	if len(b) == 0 {
		return c, fmt.Errorf("checkpoint: empty value")
	}
	if b[0] != checkpointVersion {
		return c, fmt.Errorf("checkpoint: version %d (this kafkawal reads version %d; was it written by a newer one?)", b[0], checkpointVersion)
	}
	if len(b) < checkpointFixed {
		return c, fmt.Errorf("checkpoint: %w: %d bytes", errCheckpointShort, len(b))
	}
	copy(c.WALID[:], b[1:17])
	c.Writer = binary.BigEndian.Uint64(b[17:])
	c.Commit = binary.BigEndian.Uint64(b[25:])
	c.Time = time.UnixMilli(int64(binary.BigEndian.Uint64(b[33:])))
	c.Last = binary.BigEndian.Uint32(b[41:])
	r := b[checkpointFixed:]
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(r)
		// An overlong encoding (a last byte of 0) is refused: one value,
		// one encoding.
		if n <= 0 || (n > 1 && r[n-1] == 0) {
			return 0, false
		}
		r = r[n:]
		return v, true
	}
	var ok bool
	if c.Next, ok = uv(); !ok {
		return c, fmt.Errorf("checkpoint: %w next", errCheckpointShort)
	}
	n, ok := uv()
	if !ok || n > maxDeferred {
		return c, fmt.Errorf("checkpoint: bad deferred partition count")
	}
	for i := uint64(0); i < n; i++ {
		var d PartitionFrom
		l, ok := uv()
		if !ok || l == 0 || l > uint64(len(r)) {
			return c, fmt.Errorf("checkpoint: deferred partition %d: bad topic length", i)
		}
		d.Topic, r = string(r[:l]), r[l:]
		if len(r) < 4 {
			return c, fmt.Errorf("checkpoint: deferred partition %d: %w", i, errCheckpointShort)
		}
		d.Partition, r = int32(binary.BigEndian.Uint32(r)), r[4:]
		if d.From, ok = uv(); !ok {
			return c, fmt.Errorf("checkpoint: deferred partition %d: %w", i, errCheckpointShort)
		}
		c.Deferred = append(c.Deferred, d)
	}
	if len(r) != 0 {
		return c, fmt.Errorf("checkpoint: %d bytes after the last field", len(r))
	}
	return c, nil
}

// fingerprint identifies a record for Checkpoint.Last: CRC-32C of its
// fields, never 0 (0 means none).
func fingerprint(r *wal.Record) uint32 {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(r.Timestamp.UnixNano()))
	binary.BigEndian.PutUint32(b[8:], uint32(r.Partition))
	h := crc32.Update(0, castagnoli, b[:])
	h = crc32.Update(h, castagnoli, []byte(r.Topic))
	h = crc32.Update(h, castagnoli, r.Key)
	h = crc32.Update(h, castagnoli, r.Value)
	for _, hd := range r.Headers {
		h = crc32.Update(h, castagnoli, []byte(hd.Key))
		h = crc32.Update(h, castagnoli, hd.Value)
	}
	return max(h, 1)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// committed reports whether the record seq of (topic, partition) is
// covered by c: in Kafka or dead-lettered.
func (c *Checkpoint) committed(seq uint64, topic string, partition int32) bool {
	if seq >= c.Next {
		return false
	}
	for _, d := range c.Deferred {
		if d.Partition == partition && d.Topic == topic {
			return seq < d.From
		}
	}
	return true
}

// low is the lowest sequence c does not cover: where a replay starts.
func (c *Checkpoint) low() uint64 {
	low := c.Next
	for _, d := range c.Deferred {
		low = min(low, d.From)
	}
	return low
}

// sortDeferred puts c.Deferred in its canonical order.
func (c *Checkpoint) sortDeferred() {
	slices.SortFunc(c.Deferred, func(a, b PartitionFrom) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
}
