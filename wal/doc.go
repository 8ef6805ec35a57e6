// Package wal is kafkawal's write-ahead log: the local, checksummed,
// group-committed log that a record enters before it goes to Kafka.
//
// # Directory
//
//	DIR/
//	  LOCK                  flock(2)ed by the open Log; holds its pid
//	  segments/             tidwall/wal segment files, named by first sequence
//	    00000000000000000001
//	    00000000000000012345
//	  cursor.0, cursor.1    the durable cursor, two slots written in turn
//	  deadletter.log        records Kafka refused for good (see DeadLetters)
//	  exactly-once          the WAL's identity for exactly-once delivery (see TxnIdentity)
//	  quarantine/           bytes cut off by repair (package recovery)
//	  park/                 park logs: records of stalled partitions
//	    orders.3/           topic.partition, or topic.any for keyless records
//	      meta              whose records: topic, partition, count, partitioner
//	      00000000000000000457  park segments, named by first original sequence
//	      cursor.0, cursor.1    the park log's cursor, as the WAL's
//
// Files are created 0600 and directories 0700 unless Options say otherwise.
//
// # Segment files
//
// A segment is a sequence of tidwall/wal binary entries:
//
//	uvarint(len(entry)) | entry
//
// tidwall/wal carries no checksum, so every entry is one record in
// kafkawal's own encoding, version 1, all integers big endian:
//
//	offset  size  field
//	0       4     crc32c (Castagnoli) of bytes 4..end
//	4       1     codec version = 1
//	5       8     timestamp, Unix nanoseconds; 0 = unset
//	13      4     partition (int32); -1 = PartitionAny
//	17      uv    len(topic), then topic bytes (never empty)
//	        uv    len(key)+1, then key bytes; 0 = null key
//	        uv    len(value)+1, then value bytes; 0 = null value
//	        uv    number of headers, then for each:
//	              uv len(key), key bytes, uv len(value)+1, value bytes
//
// An entry is at least 21 bytes, so the 16 phantom empty entries that
// tidwall/wal loads from 16 zero bytes never decode. The version byte is
// covered by the checksum; a new layout gets a new version and Decode keeps
// reading the old ones. The checksum is computed over every byte written
// and checked on every byte read back from a file; a record the writer put
// into tidwall's memory in this process, and read from there, is not
// checked again (it never came back from the disk).
//
// Sequence numbers are tidwall/wal indexes: the first record is 1, they have
// no gaps, and the segment holding sequence s is the last one whose file
// name is <= s.
//
// # When a record is durable
//
// One writer goroutine gathers every Append waiting (up to MaxBatchBytes),
// writes them with one WriteBatch, and then, under SyncAlways, one
// fdatasync of the tail segment (and one fsync of the directory when the
// batch created a segment) before it answers each caller. Under
// SyncPeriodic it answers after the write and fsyncs every SyncInterval;
// under SyncNever it leaves fsync to the OS. tidwall fsyncs a segment when
// it seals it, under the lock its readers take; the writer fdatasyncs the
// tail itself just before, so that fsync has only the last batch to write
// and the sender is not held behind it. Under SyncPeriodic and SyncNever the
// writer also starts the kernel's writeback of the tail every MiB
// (sync_file_range, which waits for nothing and promises nothing), so that
// these fsyncs, which hold every appender, find little left to write.
//
// AppendAsync calls are encoded into a ring (AsyncQueueBytes, AsyncQueue
// calls) and gathered into one request until the writer takes it: under
// SyncAlways, all that arrive while an fsync runs go into the next write.
// The writer answers the request once; a completion goroutine runs the
// calls' callbacks in call order. A call that returned before an Append
// was queued is written before it.
//
// # Power loss
//
// A power loss keeps only what an fsync made durable: a file's data by an
// fsync of the file, a file's name by an fsync of the directory holding it
// (and a directory's name by an fsync of its parent). Open creates the log
// directory and segments/ fsyncing the parent of each directory it
// creates, the writer fsyncs segments/ after a batch that created a
// segment (before answering SyncAlways appenders), a cursor slot and a new
// dead-letter log fsync their directory when they are created, and
// truncation fsyncs segments/ after deleting. What a power loss can still
// do is confined to what was written after the last completed fsync: lose
// it, keep some of its pages and not others (writeback keeps no order), tear
// a page, or leave zeros where a file grew without its data. Under
// SyncAlways nothing acknowledged lies there; under SyncPeriodic and
// SyncNever what was acknowledged since the last fsync does.
//
// The synced watermark (synced.go) is how recovery tells that damage from
// decay: every sequence at or below it was fsync'd. It is stored in the
// cursor slots: with every cursor store, on its own every second while it
// advanced without one, at Close, and at Open, which first fdatasyncs the
// tail (so the repaired log is wholly synced) and also persists a cursor it
// had to lower (a cursor beyond the last record left on disk would let the
// next Open skip records appended after this one). A stored watermark can
// lag the truth, never lead it.
//
// internal/powercut checks all of this: a filesystem that forgets, at a
// power cut, whatever these rules do not make durable (docs/failure-model.md).
//
// # Reading
//
// Read (which copies) and ReadInto go through tidwall/wal, which holds the
// tail segment and the two segments sealed last in memory and reads an
// older segment's file whole to serve it. ReadInto, the sender's
// read-ahead, reads those older segments itself, from their files, into
// buffers the caller recycles, bounding each segment by the writer's
// segment list.
//
// SegmentReader is the one parser of tidwall's framing (each entry a
// uvarint length and the bytes): ReadInto, package recovery's integrity
// scan and the CLI read segment files through it. Plausible is the codec's
// cheap layout test, for a scanner resynchronising after damage; it
// accepts whatever Decode and IsHole accept, whatever the codec version.
//
// The writer gives a new tail segment the buffers of a sealed one that
// tidwall no longer holds and no reader's records alias any more (the
// sender's read-ahead pins what it holds, ReadIntoPinned; a buffer another
// reader took records from is never reused), instead of fresh memory.
//
// A write or fsync error makes the log answer every Append with that error
// (a *WriteError; ENOSPC also matches ErrFull) until, RetryAfterError later,
// it has cut the files back to the last good batch and reopened them. A
// record is readable (LastSeq) only after its batch succeeded, so a failed
// batch is never sent to Kafka.
//
// # Cursor file
//
// Each slot is 33 bytes: "KWCU", version 2, generation (u64), acked
// sequence (u64), synced sequence (u64), crc32c of the first 29 bytes. The
// valid slot with the highest generation wins; a torn slot leaves the
// other (previous) value. Every sequence <= acked has a delivery report
// from Kafka; every sequence <= synced was fsync'd when the slot was
// written. Version 1 slots (25 bytes, no synced field, crc32c of the first
// 21) are still read, as having no watermark; this version writes version
// 2 only, which versions before it read as damaged (they then send
// everything on disk again: duplicates, not loss).
//
// # When a record is deleted
//
// Only whole sealed segments whose last sequence is <= the persisted cursor
// are deleted, oldest first, with a directory fsync after; the tail segment
// is never deleted. Deleting files, unlike tidwall's TruncateFront, copies
// nothing, so bytes written per byte appended stay 1. Truncation runs at most
// once a second unless an appender is waiting for room.
//
// # Park logs
//
// When a partition stops taking records for long, the sender copies its
// unacknowledged records into a park log, so that the WAL's segments behind
// them can be deleted: the disk then holds the stalled partition's backlog
// instead of everyone's (ParkLog; the sender's park.go says when).
//
// A park segment holds frames as a WAL segment does (uvarint length, then
// the entry), each entry a record in codec version 2: version 1's layout
// with the record's original WAL sequence after the version byte, under the
// same checksum:
//
//	offset  size  field
//	0       4     crc32c (Castagnoli) of bytes 4..end
//	4       1     codec version = 2
//	5       8     original sequence
//	13      ...   as version 1 from offset 5: timestamp, partition, topic,
//	              key, value, headers
//
// Sequences rise through the segments but are not contiguous (one
// partition's records among all). Version 2 appears only in park logs;
// Decode refuses it, and DecodeParked refuses version 1.
//
// meta is "KWPK", version 1, the partition (int32; -1: the topic's keyless
// records), the topic's partition count (int32; 0: unknown) and
// partitioner the records were sorted with (uvarint length and bytes),
// the topic (the same), and a crc32c of all before it. It is written once
// (through a renamed temporary file, then a directory fsync), and again if
// the count becomes known.
//
// A round of copied records is written a MiB at a time and made durable
// by one fdatasync of its segment (and a directory fsync for a new one);
// only then does it count as parked, and only then does the WAL cursor
// move past its records. A segment that reaches SegmentBytes is synced
// before the next begins. The park log's cursor (the WAL's two-slot
// format) says every parked record with a sequence <= it is delivered;
// whole park segments wholly at or below it are deleted (not the one being
// written), and a park log whose records are all delivered is removed. At
// Open every park record is checked: a torn or zeroed tail of the last
// segment is cut off and kept in quarantine/park-NAME-SEGMENT-OFFSET (those
// records are still in the WAL, whose cursor had not passed them); damage
// elsewhere fails Open with ErrCorrupt naming the file and offset.
//
// # Disk cap
//
// MaxDiskBytes bounds the bytes of all segment files and park logs plus
// bytes reserved by queued appends. At the cap Append waits (Block) or
// fails (Reject) with an error matching ErrFull. A park round may go over
// the cap by one segment: parking frees more than it takes (the WAL's
// segments behind it), or it could never start on a full disk.
package wal
