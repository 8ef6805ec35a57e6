package wal

import (
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// SyncMode says when Append may report a record durable.
type SyncMode int

const (
	// SyncAlways answers Append after the record is fsync'd. Concurrent
	// appenders share one fsync (group commit). Default.
	SyncAlways SyncMode = iota
	// SyncPeriodic answers after write(2); an fsync follows within
	// SyncInterval. A process crash loses nothing; a power loss can lose
	// the last SyncInterval.
	SyncPeriodic
	// SyncNever answers after write(2) and leaves fsync to the OS.
	SyncNever
)

func (m SyncMode) String() string {
	switch m {
	case SyncAlways:
		return "always"
	case SyncPeriodic:
		return "periodic"
	case SyncNever:
		return "never"
	}
	return fmt.Sprintf("SyncMode(%d)", int(m))
}

// FullPolicy says what Append does when the log holds MaxDiskBytes.
type FullPolicy int

const (
	// Block waits until room frees up or the context ends. Default.
	Block FullPolicy = iota
	// Reject fails at once with an error matching ErrFull.
	Reject
)

func (p FullPolicy) String() string {
	switch p {
	case Block:
		return "block"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("FullPolicy(%d)", int(p))
}

// Defaults. DefaultSegmentBytes is a trade: tidwall/wal keeps the tail
// segment and up to two read segments in memory (3 x 8 MiB bounds the WAL's
// memory), each new segment costs a create, an fsync and a directory fsync,
// and a cache miss in tidwall reads a whole segment (bench/HISTORY.md,
// "Figures that were in code comments").
// DefaultMaxRecordBytes is librdkafka's default message.max.bytes: Kafka
// would refuse a larger record anyway.
const (
	DefaultSyncInterval    = 100 * time.Millisecond
	DefaultSegmentBytes    = 8 << 20
	DefaultMaxDiskBytes    = 1 << 30
	DefaultMaxRecordBytes  = 1000000
	DefaultMaxBatchBytes   = 4 << 20
	DefaultAsyncQueue      = 8192
	DefaultAsyncQueueBytes = 8 << 20
	DefaultRetryAfterError = time.Second
	DefaultFileMode        = 0o600
	DefaultDirMode         = 0o700
	// minSegmentsPerCap: truncation frees whole sealed segments only, so the
	// cap must leave room for several of them beside the tail segment.
	minSegmentsPerCap = 4
)

// The floors Validate enforces: a segment of at least MinSegmentBytes, a
// cap of at least MinSegmentsPerCap segments (and of MinSegmentsPerCap
// largest records).
const (
	MinSegmentBytes   = 64 << 10
	MinSegmentsPerCap = minSegmentsPerCap
)

// Options configures a Log. The zero value of every field means its default.
type Options struct {
	// Sync is the durability mode. Default SyncAlways.
	Sync SyncMode
	// SyncInterval bounds how long a SyncPeriodic write stays unsynced.
	// Default 100ms.
	SyncInterval time.Duration
	// SegmentBytes is the target size of a segment file. Default 8 MiB.
	SegmentBytes int64
	// MaxDiskBytes caps the bytes of all segment files. Default 1 GiB; at
	// least 4 x SegmentBytes.
	MaxDiskBytes int64
	// FullPolicy is what Append does at the cap. Default Block.
	FullPolicy FullPolicy
	// MaxRecordBytes is the largest encoded record (topic, key, value,
	// headers plus 20 bytes of framing). Default DefaultMaxRecordBytes
	// (1000000), or MaxRecordBytesLimit if that is smaller.
	MaxRecordBytes int
	// MaxBatchBytes bounds one group-commit write. Default 4 MiB.
	MaxBatchBytes int
	// AsyncQueue bounds AppendAsync calls whose callbacks have not
	// returned: queued, being written, waiting for their fsync or for
	// their turn to be called back. Default 8192.
	AsyncQueue int
	// AsyncQueueBytes bounds the encoded records of those calls; it is
	// allocated on the first AppendAsync. Default 8 MiB, or
	// MaxRecordBytes if that is larger; at least MaxRecordBytes.
	AsyncQueueBytes int64
	// RetryAfterError is how long after a failed write (ENOSPC, EIO) the log
	// waits before it repairs its tail and accepts appends again. Default 1s.
	RetryAfterError time.Duration
	// FileMode and DirMode are the permissions of new files and
	// directories. Default 0600 and 0700.
	FileMode, DirMode os.FileMode
	// Logger receives the log's events. Default: none.
	Logger *zerolog.Logger
	// BeforeOpen, if set, runs after the directory lock is taken and before
	// the segments are opened: the place for recovery to check and repair
	// them. Its error fails Open.
	BeforeOpen func(dir string) error
	// ObserveFsync, if set, is called with the duration of each fdatasync
	// the log runs on its tail segment (failed ones included), on the
	// writer's or the syncer's goroutine: it must be quick and must not
	// block. Default: none.
	ObserveFsync func(time.Duration)
	// ObserveAsyncAppend, if set, is called on the completion goroutine
	// with the time from each successful AppendAsync call to its callback
	// (calls given a zero now are not observed): it must be quick.
	// Default: none.
	ObserveAsyncAppend func(time.Duration)

	hooks *hooks // fault injection for this package's tests
}

// MaxRecordBytesLimit returns the most MaxRecordBytes may be in a log of
// maxDiskBytes (0: DefaultMaxDiskBytes): truncation frees whole segments
// only, so the cap must hold several records beside the tail segment.
func MaxRecordBytesLimit(maxDiskBytes int64) int {
	if maxDiskBytes == 0 {
		maxDiskBytes = DefaultMaxDiskBytes
	}
	return int(maxDiskBytes / minSegmentsPerCap)
}

func (o Options) withDefaults() Options {
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.MaxDiskBytes == 0 {
		o.MaxDiskBytes = DefaultMaxDiskBytes
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = min(DefaultMaxRecordBytes, MaxRecordBytesLimit(o.MaxDiskBytes))
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.AsyncQueue == 0 {
		o.AsyncQueue = DefaultAsyncQueue
	}
	if o.AsyncQueueBytes == 0 {
		o.AsyncQueueBytes = max(DefaultAsyncQueueBytes, int64(o.MaxRecordBytes))
	}
	if o.RetryAfterError == 0 {
		o.RetryAfterError = DefaultRetryAfterError
	}
	if o.FileMode == 0 {
		o.FileMode = DefaultFileMode
	}
	if o.DirMode == 0 {
		o.DirMode = DefaultDirMode
	}
	if o.Logger == nil {
		nop := zerolog.Nop()
		o.Logger = &nop
	}
	if o.ObserveFsync == nil {
		o.ObserveFsync = func(time.Duration) {}
	}
	if o.ObserveAsyncAppend == nil {
		o.ObserveAsyncAppend = func(time.Duration) {}
	}
	return o
}

// Validate reports the first invalid field of o (after defaults), by name.
func (o Options) Validate() error {
	o = o.withDefaults()
	switch {
	case o.Sync < SyncAlways || o.Sync > SyncNever:
		return fmt.Errorf("kafkawal: config: Durability: unknown mode %d", o.Sync)
	case o.FullPolicy < Block || o.FullPolicy > Reject:
		return fmt.Errorf("kafkawal: config: FullPolicy: unknown policy %d", o.FullPolicy)
	case o.SyncInterval < 0:
		return fmt.Errorf("kafkawal: config: SyncInterval: %v is negative", o.SyncInterval)
	case o.SegmentBytes < MinSegmentBytes:
		return fmt.Errorf("kafkawal: config: SegmentBytes: %d is below 64 KiB", o.SegmentBytes)
	case o.SegmentBytes > 1<<30:
		return fmt.Errorf("kafkawal: config: SegmentBytes: %d is above 1 GiB (a segment is held in memory)", o.SegmentBytes)
	case o.MaxDiskBytes < minSegmentsPerCap*o.SegmentBytes:
		return fmt.Errorf("kafkawal: config: MaxDiskBytes: %d is below %d x SegmentBytes (%d)", o.MaxDiskBytes, minSegmentsPerCap, o.SegmentBytes)
	case o.MaxRecordBytes < 0 || o.MaxRecordBytes > MaxRecordBytesLimit(o.MaxDiskBytes):
		return fmt.Errorf("kafkawal: config: MaxRecordBytes: %d must be positive and at most MaxDiskBytes/%d", o.MaxRecordBytes, minSegmentsPerCap)
	case o.MaxBatchBytes < 0:
		return fmt.Errorf("kafkawal: config: MaxBatchBytes: %d is negative", o.MaxBatchBytes)
	case o.AsyncQueue < 0:
		return fmt.Errorf("kafkawal: config: AsyncQueue: %d is negative", o.AsyncQueue)
	case o.AsyncQueueBytes < int64(o.MaxRecordBytes):
		return fmt.Errorf("kafkawal: config: AsyncQueueBytes: %d is below MaxRecordBytes (%d): a largest record must fit", o.AsyncQueueBytes, o.MaxRecordBytes)
	case o.RetryAfterError < 0:
		return fmt.Errorf("kafkawal: config: RetryAfterError: %v is negative", o.RetryAfterError)
	case o.FileMode&^0o777 != 0 || o.DirMode&^0o777 != 0:
		return fmt.Errorf("kafkawal: config: FileMode/DirMode: only permission bits are allowed")
	}
	return nil
}

// hooks are the points where this package's tests inject faults; only code
// in package wal can set Options.hooks, and nil (or a nil field) means the
// real operation.
type hooks struct {
	// fdatasync replaces every fdatasync of the tail segment: the syncer's
	// and the writer's own (before a rotation, at Close).
	fdatasync func(*os.File) error
	// segmentSkew makes tidwall rotate at SegmentBytes+segmentSkew, where
	// the segment tracker does not expect it.
	segmentSkew int64
}
