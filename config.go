package kafkawal

import (
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal/recovery"
	"github.com/kafkawal/kafkawal/sender"
	"github.com/kafkawal/kafkawal/wal"
)

// Durability says when Append may return: see the constants.
type Durability = wal.SyncMode

const (
	// SyncAlways: Append returns after the record is fsync'd; concurrent
	// appenders share one fsync. Survives power loss. Default.
	SyncAlways = wal.SyncAlways
	// SyncPeriodic: Append returns after write(2); fsync follows within
	// SyncInterval. Survives a process crash; a power loss can lose the
	// last SyncInterval.
	SyncPeriodic = wal.SyncPeriodic
	// SyncNever: Append returns after write(2); the OS decides when to
	// write back.
	SyncNever = wal.SyncNever
)

// FullPolicy says what Append does when the WAL holds MaxDiskBytes.
type FullPolicy = wal.FullPolicy

const (
	// Block waits until room frees up or the context ends. Default.
	Block = wal.Block
	// Reject fails at once with an error matching ErrFull.
	Reject = wal.Reject
)

// CorruptionPolicy says what Open does about damage in the middle of the
// WAL (a torn tail left by a crash is always repaired).
type CorruptionPolicy = recovery.Policy

const (
	// FailOnCorruption: Open fails with an error matching ErrCorrupt that
	// names the segment file and offset, and changes nothing. Default.
	// Damage that lies wholly at or below the durable cursor is not
	// refused: its records are in Kafka already, so Open copies it to
	// quarantine/, logs a warning and continues under every policy.
	FailOnCorruption = recovery.FailOnCorruption
	// QuarantineCorruption: Open copies the bad bytes to quarantine/,
	// counts the unreadable records not yet delivered as lost (Stats.Lost,
	// logged as lost_records), and continues.
	QuarantineCorruption = recovery.QuarantineCorruption
)

// DefaultMaxRecordBytes is librdkafka's default message.max.bytes.
const DefaultMaxRecordBytes = wal.DefaultMaxRecordBytes

// Config configures a Producer. The zero value of every field but Dir and
// Kafka["bootstrap.servers"] is a good default.
type Config struct {
	// Dir is the WAL directory (created 0700 if missing). Required. One
	// producer at a time may open it.
	Dir string
	// Kafka holds librdkafka settings; bootstrap.servers is required.
	// TLS/SASL settings pass through untouched; values are never logged.
	// kafkawal sets, unless given: enable.idempotence=true, acks=all,
	// linger.ms=5, message.timeout.ms=0 (never give up on a record; the
	// WAL holds the backlog). It rejects acks other than all,
	// enable.idempotence=false and a finite message.timeout.ms unless
	// AllowWeakerDelivery is set, the keys it must own
	// (go.delivery.report.fields, go.events.channel.size,
	// go.logs.channel.enable, transactional.id), and whatever librdkafka
	// itself refuses (Validate).
	Kafka kafka.ConfigMap

	// Durability: when Append returns. Default SyncAlways.
	Durability Durability
	// SyncInterval bounds unsynced data under SyncPeriodic. Default 100ms.
	SyncInterval time.Duration
	// MaxDiskBytes caps the WAL's segment files. Default 1 GiB, or 4 x
	// SegmentBytes or 4 x MaxRecordBytes when they are set and that is
	// more (defaults.go).
	MaxDiskBytes int64
	// FullPolicy: what Append does at the cap. Default Block.
	FullPolicy FullPolicy
	// SegmentBytes is the WAL segment size. Default 8 MiB; when
	// MaxDiskBytes is set, MaxDiskBytes/8 if that is less (at least 64
	// KiB). Memory use of the WAL is about 3 x SegmentBytes.
	SegmentBytes int64
	// MaxRecordBytes limits one record as stored (topic + key + value +
	// headers + ~20 bytes), checked before it enters the WAL. Default
	// librdkafka's message.max.bytes if set in Kafka, else 1000000; at most
	// MaxDiskBytes/4 and Kafka[queue.buffering.max.kbytes] (librdkafka
	// never takes a record larger than its queue). A value set above
	// message.max.bytes (or its default) or the queue is refused by Open.
	MaxRecordBytes int

	// AsyncQueue bounds AppendAsync calls whose callbacks have not
	// returned (queued, being written, waiting for their fsync or their
	// turn); AppendAsync blocks while it is full. Default 8192.
	AsyncQueue int
	// AsyncQueueBytes bounds the bytes of their records as stored; it is
	// allocated on the first AppendAsync. Default 8 MiB, or
	// MaxRecordBytes if larger; at least MaxRecordBytes.
	AsyncQueueBytes int64

	// MaxInFlight bounds records handed to librdkafka and not yet
	// reported: memory is bounded by this window, not by the backlog.
	// Default: a window that adapts to the partitions of the topics
	// produced to since Open, 512 records for each, at least 32768 and at most 524288
	// (reached at 1,024 partitions), each at most
	// Kafka[queue.buffering.max.messages] when that is set. librdkafka
	// batches per partition, and a window spread thin over many
	// partitions costs its broker thread a wake-up for every few records.
	// Set, it is the window's size, whatever the partitions. Whichever of
	// MaxInFlight and MaxInFlightBytes is reached first binds: small
	// records (100 B) are bounded by the count, 1 KiB records by the bytes
	// (about 29,000 of them at 32 MiB), which a replay of a large backlog
	// needs to keep the broker busy.
	MaxInFlight int
	// MaxInFlightBytes bounds their bytes. Default: adapts the same way,
	// 128 KiB for each partition, at least 32 MiB and at most 128 MiB,
	// both at least 4 x MaxRecordBytes (or Kafka[message.max.bytes]) and
	// at most Kafka[queue.buffering.max.kbytes] when that is set.
	MaxInFlightBytes int64
	// CursorSyncInterval: how often the delivered watermark is persisted;
	// after a crash at most this much delivered data is sent again.
	// Default 100ms; under SyncPeriodic, SyncInterval if that is longer.
	CursorSyncInterval time.Duration
	// AllowWeakerDelivery permits acks other than all,
	// enable.idempotence=false and a finite message.timeout.ms, each of
	// which can lose or reorder records in Kafka (a timeout: librdkafka
	// gives records up and may accept later ones of their partition
	// first; kafkawal re-sends them, out of order). Default false. Refused
	// with ExactlyOnce, which allows a finite message.timeout.ms of its own.
	// Without idempotence a stalled partition holds the others back (see
	// Partial outages in the README).
	AllowWeakerDelivery bool

	// PartitionStallTimeout: a partition whose oldest record in flight has
	// waited this long, and that delivered none in that time, is stalled,
	// unless it is only waiting its turn (the others are being served and
	// have had at most 16 rounds of turns since its last: a slow cluster
	// with many partitions can take longer than this for a round): logged
	// once, listed in Stats.StalledPartitions, and left out for keyless
	// records. (Its records stop holding the others back as soon as it
	// holds its share of the in-flight window, or holds up the window, for
	// a second.) Default 10s.
	PartitionStallTimeout time.Duration
	// ParkAfter: once a partition has been stalled this long, its
	// unacknowledged records are copied into a park log in Dir/park/, so
	// that the WAL's segments behind it can be deleted and the disk holds
	// only the stalled partition's backlog. Default 30s; negative: never
	// park. Never with Delivery ExactlyOnce, which refuses a positive one.
	ParkAfter time.Duration

	// Delivery: AtLeastOnce (default) or ExactlyOnce.
	Delivery Delivery
	// TransactionalID is librdkafka's transactional.id under ExactlyOnce,
	// and the key of this directory's checkpoint. Required with
	// ExactlyOnce, refused without. Keep it for the life of the WAL
	// directory and give no other producer the same: a second instance
	// with it fences the first, which then stops delivering (ErrFenced).
	// A new directory needs a new TransactionalID.
	TransactionalID string
	// CommitInterval is how long a transaction gathers records before it
	// is committed, under ExactlyOnce: the trade between latency (records
	// become visible to read_committed consumers at the commit after
	// them) and throughput (each commit is a round trip to the
	// transaction coordinator, during which nothing is produced). A
	// transaction is also committed early when it holds MaxInFlight
	// records or MaxInFlightBytes. Default 100ms; refused without
	// ExactlyOnce.
	CommitInterval time.Duration
	// CheckpointTopic is the compacted topic that holds each
	// TransactionalID's committed WAL position, under ExactlyOnce. It is
	// created if missing (cleanup.policy=compact, 25 partitions, the
	// broker's replication factor). Default "kafkawal-checkpoints";
	// refused without ExactlyOnce.
	CheckpointTopic string

	// CorruptionPolicy: see the constants. Default FailOnCorruption.
	CorruptionPolicy CorruptionPolicy
	// FullScanOnOpen makes Open check every segment's checksums, reading
	// the whole WAL (time grows with the backlog: bench/HISTORY.md),
	// instead of the tail segment only. Without it, a damaged record in a
	// sealed segment is found when the sender reaches it: it is never
	// sent, delivery stops there, and the error is logged until an
	// operator runs `kafkawal verify`. Default false.
	FullScanOnOpen bool
	// FileMode and DirMode for the WAL. Default 0600 and 0700.
	FileMode, DirMode uint32

	// Logger receives kafkawal's and librdkafka's log events. Default:
	// none.
	Logger *zerolog.Logger
	// OnDeliveryResult, if set, is called once for each record resolved:
	// delivered (Err nil), dead-lettered (Err a *DeadLetterError) or lost
	// to corruption (Err matching ErrCorrupt), on the sender goroutine, in
	// report order, after OnDelivered and OnDeadLetter. Keep it fast: it
	// delays delivery. To wait for one record, see WaitDelivered.
	OnDeliveryResult func(DeliveryResult)
	// OnDelivered, if set, is called for each delivered record, as
	// OnDeliveryResult is.
	//
	// Deprecated: use OnDeliveryResult, whose struct can grow; this
	// positional form keeps working.
	OnDelivered func(seq uint64, topic string, partition int32, offset int64)
	// OnDeadLetter, if set, is called for each record Kafka refused for
	// good, after it is in the dead-letter log. Same rules as
	// OnDeliveryResult.
	OnDeadLetter func(DeadLetter)

	// minInFlight and minInFlightBytes are the window's least size when
	// it adapts (derive): set only with MaxInFlight (MaxInFlightBytes)
	// left at zero.
	minInFlight      int
	minInFlightBytes int64
}

// DeadLetter is a record Kafka refused for good (too large, invalid, not
// authorized, topic missing), kept in DIR/deadletter.log.
type DeadLetter = wal.DeadLetter

func (c Config) walOptions() wal.Options {
	c = c.derive()
	o := wal.Options{
		Sync:            c.Durability,
		SyncInterval:    c.SyncInterval,
		SegmentBytes:    c.SegmentBytes,
		MaxDiskBytes:    c.MaxDiskBytes,
		FullPolicy:      c.FullPolicy,
		MaxRecordBytes:  c.MaxRecordBytes,
		AsyncQueue:      c.AsyncQueue,
		AsyncQueueBytes: c.AsyncQueueBytes,
		FileMode:        osMode(c.FileMode),
		DirMode:         osMode(c.DirMode),
		Logger:          c.Logger,
	}
	if o.MaxRecordBytes == 0 {
		// Kafka's limit (librdkafka's default unless set) is the record's,
		// as far as the WAL's size allows.
		n := int64(wal.DefaultMaxRecordBytes)
		if v, ok := kafkaInt(c.Kafka, "message.max.bytes"); ok && v > 0 {
			n = v
		}
		if kb, ok := kafkaInt(c.Kafka, "queue.buffering.max.kbytes"); ok && kb > 0 {
			n = min(n, kb<<10)
		}
		o.MaxRecordBytes = int(min(n, int64(wal.MaxRecordBytesLimit(c.MaxDiskBytes))))
	}
	return o
}

func (c Config) senderConfig() sender.Config {
	c = c.derive()
	return sender.Config{
		Kafka:                 c.Kafka,
		MaxInFlight:           c.MaxInFlight,
		MaxInFlightBytes:      c.MaxInFlightBytes,
		MinInFlight:           c.minInFlight,
		MinInFlightBytes:      c.minInFlightBytes,
		CursorSyncInterval:    c.CursorSyncInterval,
		AllowWeakerDelivery:   c.AllowWeakerDelivery,
		PartitionStallTimeout: c.PartitionStallTimeout,
		ParkAfter:             c.ParkAfter,
		Logger:                c.Logger,
		ExactlyOnce:           c.Delivery == ExactlyOnce,
		TransactionalID:       c.TransactionalID,
		CommitInterval:        c.CommitInterval,
		CheckpointTopic:       c.CheckpointTopic,
	}
}
