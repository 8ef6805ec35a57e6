package kafkawal

import (
	"errors"
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal/sender"
	"github.com/kafkawal/kafkawal/wal"
)

// Defaults that adapt. A field left at its zero value takes a default that
// fits what the application did set, instead of a fixed value that could
// contradict it (a 16 MiB MaxDiskBytes refused for being below 4 x the
// default 8 MiB segment the application never chose). Fields the
// application set are never changed; when they contradict each other,
// Validate says so, naming them. The rules, also in README.md's
// configuration table:
//
//   - SegmentBytes, given MaxDiskBytes: an eighth of it (rounded down to
//     64 KiB), between 64 KiB and 8 MiB, so that the cap holds at least 4
//     segments and whole-segment truncation wastes at most an eighth of it.
//   - MaxDiskBytes, given SegmentBytes or MaxRecordBytes: 1 GiB, or 4 x
//     the larger of them if that is more.
//   - MaxInFlight: a window that adapts to the partitions of the
//     topics produced to since Open: 512 records for each, at least 32768, at most 524288
//     (reached at 1,024 partitions); both at most
//     Kafka[queue.buffering.max.messages] when that is set (librdkafka
//     refuses records beyond it). librdkafka batches per partition: 32768
//     records over 1,000 partitions left each about 33 and cost its
//     broker thread a wake-up for every few (bench/HISTORY.md).
//   - MaxRecordBytes: Kafka[message.max.bytes] (librdkafka's default
//     1000000 when unset), at most MaxDiskBytes/4 and
//     Kafka[queue.buffering.max.kbytes] (librdkafka never takes a record
//     larger than its queue).
//   - MaxInFlightBytes: adapts the same way, 128 KiB for each partition,
//     at least 32 MiB, at most 128 MiB; both at least 4 x MaxRecordBytes
//     (or Kafka[message.max.bytes]), so that large records still travel
//     several at a time; at most Kafka[queue.buffering.max.kbytes] when
//     that is set.
//   - CursorSyncInterval under SyncPeriodic: 100ms, or SyncInterval if
//     longer: an application that fsyncs its records less often to spare
//     the disk does not want the cursor fsync'd ten times as often.

// derive returns c with the zero fields that adapt filled in.
func (c Config) derive() Config {
	if c.SegmentBytes == 0 && c.MaxDiskBytes > 0 {
		seg := c.MaxDiskBytes / 8 &^ (wal.MinSegmentBytes - 1)
		c.SegmentBytes = min(max(seg, wal.MinSegmentBytes), wal.DefaultSegmentBytes)
	}
	if c.MaxDiskBytes == 0 {
		seg := c.SegmentBytes
		if seg == 0 {
			seg = wal.DefaultSegmentBytes
		}
		c.MaxDiskBytes = max(wal.DefaultMaxDiskBytes, wal.MinSegmentsPerCap*max(seg, int64(c.MaxRecordBytes)))
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight, c.minInFlight = sender.DefaultMaxInFlight, sender.DefaultMinInFlight
		if n, ok := kafkaInt(c.Kafka, "queue.buffering.max.messages"); ok && n > 0 {
			c.MaxInFlight = int(min(int64(c.MaxInFlight), n))
			c.minInFlight = int(min(int64(c.minInFlight), n))
		}
	}
	if c.MaxInFlightBytes == 0 {
		rec := int64(c.MaxRecordBytes)
		if n, ok := kafkaInt(c.Kafka, "message.max.bytes"); ok && rec == 0 {
			rec = n
		}
		c.MaxInFlightBytes = max(sender.DefaultMaxInFlightBytes, 4*rec)
		c.minInFlightBytes = max(sender.DefaultMinInFlightBytes, 4*rec)
		if kb, ok := kafkaInt(c.Kafka, "queue.buffering.max.kbytes"); ok && kb > 0 {
			c.MaxInFlightBytes = min(c.MaxInFlightBytes, kb<<10)
			c.minInFlightBytes = min(c.minInFlightBytes, kb<<10)
		}
	}
	if c.CursorSyncInterval == 0 && c.Durability == SyncPeriodic {
		c.CursorSyncInterval = max(sender.DefaultCursorSyncInterval, c.SyncInterval)
	}
	return c
}

// contradictions reports settings the application made that cannot work
// together and that no other check catches. It looks at c as given, before
// derive.
func (c Config) contradictions() error {
	if n, ok := kafkaInt(c.Kafka, "queue.buffering.max.messages"); ok && c.MaxInFlight > 0 && int64(c.MaxInFlight) > n {
		return fmt.Errorf("kafkawal: config: MaxInFlight: %d is above Kafka[queue.buffering.max.messages] (%d): librdkafka would refuse records the window allows", c.MaxInFlight, n)
	}
	if kb, ok := kafkaInt(c.Kafka, "queue.buffering.max.kbytes"); ok && c.MaxInFlightBytes > 0 && c.MaxInFlightBytes > kb<<10 {
		return fmt.Errorf("kafkawal: config: MaxInFlightBytes: %d is above Kafka[queue.buffering.max.kbytes] (%d KiB): librdkafka would refuse records the window allows", c.MaxInFlightBytes, kb)
	}
	n, set := kafkaInt(c.Kafka, "message.max.bytes")
	if !set {
		n = DefaultMaxRecordBytes // librdkafka's default message.max.bytes
	}
	if c.MaxRecordBytes > 0 && int64(c.MaxRecordBytes) > n {
		unset := ""
		if !set {
			unset = ", librdkafka's default"
		}
		return fmt.Errorf("kafkawal: config: MaxRecordBytes: %d is above Kafka[message.max.bytes] (%d)%s: records in between would be accepted, then refused by librdkafka and dead-lettered; lower MaxRecordBytes or raise message.max.bytes (and the topics' max.message.bytes)", c.MaxRecordBytes, n, unset)
	}
	if kb, ok := kafkaInt(c.Kafka, "queue.buffering.max.kbytes"); ok && c.MaxRecordBytes > 0 && int64(c.MaxRecordBytes) > kb<<10 {
		return fmt.Errorf("kafkawal: config: MaxRecordBytes: %d is above Kafka[queue.buffering.max.kbytes] (%d KiB): librdkafka would never take such a record, and delivery would stop behind it", c.MaxRecordBytes, kb)
	}
	// Under ExactlyOnce a record that times out aborts its transaction,
	// and everything after the committed position is produced again, in
	// order: a finite timeout (up to transaction.timeout.ms, checked by the
	// sender) costs an abort, not the order.
	if v, ok := kafkaInt(c.Kafka, "message.timeout.ms"); ok && v != 0 && !c.AllowWeakerDelivery && c.Delivery != ExactlyOnce {
		return errors.New("kafkawal: config: Kafka[message.timeout.ms]: a finite timeout lets librdkafka give records up and " +
			"accept later records of their partition first, breaking per-partition order; leave it unset " +
			"(kafkawal sets 0: never give up; the WAL holds the backlog) or set AllowWeakerDelivery")
	}
	return nil
}

// kafkaInt reads an integer librdkafka setting given as a number or a
// string; ok is false when it is absent or not an integer (librdkafka
// reports the latter when the producer is created).
func kafkaInt(m kafka.ConfigMap, key string) (int64, bool) {
	v, ok := m[key]
	if !ok {
		return 0, false
	}
	var n int64
	if _, err := fmt.Sscan(fmt.Sprint(v), &n); err != nil {
		return 0, false
	}
	return n, true
}
