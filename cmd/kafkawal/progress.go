package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
)

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// progressStyle says how a command's progress reads.
type progressStyle struct {
	// verb describes the bar on a terminal ("verifying").
	verb string
	// bytes: the amounts are bytes (shown in binary units); otherwise
	// they count items of unit ("records").
	bytes bool
	unit  string
	// line is the plain line for done of total, with the caller's detail.
	line func(done, total int64, detail string) string
	// quiet is the longest a plain display stays silent while a command
	// runs (0: only at each tenth of the way), so that a stalled command
	// still shows it is alive.
	quiet time.Duration
}

// progress shows how far a long command is: a bar redrawn in place on a
// terminal (github.com/schollz/progressbar: amount, rate, time left), else
// a line at each tenth of the way, so that logs stay short.
type progress struct {
	w        io.Writer
	tty      bool
	style    progressStyle
	bar      *progressbar.ProgressBar
	max      int64
	lastStep int64 // last tenth printed; -1 before the first
	lastLine time.Time
	now      func() time.Time
}

func newProgress(w io.Writer, tty bool, style progressStyle) *progress {
	return &progress{w: w, tty: tty, style: style, lastStep: -1, now: time.Now}
}

// update shows done of total; detail is added to the line (and to the
// bar's description on a terminal).
func (p *progress) update(done, total int64, detail string) {
	if p.tty {
		p.draw(done, total, detail)
		return
	}
	pct := int64(100)
	if total > 0 {
		pct = done * 100 / total
	}
	step := pct / 10
	quietFor := p.now().Sub(p.lastLine)
	if step <= p.lastStep && (p.style.quiet == 0 || quietFor < p.style.quiet) {
		return
	}
	p.lastStep = max(p.lastStep, step)
	p.lastLine = p.now()
	fmt.Fprintln(p.w, p.style.line(done, total, detail))
}

func (p *progress) draw(done, total int64, detail string) {
	if total <= 0 {
		return // the bar needs a positive maximum; finish prints the end
	}
	if p.bar == nil || total != p.max {
		if p.bar == nil {
			p.bar = p.newBar(total)
		} else {
			p.bar.ChangeMax64(total)
		}
		p.max = total
	}
	desc := p.style.verb
	if detail != "" {
		desc += ", " + detail
	}
	_ = p.bar.Set64(min(done, total))
	p.bar.Describe(desc)
}

func (p *progress) newBar(total int64) *progressbar.ProgressBar {
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(p.style.verb),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionShowCount(),
		progressbar.OptionFullWidth(),
	}
	if p.style.bytes {
		opts = append(opts, progressbar.OptionShowBytes(true), progressbar.OptionUseIECUnits(true))
	} else {
		opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString(p.style.unit))
	}
	return progressbar.NewOptions64(total, opts...)
}

// finish ends the bar's line so that what follows starts on its own.
func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Exit()
		fmt.Fprintln(p.w)
	}
}
