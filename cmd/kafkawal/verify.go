package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/mattn/go-isatty"

	"github.com/kafkawal/kafkawal/recovery"
	"github.com/kafkawal/kafkawal/wal"
)

const verifyHelp = `
Verify reads every segment and checks every record's CRC32C and framing,
and that each sealed segment holds as many records as the next segment's
name implies. Progress goes to stderr (a bar on a terminal, a line per 10%
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
	bar := newProgress(stderr, isTerminal(stderr))
	rep, err := recovery.Scan(dir, recovery.ScanOptions{Progress: bar.update})
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
	if len(rep.Damage) > 0 {
		fmt.Fprintf(stdout, "verify: ok with a torn tail (the next open repairs it): %s\n", summary)
		return exitOK
	}
	fmt.Fprintf(stdout, "verify: ok: %s\n", summary)
	return exitOK
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// progress shows how far a scan is: a bar redrawn in place on a terminal,
// else a line at every 10% so that logs stay short.
type progress struct {
	w        io.Writer
	tty      bool
	lastStep int64 // last 10% step printed; -1 before the first
	drawn    bool
}

func newProgress(w io.Writer, tty bool) *progress { return &progress{w: w, tty: tty, lastStep: -1} }

func (p *progress) update(done, total int64) {
	pct := int64(100)
	if total > 0 {
		pct = done * 100 / total
	}
	if p.tty {
		const width = 30
		fill := int(pct * width / 100)
		fmt.Fprintf(p.w, "\rverifying [%s%s] %3d%%  %s / %s ", strings.Repeat("#", fill), strings.Repeat(".", width-fill), pct, humanBytes(done), humanBytes(total))
		p.drawn = true
		return
	}
	if step := pct / 10; step > p.lastStep {
		p.lastStep = step
		fmt.Fprintf(p.w, "verify: checked %s of %s (%d%%)\n", humanBytes(done), humanBytes(total), pct)
	}
}

// finish ends the bar's line so that what follows starts on its own.
func (p *progress) finish() {
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
	}
}
