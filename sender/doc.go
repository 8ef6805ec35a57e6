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
// # Partial outages
//
// A partition that stops taking records (no leader, too few in-sync
// replicas, its broker behind a failed switch) must delay only its own
// records, and the disk must hold only its backlog. With one stream and one
// contiguous watermark it would do neither: its records fill the window
// and hold the watermark, so nothing else moves, and the WAL keeps
// everyone's records behind its oldest. So the sender keeps, per
// partition, what it has in flight (its flights, in produce order: the
// positional attribution above), and:
//
//   - Fair share (share.go). While others have records waiting, a partition
//     may hold at most its share of the window: MaxInFlight and
//     MaxInFlightBytes divided among the partitions with records in flight
//     (never more than half); past it, while the window is less than half
//     full, if it keeps up (a delivery and its oldest flight within
//     flowingFor, or its oldest flight younger than half of lagAfter): a
//     hot key's partition takes more than an equal part of the records.
//     A partition that only awaits its turn (awaitsTurn: librdkafka serves
//     a broker's partitions one a request, and the others' turns have not
//     yet passed it over) is never held at its share: the main stream
//     produces in WAL order, and holding it would stop every record behind
//     it until its turn. A stuck partition may so take more of the window
//     for a while, until the others' turns pass it over (passedOverRounds)
//     or, with the window full of its records, no turn comes for lagAfter;
//     it is then held and deferred as below. A partition at its share
//     whose oldest flight has waited less than lagAfter (lagFactor times the average wait of
//     a record in flight, at least deferAfter, 1 s) is busy, not stuck:
//     on a cluster slow for all partitions alike none stands out. The main
//     stream waits for it as before, which costs less than reading its
//     records back later. Past that, or when its flight at the window's low
//     end holds a full ring (which spans twice the window, ringSpan), or
//     when it is found stalled, the partition is deferred to a lane.
//   - Lanes (lane.go, catchup.go). A lane takes over the partition's
//     flights (from the window, and from other lanes) and the main stream
//     hands it every record of the partition it meets (done in the window)
//     and goes on with the others. The lane keeps only a read position, the
//     records it owns (at most what it had in flight) and counters; as the
//     partition takes records again it reads the WAL from its position with
//     a wal.Reader of its own, keeps the partition's records (laneFilter:
//     the explicit partition, or the key hashed with the topic's partition
//     count, which stays fixed while the topic has lanes), produces them in
//     order, and rejoins the main stream once it has produced every record
//     of its own below the main stream's position. Per-partition order
//     holds because, while a lane is active, only it produces its
//     partition's records. Keyless PartitionAny records go to partitions
//     that accept records (steer: not stalled, no active lane, preferably
//     below their share); when none of a topic's partitions does, to the
//     topic's keyless lane, which produces them to the first that accepts
//     again.
//   - Watermark and cursor. Flush's watermark is the least of the window's
//     low and every lane's oldest unacknowledged record, minus one. The WAL
//     cursor is the least of the window's low and every lane's lowest
//     record still to read from the WAL (not those in a park log), minus
//     one; whole segments below it are deleted as before.
//   - Stalls (stall.go). A partition whose oldest record in flight has
//     waited PartitionStallTimeout (default 10 s) and that delivered nothing
//     in that time is stalled: one log line, Stats.StalledPartitions, no
//     keyless records, and a lane at once. Its next delivery ends the
//     stall: one more line.
//   - Parking (park.go). A partition stalled for ParkAfter (default 30 s)
//     has its unacknowledged records copied in rounds, with their
//     sequences, into a park log (wal.ParkLog) by the parker goroutine;
//     only once a round is synced does the lane stop holding the WAL cursor
//     for them. When the partition accepts again its lane reads the park
//     log first, then the WAL from the park log's end. See wal/doc.go for
//     the format, and below for crashes.
//
// The seams for exactly-once: the commit step is persist (the WAL cursor)
// and unpark (park logs' cursors), both from the same per-stream positions
// (window low, lane.need and lane.hold); the rewind is rewind (report.go),
// which takes every stream back to its own oldest unacknowledged record.
//
// What a failed record costs:
//
//   - transient (broker down, timeouts, not leader, transport): librdkafka
//     is purged, nothing is produced until every outstanding report is in,
//     then every stream produces its unacknowledged records again, in
//     order, after a backoff (50 ms doubling to 5 s): the window from its
//     low, each lane the records it owns that failed, then its own from its
//     read position; a lane that had rejoined the main stream takes its
//     partition's failed records back from the window first. Never
//     dead-lettered. With kafkawal's default message.timeout.ms=0
//     librdkafka itself retries for ever, so this path is taken only when
//     the application set a finite timeout.
//   - permanent (record too large, invalid, not authorized, topic missing
//     with auto-create off): Kafka answers "too large" for librdkafka's
//     whole batch, so the error is believed only for a record sent alone
//     (isolate.go): the failed record's partition sends its unacknowledged
//     records one at a time, the others go on at full speed, and the one
//     refused again goes to the dead-letter log (wal.DeadLetters) with the
//     error and time; the watermark moves past it and the application is
//     told (OnDeadLetter, Stats). A failure without a partition isolates
//     every record, each alone in the producer.
//   - fatal (idempotence state lost, fenced): librdkafka is purged, closed
//     and replaced, and every stream rewinds as for a transient failure.
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
// What a crash costs while a partition is parked: a round's records count
// as parked only once its park log is synced, and only then does the WAL
// cursor move past them, so a crash before that finds them in the WAL
// (the park log's torn tail is cut off at Open); a crash after it finds
// them in the park log, and the main stream skips them (they are the
// lane's below the park log's end; keyless ones it held are skipped by
// sequence). That is why no round starts while the window holds a record
// of the partition that the lane did not take over (sent with
// PartitionAny or Opaque): the park log would stand for it. The park log's own cursor
// follows the lane's oldest unacknowledged record. So a crash at any point
// loses nothing and keeps each partition's order; records delivered since
// the last persisted cursors are sent again.
//
// Close delivers until everything appended is acknowledged or its context
// ends, then purges librdkafka (never closing it with records inside: Close
// does not flush), collects the reports and persists the cursors; the
// rest is replayed by the next Open, park logs first.
//
// Without idempotence (AllowWeakerDelivery) reports are not attributed by
// position, nothing is known per partition, and a stalled partition holds
// the others back as one stream would.
//
// Exactly-once delivery (Config.ExactlyOnce; txn.go explains it whole)
// keeps the window, the WAL reader and the rewind, and changes what
// acknowledges a record: its transaction's commit, not its delivery
// report. Each transaction ends with a checkpoint record (checkpoint.go)
// in a compacted topic rather than consumer-group offsets
// (SendOffsetsToTransaction needs consumer-group metadata that
// confluent-kafka-go builds outside a consumer only with a constructor
// documented for tests); the checkpoint Kafka committed is where delivery
// resumes, read at start with read_committed to the true end of its
// partition (checkpointstore.go). The blocking transactional calls run off
// the sender goroutine (txncalls.go), which keeps draining events. A failed
// record aborts its transaction and everything after the committed
// position is produced again; a fatal error replaces the producer, except
// a fencing of a transaction younger than transaction.timeout.ms, which
// only a newer instance can cause: then delivery stops for good
// (ErrFenced).
//
// Under exactly-once, lanes hold their records as the window does, until
// the commit (txnlanes.go); a commit waits for every report of its
// transaction, a partition found stalled with records in it aborts it,
// and a stalled partition's lane produces only a probe now and then
// (txnstall.go); nothing is parked. The checkpoint's Deferred partitions
// are the lanes' records not covered by it, where a restart resumes each
// lane.
package sender
