package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/kafkawal/kafkawal/recovery"
	"github.com/kafkawal/kafkawal/wal"
)

const verifyHelp = `
Verify reads every segment and checks every record's CRC32C and framing,
and that each sealed segment holds as many records as the next segment's
name implies; then every park log (park/: the records of partitions that
stalled), record by record. Progress goes to stderr (a bar on a terminal, a line per 10%
otherwise); the verdict goes to stdout.

It takes no lock and changes nothing. A producer writing meanwhile may show
up as a torn tail (its record in progress), and a segment it deletes during
the scan fails the run: run it again.

exit status:
  0  every record intact. A torn tail (an incomplete last record, left by a
     crash or being written right now) is reported but is not corruption:
     the next open repairs it and keeps the bytes in quarantine/.
  1  corruption: each damaged range is printed with its segment file,
     byte offset and first sequence, and "already delivered" when it lies
     at or below the durable cursor: its records are in Kafka, nothing is
     lost, and the next open quarantines it under every policy (but the
     disk that damaged it deserves a look).
  2  bad usage, not a kafkawal directory, or an I/O error.
`

func runVerify(args []string, stdout, stderr io.Writer) int {
	flags := newFlagSet("verify")
	pos, status, ok := parseArgs(flags, args, 1, "verify DIR", verifyHelp, stdout, stderr)
	if !ok {
		return status
	}
	dir := pos[0]
	if err := checkDir(dir); err != nil {
		return fail(stderr, "verify", err, exitUsage)
	}
	bar := newProgress(stderr, isTerminal(stderr), verifyStyle)
	rep, err := recovery.Scan(dir, recovery.ScanOptions{Progress: func(done, total int64) { bar.update(done, total, "") }})
	bar.finish()
	if err != nil && !errors.Is(err, wal.ErrCorrupt) {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w (a producer holding the directory may have deleted an acknowledged segment during the scan; run again)", err)
		}
		return fail(stderr, "verify", err, exitUsage)
	}

	corrupt, delivered := 0, 0
	for _, d := range rep.Damage {
		kind := "CORRUPT"
		switch {
		case d.TornTail:
			kind = "TORN TAIL"
		case d.Delivered:
			corrupt++
			delivered++
			kind = fmt.Sprintf("CORRUPT (already delivered: at or below the cursor %d, nothing lost)", rep.Cursor)
		default:
			corrupt++
		}
		seq := "seq unknown"
		if d.Seq != 0 {
			seq = fmt.Sprintf("seq %d", d.Seq)
		}
		fmt.Fprintf(stdout, "%s: segment %s offset %d (%s), %d bytes: %v\n", kind, d.Segment, d.Offset, seq, d.Bytes, d.Err)
	}
	summary := fmt.Sprintf("%d %s, %s, %d records", rep.Segments, plural(rep.Segments, "segment", "segments"), humanBytes(rep.Bytes), rep.Records)
	if rep.Segments > 0 {
		summary += fmt.Sprintf(", seq %d..%d", rep.FirstSeq, rep.LastSeq)
	}
	if rep.Holes > 0 {
		summary += fmt.Sprintf(", %d %s (records lost in an earlier repair)", rep.Holes, plural(int(rep.Holes), "hole", "holes"))
	}
	parks, err := wal.VerifyParks(dir)
	if err != nil {
		return fail(stderr, "verify", err, exitUsage)
	}
	parked, torn := 0, len(rep.Damage) > 0
	for _, p := range parks {
		name := filepath.Base(p.Dir)
		switch {
		case p.Err != nil:
			corrupt++
			fmt.Fprintf(stdout, "CORRUPT: park log %s: %v\n", name, p.Err)
		case p.TornTail != nil:
			torn = true
			fmt.Fprintf(stdout, "TORN TAIL: park log %s: %v\n", name, p.TornTail)
		}
		parked += p.Undelivered
	}
	if len(parks) > 0 {
		summary += fmt.Sprintf("; %d park %s, %d records to deliver", len(parks), plural(len(parks), "log", "logs"), parked)
	}
	switch {
	case corrupt > 0 && delivered == corrupt:
		fmt.Fprintf(stdout, "verify: CORRUPT: %d damaged %s, all in records already delivered: nothing lost, the next open quarantines %s; %s\n",
			corrupt, plural(corrupt, "range", "ranges"), plural(corrupt, "it", "them"), summary)
		return exitProblem
	case corrupt > 0:
		already := ""
		if delivered > 0 {
			already = fmt.Sprintf(" (%d of them in records already delivered)", delivered)
		}
		fmt.Fprintf(stdout, "verify: CORRUPT: %d damaged %s%s in %s\n", corrupt, plural(corrupt, "range", "ranges"), already, summary)
		return exitProblem
	}
	if torn {
		fmt.Fprintf(stdout, "verify: ok with a torn tail (the next open repairs it): %s\n", summary)
		return exitOK
	}
	fmt.Fprintf(stdout, "verify: ok: %s\n", summary)
	return exitOK
}

// verifyStyle: bytes checked of the log's bytes.
var verifyStyle = progressStyle{
	verb:  "verifying",
	bytes: true,
	line: func(done, total int64, _ string) string {
		pct := int64(100)
		if total > 0 {
			pct = done * 100 / total
		}
		return fmt.Sprintf("verify: checked %s of %s (%d%%)", humanBytes(done), humanBytes(total), pct)
	},
}
