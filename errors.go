package kafkawal

import (
	"github.com/kafkawal/kafkawal/sender"
	"github.com/kafkawal/kafkawal/wal"
)

// Errors a caller can act on. Match them with errors.Is; the errors returned
// wrap them with the detail (file, offset, sequence, field) an operator needs.
var (
	// ErrFull: the WAL holds MaxDiskBytes (or the disk itself is full).
	// With FullPolicy Block, Append waited until its context ended; with
	// Reject it failed at once. Turn it into backpressure (HTTP 503, gRPC
	// UNAVAILABLE); nothing was written.
	ErrFull = wal.ErrFull
	// ErrClosed: the producer is closed (or closing).
	ErrClosed = wal.ErrClosed
	// ErrInvalidRecord: Append was given input it can never accept: no
	// records, an empty topic, a partition below PartitionAny, or a record
	// too large (ErrTooLarge). Nothing was written; the error names the
	// record (its index in the batch) and what is wrong. Sending the same
	// input again fails the same way, so answer it as the caller's fault
	// (HTTP 400, gRPC INVALID_ARGUMENT).
	ErrInvalidRecord = wal.ErrInvalidRecord
	// ErrTooLarge: a record exceeds MaxRecordBytes; nothing was written.
	// Every error matching it also matches ErrInvalidRecord; match
	// ErrTooLarge first to answer it differently (HTTP 413).
	ErrTooLarge = wal.ErrTooLarge
	// ErrLocked: another producer, in this process or another, has the
	// directory open.
	ErrLocked = wal.ErrLocked
	// ErrCorrupt: the WAL failed a checksum or framing check. Errors from
	// Open match it and also unwrap to a *recovery.CorruptionError naming the
	// segment file and offset.
	ErrCorrupt = wal.ErrCorrupt
)

// ErrFenced: under Delivery ExactlyOnce, another producer with the same
// TransactionalID took over (a second instance of the service, or a copy of
// the WAL directory). This producer stopped delivering for good; Flush and
// Close return an error matching it, Stats.Fenced is true, and every record
// Kafka has not committed stays in the WAL. Stop one of the two.
var ErrFenced = sender.ErrFenced
