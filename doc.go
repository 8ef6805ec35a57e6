// Package kafkawal produces to Kafka without losing a record to a Kafka
// outage.
//
// Append writes each record to a local, segmented, checksummed write-ahead
// log (package wal) and returns once it is durable; a background sender
// (package sender) forwards the log to Kafka with librdkafka; a durable
// cursor advances only on delivery reports; and Open replays everything
// after the cursor after any crash or restart (package recovery repairs a
// torn tail first). Memory stays flat however long the outage: the backlog
// waits on disk, capped by Config.MaxDiskBytes, and a full disk is an
// explicit error (ErrFull) the application turns into backpressure.
// AppendAsync does the same without waiting: it queues the record and
// calls back, in call order, once it is durable, so that one goroutine
// can keep many records on their way to the disk.
//
// Guarantees:
//
//   - Append returns nil (AppendAsync calls back without an error) only
//     after the record is in the WAL under Config.Durability (SyncAlways:
//     fsync'd).
//   - Every record whose Append returned nil reaches Kafka at least once, in
//     append order per partition, across process crashes, broker restarts
//     and network partitions of any length, as long as the directory
//     survives (and, with SyncAlways, across power loss).
//   - A record Kafka refuses for good is dead-lettered (DIR/deadletter.log,
//     Config.OnDeadLetter, Stats.DeadLettered) and never blocks the records
//     behind it; transient errors are retried for ever.
//   - WaitDelivered waits for one record's outcome: its partition and
//     offset once Kafka has it, or why it never will (a *DeadLetterError);
//     Config.OnDeliveryResult gets every outcome as it comes.
//   - After a crash, records between the last persisted cursor and the last
//     delivery report are sent again (Stats.Replayed, Stats.Resent): the
//     delivery is at-least-once by default.
//   - With Config.Delivery ExactlyOnce (and a TransactionalID), records are
//     produced in Kafka transactions that also commit the WAL position they
//     cover, and consumers reading with isolation.level=read_committed see
//     each record exactly once, across the same crashes and outages. A
//     second instance with the same TransactionalID fences the first, which
//     stops delivering for good (ErrFenced, Stats.Fenced).
//
// Partition is explicit, as in confluent-kafka-go: the zero value is
// partition 0; use PartitionAny to let the partitioner hash the key.
//
// Stats and Latencies (append, fsync and append-to-delivery histograms,
// recorded without locks or allocations) say how the producer is doing;
// package prom exports both to Prometheus.
package kafkawal
