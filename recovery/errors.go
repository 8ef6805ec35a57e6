package recovery

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/kafkawal/kafkawal/wal"
)

// CorruptionError describes one damaged byte range of a segment file. It
// matches wal.ErrCorrupt with errors.Is and is found with errors.As.
type CorruptionError struct {
	// Segment is the path of the segment file.
	Segment string
	// Offset is where the damage starts, in bytes from the file's start.
	Offset int64
	// Bytes is the length of the damaged range (0 when entries are missing
	// from the end of a sealed segment without a damaged byte).
	Bytes int64
	// Seq is the sequence of the first entry the range held; 0 when it
	// cannot be known (after an earlier range of unknown size in the same
	// segment).
	Seq uint64
	// LastSeq is the last sequence the range can have held: exact when
	// the number of entries it held is known, the sealed segment's last
	// sequence otherwise, 0 when unknown (a range of unknown size in the
	// last segment, a torn tail).
	LastSeq uint64
	// Delivered is set when the range lies entirely at or below the
	// durable cursor Scan or Repair found (Report.Cursor): every record it
	// held was delivered to Kafka (or dead-lettered) before the damage was
	// found, so quarantining it loses nothing.
	Delivered bool
	// TornTail is set for damage that runs to the end of the last segment:
	// what a crash in the middle of a write leaves. Repair always cuts it.
	// Any other damage (a bad entry followed by good ones, or anything
	// wrong in a sealed segment) is mid-log corruption, never expected.
	TornTail bool
	// Unsynced is set for damage in the last segment after the synced
	// watermark (TornTail is set too): what a power loss leaves in data
	// written after the last completed fsync, cut with everything after it
	// whatever the policy.
	Unsynced bool
	// Err says what is wrong; it wraps wal.ErrCorrupt when it comes from
	// the codec.
	Err error
}

func (e *CorruptionError) Error() string {
	kind := "corrupt"
	switch {
	case e.Unsynced:
		kind = "unsynced tail"
	case e.TornTail:
		kind = "torn tail"
	}
	seq := ""
	if e.Seq != 0 {
		seq = fmt.Sprintf(" (seq %d)", e.Seq)
	}
	delivered := ""
	if e.Delivered {
		delivered = " (already delivered)"
	}
	return fmt.Sprintf("kafkawal: wal %s: segment %s offset %d%s%s, %d bytes: %v",
		kind, e.Segment, e.Offset, seq, delivered, e.Bytes, e.Err)
}

// Unwrap returns the cause.
func (e *CorruptionError) Unwrap() error { return e.Err }

// Is makes every CorruptionError match wal.ErrCorrupt, whatever its cause.
func (e *CorruptionError) Is(target error) bool { return target == wal.ErrCorrupt }

// segmentName is the file name of a CorruptionError's segment, for logs and
// quarantine names.
func (e *CorruptionError) segmentName() string { return filepath.Base(e.Segment) }

// Causes recorded in CorruptionError.Err. They describe the bytes; the
// framing's own causes (wal.FrameError) and Decode's errors are used where
// they say what is wrong.
var (
	errZeroFilled   = errors.New("zero-filled")
	errPrefix       = errors.New("length prefix damaged")
	errCount        = errors.New("entry count disagrees with the next segment's name")
	errAmbiguous    = errors.New("cannot tell which damaged range held the missing entries")
	errUnrepairable = errors.New("not repairable without losing sequence numbers; move the segment aside by hand")
)
