package wal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"time"
)

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is what the log stores: one Kafka record and where it goes.
type Record struct {
	Topic string
	// Partition is the target partition; PartitionAny (-1) lets the
	// producer's partitioner choose from the key.
	Partition int32
	Key       []byte
	Value     []byte
	Headers   []Header
	// Timestamp is the record's create time; the zero value is stored as
	// "unset".
	Timestamp time.Time
}

// Clone returns a deep copy of r.
func (r Record) Clone() Record {
	c := r
	c.Key = bytes.Clone(r.Key)
	c.Value = bytes.Clone(r.Value)
	if r.Headers != nil {
		c.Headers = make([]Header, len(r.Headers))
		for i, h := range r.Headers {
			c.Headers[i] = Header{Key: h.Key, Value: bytes.Clone(h.Value)}
		}
	}
	return c
}

// PartitionAny lets the partitioner choose the partition.
const PartitionAny int32 = -1

// codecVersion is the first byte after the checksum. Bump it with any change
// to the layout in doc.go; Decode refuses versions it does not know.
const codecVersion = 1

// parkedVersion is the codec version of a record in a park log: version
// 1's layout with the record's original WAL sequence (8 bytes) after the
// version byte, under the same checksum. It appears only in park logs.
const parkedVersion = 2

// headerSize is crc32c(4) + version(1) + timestamp(8) + partition(4).
const headerSize = 4 + 1 + 8 + 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errEntry is wrapped by every decode failure so that callers can tell a bad
// entry (ErrCorrupt) from other failures.
var errEntry = fmt.Errorf("%w: bad entry", ErrCorrupt)

// holeVersion marks a hole: the entry recovery writes in place of a record
// it could not read, so that every later sequence keeps its number.
const holeVersion = 0xFE

// holeSize is a hole's length: a checksum and the hole version byte. No
// record is that short.
const holeSize = 5

// EncodeHole returns a hole entry: a checksum and the hole version byte.
func EncodeHole() []byte {
	b := []byte{0, 0, 0, 0, holeVersion}
	binary.BigEndian.PutUint32(b, crc32.Checksum(b[4:], castagnoli))
	return b
}

// IsHole reports whether b is a hole entry (see EncodeHole).
func IsHole(b []byte) bool {
	return len(b) == holeSize && b[4] == holeVersion && binary.BigEndian.Uint32(b) == crc32.Checksum(b[4:], castagnoli)
}

// EncodedLen returns the number of bytes Encode will produce for r.
func EncodedLen(r *Record) int {
	n := headerSize
	n += uvarintLen(uint64(len(r.Topic))) + len(r.Topic)
	n += bytesLen(r.Key) + bytesLen(r.Value)
	n += uvarintLen(uint64(len(r.Headers)))
	for _, h := range r.Headers {
		n += uvarintLen(uint64(len(h.Key))) + len(h.Key) + bytesLen(h.Value)
	}
	return n
}

// AppendEncode appends r's encoding (layout in doc.go) to dst.
func AppendEncode(dst []byte, r *Record) []byte { return appendEncode(dst, r, 0) }

// appendEncode is AppendEncode storing unset (Unix nanoseconds) when r has
// no timestamp.
func appendEncode(dst []byte, r *Record, unset int64) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, codecVersion)
	dst = appendFields(dst, r, unset)
	binary.BigEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// AppendEncodeParked appends r's encoding as a parked record of original
// sequence seq (version 2, see doc.go) to dst.
func AppendEncodeParked(dst []byte, seq uint64, r *Record) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, parkedVersion)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = appendFields(dst, r, 0)
	binary.BigEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// appendFields appends the fields after the version (and, parked, the
// sequence): timestamp, partition, topic, key, value, headers.
func appendFields(dst []byte, r *Record, unset int64) []byte {
	ts := unset
	if !r.Timestamp.IsZero() {
		ts = r.Timestamp.UnixNano()
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	dst = binary.BigEndian.AppendUint32(dst, uint32(r.Partition))
	dst = binary.AppendUvarint(dst, uint64(len(r.Topic)))
	dst = append(dst, r.Topic...)
	dst = appendBytes(dst, r.Key)
	dst = appendBytes(dst, r.Value)
	dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		dst = binary.AppendUvarint(dst, uint64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendBytes(dst, h.Value)
	}
	return dst
}

// Encode returns r's encoding.
func Encode(r *Record) []byte { return AppendEncode(make([]byte, 0, EncodedLen(r)), r) }

// Decode parses one entry. Key, Value and header values alias b; copy them
// if b is reused. It never panics and allocates at most a small multiple of
// len(b) whatever the bytes say.
func Decode(b []byte) (Record, error) { return decode(b, "") }

// decode is Decode that reuses topic as the record's Topic when the bytes
// are equal, saving the string allocation for runs of one topic.
func decode(b []byte, topic string) (Record, error) { return decodeEntry(b, topic, true) }

// decodeEntry is decode that checks the checksum only if verify is set:
// for bytes that never came back from the disk (see Log.inMemory) it
// protects nothing. Every other check stays.
func decodeEntry(b []byte, topic string, verify bool) (Record, error) {
	var r Record
	if len(b) < headerSize {
		return r, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", errEntry, len(b), headerSize)
	}
	if want := binary.BigEndian.Uint32(b); verify {
		if got := crc32.Checksum(b[4:], castagnoli); want != got {
			return r, fmt.Errorf("%w: crc32c %08x, want %08x", errEntry, got, want)
		}
	}
	if b[4] != codecVersion {
		return r, fmt.Errorf("%w: unknown codec version %d", errEntry, b[4])
	}
	return decodeFields(b[5:], topic)
}

// DecodeParked parses one parked entry (version 2): the record's original
// sequence and the record, aliasing b as Decode does.
func DecodeParked(b []byte) (uint64, Record, error) { return decodeParked(b, "") }

func decodeParked(b []byte, topic string) (uint64, Record, error) {
	if len(b) < headerSize+8 {
		return 0, Record{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte parked header", errEntry, len(b), headerSize+8)
	}
	if want, got := binary.BigEndian.Uint32(b), crc32.Checksum(b[4:], castagnoli); want != got {
		return 0, Record{}, fmt.Errorf("%w: crc32c %08x, want %08x", errEntry, got, want)
	}
	if b[4] != parkedVersion {
		return 0, Record{}, fmt.Errorf("%w: codec version %d in a park log", errEntry, b[4])
	}
	r, err := decodeFields(b[13:], topic)
	return binary.BigEndian.Uint64(b[5:]), r, err
}

// decodeFields parses what appendFields wrote; b is checksummed.
func decodeFields(b []byte, topic string) (Record, error) {
	var r Record
	if ts := int64(binary.BigEndian.Uint64(b)); ts != 0 {
		r.Timestamp = time.Unix(0, ts)
	}
	r.Partition = int32(binary.BigEndian.Uint32(b[8:]))
	if r.Partition < PartitionAny {
		return Record{}, fmt.Errorf("%w: partition %d", errEntry, r.Partition)
	}
	d := decoder{b: b[12:]}
	if t := d.bytes(); string(t) == topic {
		r.Topic = topic
	} else {
		r.Topic = string(t)
	}
	r.Key = d.optBytes()
	r.Value = d.optBytes()
	if n := d.uvarint(); n > 0 && d.err == nil {
		// Each header takes at least two bytes: never trust n beyond that.
		if n > uint64(len(d.b))/2 {
			return r, fmt.Errorf("%w: %d headers in %d bytes", errEntry, n, len(d.b))
		}
		r.Headers = make([]Header, n)
		for i := range r.Headers {
			r.Headers[i].Key = string(d.bytes())
			r.Headers[i].Value = d.optBytes()
		}
	}
	if d.err != nil {
		return Record{}, d.err
	}
	if len(d.b) != 0 {
		return Record{}, fmt.Errorf("%w: %d trailing bytes", errEntry, len(d.b))
	}
	if r.Topic == "" {
		return Record{}, fmt.Errorf("%w: empty topic", errEntry)
	}
	return r, nil
}

// Nil and empty byte slices differ in Kafka (null key vs empty key), so the
// length is stored plus one and zero means nil.
func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b))+1)
	return append(dst, b...)
}

func bytesLen(b []byte) int {
	if b == nil {
		return 1
	}
	return uvarintLen(uint64(len(b))+1) + len(b)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint", errEntry)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: field of %d bytes overruns the entry", errEntry, n)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte { return d.take(d.uvarint()) }

func (d *decoder) optBytes() []byte {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return nil
	}
	if n == math.MaxUint64 {
		d.err = fmt.Errorf("%w: bad length", errEntry)
		return nil
	}
	return d.take(n - 1)
}

// Plausible reports whether entry may be one this package wrote (a record
// of a codec version Decode reads, or a hole) from its layout alone: the
// version byte, and for a record the partition and the topic's length. It
// is the cheap test before the checksum for a scanner resynchronising over
// damaged bytes (package recovery): true is confirmed by IsHole or Decode,
// false is final. It follows Decode: whatever Decode or IsHole accepts, it
// accepts (FuzzDecode), so a new codec version updates both or fails the
// fuzz target's seeds.
func Plausible(entry []byte) bool {
	if len(entry) == holeSize {
		return entry[4] == holeVersion
	}
	if len(entry) <= headerSize || entry[4] != codecVersion {
		return false
	}
	if int32(binary.BigEndian.Uint32(entry[13:])) < PartitionAny {
		return false
	}
	n, k := binary.Uvarint(entry[headerSize:])
	return k > 0 && n > 0 && n <= uint64(len(entry)-headerSize-k)
}
