package wal

import (
	"errors"
	"fmt"
	"syscall"
)

// Sentinel errors. The root package re-exports them, so callers match them
// with errors.Is whichever package they import.
var (
	// ErrFull means the log holds MaxDiskBytes: nothing more fits until the
	// cursor advances and whole segments are deleted.
	ErrFull = errors.New("kafkawal: wal full")
	// ErrClosed means the log (or producer) was closed.
	ErrClosed = errors.New("kafkawal: closed")
	// ErrInvalidRecord means Append was given input it can never accept
	// (no records, an empty topic, a partition below PartitionAny, a record
	// too large): nothing was written, and sending the same input again
	// fails the same way. The error wrapping it names the record and what
	// is wrong.
	ErrInvalidRecord = errors.New("kafkawal: invalid record")
	// ErrTooLarge means a record's encoding exceeds the configured maximum.
	// It is an invalid record too: errors.Is(err, ErrInvalidRecord) holds
	// for every error that matches ErrTooLarge.
	ErrTooLarge error = &kindOf{msg: "kafkawal: record too large", parent: ErrInvalidRecord}
	// ErrLocked means another process (or another Open in this one) holds
	// the directory.
	ErrLocked = errors.New("kafkawal: directory locked by another producer")
	// ErrCorrupt means bytes on disk failed their checksum or framing.
	ErrCorrupt = errors.New("kafkawal: wal corrupt")
)

// kindOf is a sentinel that also matches a broader one, so that callers
// may match either.
type kindOf struct {
	msg    string
	parent error
}

func (e *kindOf) Error() string { return e.msg }
func (e *kindOf) Unwrap() error { return e.parent }

// WriteError is returned by Append after a write or fsync of the log failed.
// The records of the failed call are not durable. The log refuses appends
// until it has repaired its tail (automatically, see Options.RetryAfterError).
type WriteError struct {
	Op  string // "write", "fsync", "repair"
	Err error
}

func (e *WriteError) Error() string { return fmt.Sprintf("kafkawal: wal %s: %v", e.Op, e.Err) }
func (e *WriteError) Unwrap() error { return e.Err }

// Is makes a write that failed for lack of space match ErrFull, so that
// applications turn it into backpressure like a full log.
func (e *WriteError) Is(target error) bool {
	return target == ErrFull && errors.Is(e.Err, syscall.ENOSPC)
}
