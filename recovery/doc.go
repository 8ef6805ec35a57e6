// Package recovery checks kafkawal's write-ahead log on disk and repairs
// what a crash leaves, before package wal opens it (Repair, run as
// wal.Options.BeforeOpen) and offline (Scan, behind `kafkawal verify`).
//
// # What is checked
//
// A segment file (wal/doc.go) is a run of tidwall/wal entries, each a
// uvarint length and that many bytes, read with wal.SegmentReader (which
// finds where the framing breaks) and, after damage, probed byte by byte
// for the next intact entry with wal.Plausible before its checksum is
// computed: what counts as an entry is wal's knowledge, for every codec
// version it reads. Every entry must be a record that
// wal.Decode accepts (crc32c, version, layout) or a hole (wal.IsHole). An
// empty entry is damage: the codec never writes one, and zeros, which
// tidwall/wal alone loads as empty entries, are what a crash leaves where a
// file was extended but its data never reached the disk. Sequence numbers
// are positions (a segment's name is its first sequence), so a sealed
// segment must hold exactly as many entries as the next segment's name
// says.
//
// # At Open and by verify
//
// A full check reads every byte and decodes every entry: seconds per
// GiB (BenchmarkScan; bench/HISTORY.md, "Figures that were in code
// comments"). That is more than Open should cost, and it grows with the
// backlog the log exists to hold. So Repair, by default, checks only the
// last segment (and, when the last is an empty file fresh from a rotation,
// the segments back to the last non-empty one), which is where a crash
// writes: milliseconds for a default-size tail. Sealed segments
// were fsync'd by tidwall/wal before the next one was created; damage in
// them is decay, not a crash. It is found by a full check (Scan with zero
// ScanOptions, Repair with FullScan), and otherwise when the sender reads
// the record: wal's reader decodes every entry and fails with an error
// matching ErrCorrupt instead of returning damaged bytes.
//
// # Classification
//
// A torn tail is damage that runs to the end of the last segment: what a
// crash in the middle of a write leaves (a short entry, a length prefix cut
// in two, zeros). Under SyncAlways such a record was never acknowledged, so
// cutting it loses nothing that was promised. Repair cuts it under every
// policy.
//
// Unsynced damage is damage in the last segment that starts after the
// synced watermark stored with the cursor (wal/doc.go, "Power loss"):
// every sequence at or below the watermark was fsync'd, so damage after it
// lies in data written after the last completed fsync, which a power loss
// may keep in part and in any order. A write that never reached the disk
// (zeros, or old bytes) followed by a later one that did is its signature:
// the issue that brought this in saw SyncPeriodic logs refuse every Open
// with "zero-filled" damage and intact records behind it. Repair cuts
// unsynced damage like a torn tail, under every policy, with every entry
// after it: the records behind it cannot be numbered (nothing says how
// many entries the damaged range held), so they are not replayed but kept
// in quarantine (.unsynced) and counted in UnsyncedRecords, and logged at
// warn level. Under SyncAlways none of them was acknowledged; under
// SyncPeriodic and SyncNever they are the loss those modes accept. Damage
// at or below the watermark is judged as below. A cursor without a
// watermark (none yet, or version 1) leaves the whole log judged as
// fsync'd, as before the watermark existed; every Open stores one.
//
// Anything else is mid-log corruption, never expected: a bad entry followed
// by intact ones (in any segment), or any damage in a sealed segment,
// including a wrong entry count. With FailOnCorruption (the default) Repair
// returns a *CorruptionError naming the segment file, the offset and the
// sequence, and changes nothing. With QuarantineCorruption it keeps every
// later record at its sequence:
//
//   - a bad entry whose length prefix still frames it becomes one hole;
//   - a range where the framing itself is broken runs to the next offset
//     where an intact entry starts; in a sealed segment the next segment's
//     name says exactly how many entries it held, and that many holes
//     replace it (entries missing from the end of a file become holes at
//     its end);
//   - a range that is exactly one intact entry behind a damaged length
//     prefix (its checksum holds) keeps its record under a new prefix;
//   - in the last segment nothing says how many entries a broken range
//     held, so the segment is cut there and the intact entries after it go
//     to quarantine with it; LostRecords is then a lower bound
//     (LostAtLeast).
//
// # Damage already delivered
//
// The durable cursor (wal/cursor.go) says every sequence at or below it
// reached Kafka (or the dead-letter log); segments below it linger until
// truncation deletes them. Scan and Repair read it (Report.Cursor) and
// mark each damaged range that lies wholly at or below it Delivered: its
// records cost nothing when quarantined. Repair therefore repairs such
// damage under every policy, as QuarantineCorruption would, logs it at warn
// level, and counts its records in DeliveredRecords instead of
// LostRecords; FailOnCorruption refuses only damage that may hold records
// not yet delivered (Report.Undelivered). A sealed segment whose entries
// cannot be numbered (below) is, when it lies wholly at or below the
// cursor, quarantined whole and replaced by holes. A range of unknown size
// in the last segment is never judged delivered: the intact records cut
// with it cannot be numbered.
//
// A hole is never replayed as data: wal's reader returns it with
// Entry.Hole set. When a sealed segment cannot be renumbered (two broken
// ranges and one count, or more entries than its span), Repair changes
// nothing under either policy and returns the *CorruptionError.
//
// # Quarantine
//
// Every byte Repair removes is first copied to
//
//	DIR/quarantine/<segment>.<offset>.torn      a torn tail
//	DIR/quarantine/<segment>.<offset>.unsynced  unsynced damage and the
//	                                            intact entries behind it
//	DIR/quarantine/<segment>.<offset>.corrupt   a mid-log range
//
// where <segment> is the segment's file name and <offset> the decimal byte
// offset of the range in it. A name already taken (the same offset torn by
// a later crash) gets .1, .2, ... appended; a file that already holds
// exactly the same bytes (left by a repair a crash interrupted) is reused.
// Files are 0600 and the directory 0700 unless Options say otherwise.
//
// # Guarantees
//
//   - Scan changes nothing. Repair changes nothing when it returns an error
//     about the log's contents.
//   - Repair's order is: quarantine copy written and fsync'd, with its
//     directory (and DIR when quarantine/ is new); then the segment cut
//     (truncate, fsync) or rewritten (temporary <segment>.repair, fsync,
//     rename over the segment); then the segments directory fsync'd. A
//     crash at any point leaves the old segment or the new one, and the
//     next Repair finishes the job (it deletes leftover .repair files).
//   - Repair checks what it wrote before it returns, so a second Repair
//     right after finds nothing to do.
//   - Every record outside the damaged ranges keeps its sequence, except
//     after a broken range or unsynced damage in the last segment (cut,
//     see above).
//   - Report counts what was found (Records, Holes, Damage) and what it
//     cost (TornTailRepairs, QuarantinedBytes, LostRecords, LostBytes,
//     UnsyncedRecords);
//     every repair is logged, a torn tail and damage already delivered at
//     warn level and other corruption at error level, with the fields
//     segment, offset, bytes, seq.
//
// Limits: an intact entry found while resynchronising is trusted on its
// checksum, so a record whose value embeds a whole framed kafkawal entry,
// cut by a crash, can be taken for mid-log corruption (Open then fails
// safe under FailOnCorruption). A filesystem that can expose stale blocks
// after a crash (ext4 data=writeback) can put old intact entries in a torn
// tail, with the same effect.
package recovery
