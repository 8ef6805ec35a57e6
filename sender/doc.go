// Package sender forwards kafkawal's WAL to Kafka through librdkafka
// (confluent-kafka-go).
//
// One goroutine owns the producer. A second one reads the WAL ahead of it
// from the durable cursor onward (without copying: the records alias the
// WAL's segment memory until librdkafka has copied them), and the first
// produces each record to a partition it knows, partitioning PartitionAny
// records as librdkafka's partitioner would, and attributes delivery
// reports by their order within each partition (partition.go; the WAL
// sequence as Opaque where the partition is not known yet), keeping
// at most MaxInFlight records and MaxInFlightBytes handed to librdkafka:
// memory is bounded by that window, never by the backlog, which waits on
// disk. Delivery reports (Events(), go.delivery.report.fields=none) arrive
// out of order across partitions; the window turns them into the
// contiguous watermark, persisted as the WAL cursor every
// CursorSyncInterval and at Close; the WAL then deletes whole segments below
// it.
//
// What a failed record costs:
//
//   - transient (broker down, timeouts, not leader, transport): librdkafka
//     is purged, nothing is produced until every outstanding report is in,
//     then every record not yet acknowledged is produced again, in sequence
//     order, after a backoff
//     (50 ms doubling to 5 s). Never dead-lettered. With kafkawal's default
//     message.timeout.ms=0 librdkafka itself retries for ever, so this path
//     is taken only when the application set a finite timeout.
//   - permanent (record too large, invalid, not authorized, topic missing
//     with auto-create off): Kafka answers "too large" for librdkafka's
//     whole batch, so the error is believed only for a record sent alone:
//     the records concerned are re-sent one at a time, and the one refused
//     again goes to the dead-letter log (wal.DeadLetters) with the error
//     and time; the watermark moves past it and the application is told
//     (OnDeadLetter, Stats).
//   - fatal (idempotence state lost, fenced): librdkafka is purged, closed
//     and replaced, and every record not acknowledged is re-sent in order.
//     Counted in Stats.Rebuilds; re-sent records in Stats.Resent.
//
// Failures of the connection itself are not a record's: librdkafka keeps
// the records and reconnects, for ever with message.timeout.ms=0. The
// sender tells authentication failures (SASL refused, a failed TLS
// handshake, a client certificate the broker refuses, no WRITE anywhere)
// apart from an unreachable cluster (brokererr.go): Stats says which,
// each is logged once and then at most every 5 minutes, and librdkafka's
// own repeated lines are held back the same way. SetSASLCredentials
// replaces the SASL credentials of the producer and of every rebuilt one.
//
// Close delivers until everything appended is acknowledged or its context
// ends, then purges librdkafka (never closing it with records inside: Close
// does not flush), collects the reports and persists the cursor; the rest
// is replayed by the next Open.
//
// Exactly-once is planned as a mode that replaces the cursor step: a
// transactional producer would commit the watermark (as consumer-group
// offsets of a WAL-named group, SendOffsetsToTransaction) inside the
// transaction holding the records. The window, the WAL reader and the
// rewind-on-failure logic stay as they are; only "persist" and "rebuild"
// change, which is why they are separate steps here.
package sender
