package recovery

import "github.com/kafkawal/kafkawal/wal"

// Report is what Scan found, and for Repair also what it did.
type Report struct {
	// Segments and Bytes count every segment file in the log.
	Segments int
	Bytes    int64
	// CheckedSegments and CheckedBytes count those read entry by entry
	// (all of them unless TailOnly).
	CheckedSegments int
	CheckedBytes    int64
	// Records and Holes count the intact entries of the checked segments.
	Records int64
	Holes   int64
	// FirstSeq is the first sequence on disk; LastSeq the last one the log
	// holds once repaired (FirstSeq-1 when it holds none).
	FirstSeq, LastSeq uint64
	// Damage lists every damaged range found, in log order.
	Damage []*CorruptionError
	// Cursor is the durable cursor found in the directory (0 when none):
	// damage at or below it is Delivered.
	Cursor uint64
	// Synced is the synced watermark stored with the cursor (every
	// sequence <= it was fsync'd); SyncedKnown is false when there is none
	// (the whole log is then taken as fsync'd). Damage in the last segment
	// after it is Unsynced: cut like a torn tail.
	Synced      uint64
	SyncedKnown bool

	// The rest is filled by Repair.

	// TornTailRepairs counts torn tails cut off the last segment (0 or 1).
	TornTailRepairs int
	// RewrittenSegments counts segments repaired for mid-log corruption.
	RewrittenSegments int
	// Quarantined lists the files written under DIR/quarantine, and
	// QuarantinedBytes their total size.
	Quarantined      []string
	QuarantinedBytes int64
	// LostRecords and LostBytes count the records that mid-log corruption
	// destroyed and the bytes they took; torn tails are not counted (they
	// were never acknowledged under SyncAlways).
	LostRecords int64
	LostBytes   int64
	// DeliveredRecords counts the entries of damaged ranges that lay at or
	// below the cursor: already in Kafka, quarantined without loss (and
	// not counted in LostRecords).
	DeliveredRecords int64
	// LostAtLeast is set when LostRecords is a lower bound: a damaged range
	// of the last segment whose framing was broken cannot say how many
	// records it held (sealed segments always can, from the next segment's
	// name).
	LostAtLeast bool
	// UnsyncedRecords counts intact entries cut from the last segment
	// because damage after the synced watermark came before them: written
	// after the last completed fsync (acknowledged under SyncPeriodic and
	// SyncNever, never under SyncAlways) and kept in quarantine. They are
	// not counted in LostRecords.
	UnsyncedRecords int64
	// RecoveredRecords counts entries whose length prefix alone was
	// damaged: the checksum proves the record intact, and Repair kept it
	// under a rewritten prefix instead of a hole.
	RecoveredRecords int64
}

// Corruption returns the first mid-log damage Report lists, or nil when
// there is none (a torn tail alone is not corruption).
func (r *Report) Corruption() *CorruptionError {
	for _, d := range r.Damage {
		if !d.TornTail {
			return d
		}
	}
	return nil
}

// Undelivered returns the first mid-log damage that may hold records not
// yet delivered, or nil when every damaged range is Delivered (or there is
// none). Only such damage can cost records; the rest is quarantined under
// every policy.
func (r *Report) Undelivered() *CorruptionError {
	for _, d := range r.Damage {
		if !d.TornTail && !d.Delivered {
			return d
		}
	}
	return nil
}

// judge reads dir's durable cursor and marks the damage that lies at or
// below it Delivered. A cursor that cannot be read leaves everything
// undelivered: the damage is then judged as if nothing had been delivered.
func (r *Report) judge(dir string) error {
	cur, _, err := wal.LoadCursor(dir)
	if err != nil {
		return err
	}
	r.Cursor = cur.Acked
	for _, d := range r.Damage {
		d.Delivered = !d.TornTail && d.LastSeq != 0 && d.LastSeq <= r.Cursor
	}
	return nil
}
