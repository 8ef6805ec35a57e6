package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kafkawal/kafkawal/recovery"
	"github.com/kafkawal/kafkawal/wal"
)

const inspectHelp = `
Inspect prints the state of a kafkawal directory: segments, the durable
cursor, the backlog not yet acknowledged by Kafka and the age of its oldest
record, park logs (the records of partitions that stalled), dead letters,
quarantined bytes, and whether a producer holds the directory (and its
pid). It reads the last segment entry by entry; run
'kafkawal verify' to check every segment.

It takes no lock and changes nothing: run it while the producer is up. The
cursor shown is the persisted one; a running producer may be slightly ahead.

Exit status: 0, also with warnings and with a torn tail (the next open
repairs it); 1 when the last segment holds corruption (run 'kafkawal
verify' for the whole log); 2 bad usage, not a kafkawal directory, or an I/O
error.

  --json   print one JSON object instead of the table. Its field names
           are stable: fields may be added, never renamed or given another
           meaning. Sequences are the WAL's (the first record is 1).

  dir                       the DIR argument
  lock.held                 a process holds DIR's lock (a producer is up)
  lock.pid                  its pid; 0 when not held or unknown
  segments.count, .bytes    segment files and their total size
  segments.first_seq        first sequence on disk (0: no segment file)
  segments.last_seq         last intact sequence (first_seq-1: empty log)
  segments.records          last_seq - first_seq + 1
  segments.files[]          {name, first_seq, bytes}, oldest first
  cursor.found              a valid cursor slot exists
  cursor.acked              persisted cursor: every seq <= it was delivered
  cursor.generation         write count of the cursor
  cursor.damaged_slots      slots (of 2) that exist but fail their checksum
  backlog.records           records not yet acknowledged: last_seq - max(acked, first_seq-1)
  backlog.bytes             size of the segment files holding them (over by
                            at most one segment)
  backlog.oldest            null when the backlog is empty, else
    .seq, .topic, .partition  the first unacknowledged record that is not a hole;
                            partition is a number, or "any" (-1 in the WAL:
                            the partitioner chooses when it is sent)
    .timestamp              its create time, RFC 3339 UTC; null if unset
    .age_seconds            now - timestamp; null if unset
    .error                  present only when it could not be read
  tail.segment              name of the last segment (checked entry by entry)
  tail.clean                no damage in it
  tail.damage[]             {segment, offset, bytes, seq, torn_tail,
                            delivered, error}; torn_tail: a record cut short
                            at the very end (a crash, or a write in
                            progress), repaired on open; delivered: the
                            damage lies at or below the cursor, its records
                            are in Kafka already (the next open quarantines
                            it, nothing is lost)
  parks.count              park logs in park/: each holds the records of one
                            partition that stalled (or a topic's keyless
                            records, partition "any"), copied out of the WAL
                            so that its segments could be deleted; they go to
                            Kafka before that partition's records in the WAL
  parks.records, .bytes     records still to deliver in them, and their size
  parks.logs[]              {name, topic, partition, records, bytes,
                            first_seq, last_seq, acked, torn_tail, error};
                            records: above acked, the park log's own cursor;
                            torn_tail: an incomplete last record (the next
                            open cuts it off; the WAL still holds it);
                            error: damage (run 'kafkawal verify')
  dead_letters.count, .bytes
  dead_letters.newest       null or {seq, time, error, code, topic, partition};
                            code: librdkafka's error code (0: not kept);
                            partition: where Kafka refused it, when known
  dead_letters.error        present only when the file could not be read
  exactly_once              null, or for a directory delivered exactly once
                            (DIR/exactly-once): {transactional_id, wal_id,
                            committed}; committed: a transaction was
                            committed with that id, so Kafka's checkpoint,
                            not the cursor, says what was delivered (the
                            cursor may be behind it); error: present only
                            when the file could not be read
  quarantine.count, .bytes  files under quarantine/ (bytes repair cut off)
  quarantine.files[]        {name, bytes}
  quarantine.error          present only when the directory could not be read
  warnings[]                sentences for a human: records waiting with no
                            producer running, dead letters, damage, cursor
                            trouble; empty when all is well
`

// now is the clock that ages are measured against; tests replace it.
var now = time.Now

// inspectReport is inspect's --json output. Field names are a stable
// interface for scripts: add fields, never rename or repurpose them.
type inspectReport struct {
	Dir         string           `json:"dir"`
	Lock        lockInfo         `json:"lock"`
	Segments    segmentsInfo     `json:"segments"`
	Cursor      cursorInfo       `json:"cursor"`
	Backlog     backlogInfo      `json:"backlog"`
	Tail        tailInfo         `json:"tail"`
	Parks       parksInfo        `json:"parks"`
	DeadLetters deadLettersInfo  `json:"dead_letters"`
	ExactlyOnce *exactlyOnceInfo `json:"exactly_once"`
	Quarantine  quarantineInfo   `json:"quarantine"`
	Warnings    []string         `json:"warnings"`
}

type parksInfo struct {
	Count   int        `json:"count"`
	Records int        `json:"records"` // still to deliver
	Bytes   int64      `json:"bytes"`
	Logs    []parkInfo `json:"logs"`
}

type parkInfo struct {
	Name      string    `json:"name"`
	Topic     string    `json:"topic"`
	Partition partition `json:"partition"`
	Records   int       `json:"records"` // above acked
	Bytes     int64     `json:"bytes"`
	FirstSeq  uint64    `json:"first_seq"`
	LastSeq   uint64    `json:"last_seq"`
	Acked     uint64    `json:"acked"`
	TornTail  bool      `json:"torn_tail"`
	Error     string    `json:"error,omitempty"`
}

type lockInfo struct {
	Held bool `json:"held"`
	PID  int  `json:"pid"` // 0 when not held or unknown
}

type segmentsInfo struct {
	Count    int               `json:"count"`
	Bytes    int64             `json:"bytes"`
	FirstSeq uint64            `json:"first_seq"` // 0 when there is no segment file
	LastSeq  uint64            `json:"last_seq"`  // first_seq-1 when the log is empty
	Records  uint64            `json:"records"`   // last_seq-first_seq+1
	Files    []segmentFileInfo `json:"files"`
}

type segmentFileInfo struct {
	Name     string `json:"name"`
	FirstSeq uint64 `json:"first_seq"`
	Bytes    int64  `json:"bytes"`
}

type cursorInfo struct {
	Found        bool   `json:"found"` // false: no valid slot (fresh directory, or both damaged)
	Acked        uint64 `json:"acked"` // every sequence <= acked was delivered
	Generation   uint64 `json:"generation"`
	DamagedSlots int    `json:"damaged_slots"`
}

type backlogInfo struct {
	Records uint64 `json:"records"`
	// Bytes is the size of the segment files holding unacknowledged
	// records: an overestimate by at most one segment.
	Bytes  int64       `json:"bytes"`
	Oldest *oldestInfo `json:"oldest"` // null when the backlog is empty
}

type oldestInfo struct {
	Seq        uint64     `json:"seq"`
	Topic      string     `json:"topic"`
	Partition  partition  `json:"partition"`
	Timestamp  *time.Time `json:"timestamp"`   // null when the record has none
	AgeSeconds *float64   `json:"age_seconds"` // null when the record has no timestamp
	Error      string     `json:"error,omitempty"`
}

type tailInfo struct {
	Segment string       `json:"segment"` // name of the last segment file
	Clean   bool         `json:"clean"`
	Damage  []damageInfo `json:"damage"`
}

type damageInfo struct {
	Segment   string `json:"segment"` // path
	Offset    int64  `json:"offset"`
	Bytes     int64  `json:"bytes"`
	Seq       uint64 `json:"seq"` // 0 when unknown
	TornTail  bool   `json:"torn_tail"`
	Delivered bool   `json:"delivered"` // at or below the cursor: already in Kafka
	Error     string `json:"error"`
}

type deadLettersInfo struct {
	Count  int             `json:"count"`
	Bytes  int64           `json:"bytes"`
	Newest *deadLetterInfo `json:"newest"` // the last one written; null when none
	// Error is set when the log could not be read to its end; count and
	// newest then cover the part before the failure.
	Error string `json:"error,omitempty"`
}

type deadLetterInfo struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Error     string    `json:"error"`
	Code      int32     `json:"code"`
	Topic     string    `json:"topic"`
	Partition partition `json:"partition"`
}

type exactlyOnceInfo struct {
	TransactionalID string `json:"transactional_id"`
	WALID           string `json:"wal_id"`
	Committed       bool   `json:"committed"`
	Error           string `json:"error,omitempty"`
}

type quarantineInfo struct {
	Count int        `json:"count"`
	Bytes int64      `json:"bytes"`
	Files []fileInfo `json:"files"`
	Error string     `json:"error,omitempty"` // set when quarantine/ could not be listed
}

type fileInfo struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
}

func runInspect(args []string, stdout, stderr io.Writer) int {
	flags := newFlagSet("inspect")
	asJSON := flags.Bool("json", false, "print JSON")
	pos, status, ok := parseArgs(flags, args, 1, "inspect DIR [--json]", inspectHelp, stdout, stderr)
	if !ok {
		return status
	}
	dir := pos[0]
	if err := checkDir(dir); err != nil {
		return fail(stderr, "inspect", err, exitUsage)
	}
	rep, err := collectInspect(dir)
	if err != nil {
		return fail(stderr, "inspect", err, exitUsage)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = printInspect(stdout, rep)
	}
	if err != nil {
		return fail(stderr, "inspect", err, exitUsage)
	}
	for _, d := range rep.Tail.Damage {
		if !d.TornTail {
			return exitProblem
		}
	}
	for _, pl := range rep.Parks.Logs {
		if pl.Error != "" {
			return exitProblem
		}
	}
	return exitOK
}

func collectInspect(dir string) (*inspectReport, error) {
	rep := &inspectReport{Dir: dir, Warnings: []string{}}
	held, pid, err := lockHolder(dir)
	if err != nil {
		return nil, err
	}
	rep.Lock = lockInfo{Held: held, PID: pid}

	segs, err := wal.ListSegments(dir)
	if err != nil {
		return nil, err
	}
	scan, err := recovery.Scan(dir, recovery.ScanOptions{TailOnly: true})
	if err != nil && !errors.Is(err, wal.ErrCorrupt) {
		return nil, err
	}
	rep.Segments = segmentsInfo{Count: len(segs), Files: []segmentFileInfo{}}
	for _, s := range segs {
		rep.Segments.Bytes += s.Bytes
		rep.Segments.Files = append(rep.Segments.Files, segmentFileInfo{Name: filepath.Base(s.Path), FirstSeq: s.First, Bytes: s.Bytes})
	}
	if len(segs) > 0 {
		rep.Segments.FirstSeq, rep.Segments.LastSeq = scan.FirstSeq, scan.LastSeq
		rep.Segments.Records = scan.LastSeq + 1 - scan.FirstSeq
		rep.Tail.Segment = filepath.Base(segs[len(segs)-1].Path)
	}
	if id, ok, err := wal.LoadTxnIdentity(dir); err != nil {
		rep.ExactlyOnce = &exactlyOnceInfo{Error: err.Error()}
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s cannot be read: %v; an exactly-once producer will refuse to open the directory", wal.TxnIdentityFile, err))
	} else if ok {
		rep.ExactlyOnce = &exactlyOnceInfo{TransactionalID: id.TransactionalID, WALID: fmt.Sprintf("%x", id.WALID), Committed: id.Committed}
	}
	rep.Tail.Clean = len(scan.Damage) == 0
	rep.Tail.Damage = []damageInfo{}
	for _, d := range scan.Damage {
		rep.Tail.Damage = append(rep.Tail.Damage, damageInfo{Segment: d.Segment, Offset: d.Offset, Bytes: d.Bytes,
			Seq: d.Seq, TornTail: d.TornTail, Delivered: d.Delivered, Error: fmt.Sprint(d.Err)})
		switch {
		case d.Delivered:
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("corruption at %s offset %d in records already delivered (at or below the cursor): nothing is lost, the next open quarantines it; the disk may be failing: run 'kafkawal verify'", filepath.Base(d.Segment), d.Offset))
		case d.TornTail && held:
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("incomplete last record at %s offset %d: probably being written right now", filepath.Base(d.Segment), d.Offset))
		case d.TornTail:
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("torn tail at %s offset %d (a crash mid-write): the next open repairs it and keeps the bytes in quarantine/", filepath.Base(d.Segment), d.Offset))
		default:
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("corruption in the last segment at %s offset %d: run 'kafkawal verify'", filepath.Base(d.Segment), d.Offset))
		}
	}

	cur, _, err := wal.LoadCursor(dir)
	if err != nil {
		return nil, err
	}
	rep.Cursor = cursorInfo{Found: cur.Found, Acked: cur.Acked, Generation: cur.Gen, DamagedSlots: cur.Damaged}
	switch {
	case cur.Damaged > 0 && !cur.Found:
		rep.Warnings = append(rep.Warnings, "no valid cursor slot: the producer will send everything on disk again")
	case cur.Damaged > 0:
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d damaged cursor slot(s); the other slot holds the value shown", cur.Damaged))
	}
	if len(segs) > 0 && cur.Acked > rep.Segments.LastSeq {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("cursor %d is beyond the last record %d: records were lost (power loss without SyncAlways?); open lowers the cursor", cur.Acked, rep.Segments.LastSeq))
	}
	if err := collectBacklog(rep, segs, cur.Acked); err != nil {
		return nil, err
	}
	if n := rep.Backlog.Records; n > 0 && !held {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d %s wait for delivery and no producer has the directory open: start the service on this directory, or deliver them with 'kafkawal ship %s'", n, plural(int(min(n, 2)), "record", "records"), dir))
	}
	if err := collectParks(rep, dir); err != nil {
		rep.Warnings = append(rep.Warnings, "cannot list park/: "+trimPrefix(err))
	}
	// Dead letters and quarantine are reported even when damaged: one
	// unreadable file must not hide the rest of the picture.
	if err := collectDeadLetters(rep, dir); err != nil {
		rep.DeadLetters.Error = trimPrefix(err)
		rep.Warnings = append(rep.Warnings, "cannot read the dead letters: "+trimPrefix(err))
	}
	if n := rep.DeadLetters.Count; n > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d %s refused by Kafka for good and dead-lettered (never sent again): see 'kafkawal dump --dead %s'", n, plural(n, "record", "records"), dir))
	}
	if err := collectQuarantine(rep, dir); err != nil {
		rep.Quarantine.Error = trimPrefix(err)
		rep.Warnings = append(rep.Warnings, "cannot list quarantine/: "+trimPrefix(err))
	}
	return rep, nil
}

// collectBacklog counts the records after the cursor and reads the oldest
// of them for its age.
func collectBacklog(rep *inspectReport, segs []wal.SegmentFile, acked uint64) error {
	if len(segs) == 0 {
		return nil
	}
	base := max(acked, rep.Segments.FirstSeq-1) // everything <= base is acknowledged or gone
	if rep.Segments.LastSeq <= base {
		return nil
	}
	rep.Backlog.Records = rep.Segments.LastSeq - base
	for i, s := range segs {
		if i+1 < len(segs) && segs[i+1].First <= base+1 {
			continue // wholly acknowledged
		}
		rep.Backlog.Bytes += s.Bytes
	}
	err := walkLog(segs, base+1, func(seq uint64, e []byte) (bool, error) {
		if seq > rep.Segments.LastSeq {
			return false, nil
		}
		if wal.IsHole(e) {
			return true, nil // lost in an earlier repair; the next one is the oldest
		}
		o := &oldestInfo{Seq: seq}
		rep.Backlog.Oldest = o
		r, err := wal.Decode(e)
		if err != nil {
			o.Error = err.Error()
			return false, nil
		}
		o.Topic, o.Partition = r.Topic, partition(r.Partition)
		if !r.Timestamp.IsZero() {
			ts := r.Timestamp.UTC()
			age := now().Sub(ts).Seconds()
			o.Timestamp, o.AgeSeconds = &ts, &age
		}
		return false, nil
	}, func(damage) {}) // the tail scan reports damage
	if err != nil {
		// The rest of the report is still worth having at 3 a.m.
		rep.Backlog.Oldest = &oldestInfo{Seq: base + 1, Error: trimPrefix(err)}
		rep.Warnings = append(rep.Warnings, "cannot read the oldest unacknowledged record: "+trimPrefix(err))
	}
	return nil
}

// collectParks reads every park log (wal.VerifyParks checks each record).
func collectParks(rep *inspectReport, dir string) error {
	rep.Parks.Logs = []parkInfo{}
	reps, err := wal.VerifyParks(dir)
	if err != nil {
		return err
	}
	for _, r := range reps {
		pi := parkInfo{Name: filepath.Base(r.Dir), Topic: r.Meta.Topic, Partition: partition(r.Meta.Partition), Records: r.Undelivered,
			Bytes: r.Bytes, FirstSeq: r.First, LastSeq: r.Last, Acked: r.Acked, TornTail: r.TornTail != nil}
		if r.Err != nil {
			pi.Error = trimPrefix(r.Err)
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("park log %s is damaged: %s; run 'kafkawal verify'", pi.Name, pi.Error))
		} else if pi.Records > 0 {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d %s of %s/%s parked in park/%s (the partition stalled): they go to Kafka before its records in the WAL",
				pi.Records, plural(min(pi.Records, 2), "record", "records"), pi.Topic, pi.Partition, pi.Name))
		}
		rep.Parks.Count++
		rep.Parks.Records += pi.Records
		rep.Parks.Bytes += pi.Bytes
		rep.Parks.Logs = append(rep.Parks.Logs, pi)
	}
	return nil
}

func collectDeadLetters(rep *inspectReport, dir string) error {
	fi, err := os.Stat(filepath.Join(dir, wal.DeadLetterFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", wal.DeadLetterFile)
	}
	rep.DeadLetters.Bytes = fi.Size()
	var newest wal.DeadLetter
	err = wal.ReadDeadLetters(dir, func(dl wal.DeadLetter) error {
		rep.DeadLetters.Count++
		newest = dl
		return nil
	})
	if rep.DeadLetters.Count > 0 {
		rep.DeadLetters.Newest = &deadLetterInfo{Seq: newest.Seq, Time: newest.Time.UTC(), Error: newest.Err,
			Code: newest.Code, Topic: newest.Record.Topic, Partition: partition(newest.Record.Partition)}
		if newest.SentToPartition >= 0 {
			rep.DeadLetters.Newest.Partition = partition(newest.SentToPartition)
		}
	}
	return err
}

func collectQuarantine(rep *inspectReport, dir string) error {
	rep.Quarantine.Files = []fileInfo{}
	des, err := os.ReadDir(filepath.Join(dir, recovery.QuarantineDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, de := range des {
		fi, err := de.Info()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		rep.Quarantine.Count++
		rep.Quarantine.Bytes += fi.Size()
		rep.Quarantine.Files = append(rep.Quarantine.Files, fileInfo{Name: de.Name(), Bytes: fi.Size()})
	}
	return nil
}

// printInspect writes the table an operator reads.
func printInspect(w io.Writer, rep *inspectReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }

	row("directory", "%s", rep.Dir)
	switch {
	case rep.Lock.Held && rep.Lock.PID > 0:
		row("lock", "held by pid %d (a producer has the directory open)", rep.Lock.PID)
	case rep.Lock.Held:
		row("lock", "held (pid unknown)")
	default:
		row("lock", "free (no producer has the directory open)")
	}

	s := rep.Segments
	if s.Count == 0 {
		row("segments", "none")
	} else {
		row("segments", "%d %s, %s, seq %d..%d (%d records)", s.Count, plural(s.Count, "file", "files"), humanBytes(s.Bytes), s.FirstSeq, s.LastSeq, s.Records)
	}

	c := rep.Cursor
	switch {
	case c.Found && c.Acked == 0:
		row("cursor", "nothing delivered yet (generation %d)%s", c.Generation, damagedSlots(c.DamagedSlots))
	case c.Found:
		row("cursor", "%d (generation %d)%s", c.Acked, c.Generation, damagedSlots(c.DamagedSlots))
	case c.DamagedSlots > 0:
		row("cursor", "no valid slot%s: everything on disk will be sent again", damagedSlots(c.DamagedSlots))
	default:
		row("cursor", "nothing delivered yet")
	}

	if e := rep.ExactlyOnce; e != nil {
		switch {
		case e.Error != "":
			row("exactly once", "UNREADABLE: %s", e.Error)
		case e.Committed:
			row("exactly once", "TransactionalID %q, WAL id %s; delivered records are what Kafka's checkpoint says (the cursor may be behind it)", e.TransactionalID, e.WALID)
		default:
			row("exactly once", "TransactionalID %q, WAL id %s; nothing committed yet", e.TransactionalID, e.WALID)
		}
	}

	b := rep.Backlog
	row("backlog", "%d records, ~%s", b.Records, humanBytes(b.Bytes))
	if o := b.Oldest; o != nil {
		switch {
		case o.Error != "":
			row("oldest backlog", "seq %d: unreadable: %s", o.Seq, o.Error)
		case o.Timestamp == nil:
			row("oldest backlog", "seq %d, no timestamp (topic %s, partition %s)", o.Seq, o.Topic, o.Partition)
		default:
			row("oldest backlog", "seq %d, %s, %s (topic %s, partition %s)", o.Seq, o.Timestamp.Format(time.RFC3339), age(*o.AgeSeconds), o.Topic, o.Partition)
		}
	}

	switch {
	case rep.Tail.Segment == "":
		row("tail", "none")
	case rep.Tail.Clean:
		row("tail", "%s clean", rep.Tail.Segment)
	default:
		for i, d := range rep.Tail.Damage {
			kind := "CORRUPT"
			switch {
			case d.TornTail:
				kind = "torn"
			case d.Delivered:
				kind = "CORRUPT (already delivered, nothing lost)"
			}
			k := ""
			if i == 0 {
				k = "tail"
			}
			row(k, "%s at %s offset %d, %d bytes: %s", kind, filepath.Base(d.Segment), d.Offset, d.Bytes, d.Error)
		}
	}

	if rep.Parks.Count == 0 {
		row("parked", "none")
	} else {
		row("parked", "%d records in %d park %s, %s", rep.Parks.Records, rep.Parks.Count, plural(rep.Parks.Count, "log", "logs"), humanBytes(rep.Parks.Bytes))
		for _, pl := range rep.Parks.Logs {
			state := ""
			switch {
			case pl.Error != "":
				state = ", DAMAGED: " + pl.Error
			case pl.TornTail:
				state = ", torn tail (the next open cuts it off)"
			}
			row("", "  %s/%s: %d records, seq %d..%d, %s%s", pl.Topic, pl.Partition, pl.Records, pl.FirstSeq, pl.LastSeq, humanBytes(pl.Bytes), state)
		}
	}

	dl := rep.DeadLetters
	if dl.Error != "" {
		row("dead letters", "%d readable, then: %s", dl.Count, dl.Error)
	} else if n := dl.Newest; n != nil {
		row("dead letters", "%d (%s), newest seq %d at %s, topic %s: %s", dl.Count, humanBytes(dl.Bytes), n.Seq, n.Time.Format(time.RFC3339), n.Topic, n.Error)
	} else {
		row("dead letters", "none")
	}

	q := rep.Quarantine
	if q.Error != "" {
		row("quarantine", "unreadable: %s", q.Error)
	} else if q.Count == 0 {
		row("quarantine", "none")
	} else {
		row("quarantine", "%d %s, %s", q.Count, plural(q.Count, "file", "files"), humanBytes(q.Bytes))
		for _, f := range q.Files {
			row("", "  %s  %s", f.Name, humanBytes(f.Bytes))
		}
	}
	for i, warn := range rep.Warnings {
		k := ""
		if i == 0 {
			k = "WARNING"
		}
		row(k, "%s", warn)
	}
	return tw.Flush()
}

// trimPrefix drops the library's "kafkawal: " from an error shown inside
// a kafkawal report.
func trimPrefix(err error) string { return strings.TrimPrefix(err.Error(), "kafkawal: ") }

func damagedSlots(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d damaged %s", n, plural(n, "slot", "slots"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// age formats seconds as "1h2m3s old", or says the timestamp is ahead of
// this machine's clock.
func age(sec float64) string {
	d := time.Duration(sec * float64(time.Second)).Round(time.Second)
	if d < 0 {
		return fmt.Sprintf("%s in the future (clock skew?)", duration(-d))
	}
	return duration(d) + " old"
}

// duration is d.String() with days for long outages: "3d4h5m" rather than
// "76h5m0s".
func duration(d time.Duration) string {
	if d < 48*time.Hour {
		return d.String()
	}
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	return fmt.Sprintf("%dd%dh%dm", days, d/time.Hour, (d%time.Hour)/time.Minute)
}
