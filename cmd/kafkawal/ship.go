package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/recovery"
	"github.com/kafkawal/kafkawal/wal"
)

const shipSynopsis = "ship DIR -X bootstrap.servers=HOST:PORT [-X key=value ...] [--remove] [--corruption fail|quarantine] [--timeout D] [--checkpoint-topic T] [--at-least-once]"

const shipHelp = `
Ship delivers the backlog of a kafkawal directory that its service will not
open again (after a scale-in, a node loss, a decommission): every record
after the durable cursor goes to Kafka with the library's guarantees (at
least once, in order per partition), then ship exits 0.

It opens DIR as the service would, through the library: it takes DIR's
lock (a directory in use fails at once, naming the holder's pid), repairs a
torn tail left by a crash (the cut bytes go to DIR/quarantine/), checks
every segment's checksums before anything is sent, and persists the cursor
as it goes: ship killed half-way and run again sends only what is left
(the last CursorSyncInterval's worth again, as after any crash).

  -X key=value     a librdkafka setting, repeatable; bootstrap.servers is
                   required. Give the service's own settings (TLS, SASL,
                   message.max.bytes). Values are never printed.
  --remove         delete DIR once the backlog is empty. DIR is kept (exit
                   1) when its dead-letter log holds records or its
                   quarantine/ holds mid-log damage: they are the only copy.
  --corruption P   mid-log damage (a record whose checksum fails): fail
                   (default) sends nothing and names the segment, offset
                   and sequence; quarantine keeps the damaged bytes in
                   DIR/quarantine/, counts the records lost and ships the
                   rest.
  --timeout D      stop after D (for example 30m) and keep what is left in
                   DIR for the next run. Default: no limit (Ctrl-C stops
                   cleanly, persisting the cursor).
  -v               log kafkawal's and librdkafka's info events too (default:
                   warnings and errors), on stderr.

A directory its service delivered exactly once (Delivery ExactlyOnce) holds
its TransactionalID (DIR/exactly-once): ship delivers it exactly once too,
with that id, resuming from the position Kafka committed, so that
read_committed consumers see no record twice. The service must be gone: a
running instance with that id is fenced by ship.

  --checkpoint-topic T
                   the service's CheckpointTopic, if it was not the default
                   (kafkawal-checkpoints).
  --at-least-once  deliver at least once even so, from the local cursor
                   (records Kafka committed after it are sent again).

Progress goes to stderr: a bar on a terminal (records delivered and left,
bytes left, rate, time left), else a line at each tenth of the way and at
least every 30s. The verdict goes to stdout.

Records Kafka refuses for good (too large, not authorized, topic missing)
go to DIR/deadletter.log as they would in the service; ship says how many
('kafkawal dump --dead DIR' shows them).

exit status:
  0  the backlog is empty (DIR removed with --remove).
  1  not everything was delivered, with the reason: DIR in use, mid-log
     corruption, timeout, interruption, Kafka unreachable meanwhile; or
     --remove refused to delete what is not elsewhere.
  2  bad usage, not a kafkawal directory, or an I/O error.
`

// kafkaSettings collects -X key=value flags into a librdkafka ConfigMap.
// String never shows the values: they may hold passwords.
type kafkaSettings kafka.ConfigMap

func (k kafkaSettings) String() string {
	keys := make([]string, 0, len(k))
	for key := range k {
		keys = append(keys, key)
	}
	return strings.Join(keys, ",")
}

func (k kafkaSettings) Set(s string) error {
	key, val, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(key) == "" {
		return errors.New("want key=value")
	}
	k[strings.TrimSpace(key)] = val
	return nil
}

// shipOptions are ship's flags.
type shipOptions struct {
	dir     string
	kafka   kafka.ConfigMap
	remove  bool
	policy  kafkawal.CorruptionPolicy
	timeout time.Duration
	verbose bool
	// checkpointTopic and atLeastOnce: for a directory delivered exactly
	// once.
	checkpointTopic string
	atLeastOnce     bool
}

// shipPlainEvery is the longest the plain progress stays silent.
const shipPlainEvery = 30 * time.Second

func runShip(args []string, stdout, stderr io.Writer) int {
	flags := newFlagSet("ship")
	o := shipOptions{kafka: kafka.ConfigMap{}}
	flags.Var(kafkaSettings(o.kafka), "X", "librdkafka setting key=value (repeatable)")
	flags.BoolVar(&o.remove, "remove", false, "delete DIR after a complete delivery")
	corruption := flags.String("corruption", "fail", "fail or quarantine")
	flags.DurationVar(&o.timeout, "timeout", 0, "stop after this long")
	flags.BoolVar(&o.verbose, "v", false, "log info events")
	flags.StringVar(&o.checkpointTopic, "checkpoint-topic", "", "the service's CheckpointTopic (exactly-once directories)")
	flags.BoolVar(&o.atLeastOnce, "at-least-once", false, "deliver an exactly-once directory at least once, from the local cursor")
	pos, status, ok := parseArgs(flags, args, 1, shipSynopsis, shipHelp, stdout, stderr)
	if !ok {
		return status
	}
	o.dir = pos[0]
	switch *corruption {
	case "fail":
		o.policy = kafkawal.FailOnCorruption
	case "quarantine":
		o.policy = kafkawal.QuarantineCorruption
	default:
		fmt.Fprintf(stderr, "kafkawal ship: --corruption %q: want fail or quarantine; usage: kafkawal %s\n", *corruption, shipSynopsis)
		return exitUsage
	}
	if bs, _ := o.kafka["bootstrap.servers"].(string); strings.TrimSpace(bs) == "" {
		fmt.Fprintf(stderr, "kafkawal ship: -X bootstrap.servers=HOST:PORT is required; usage: kafkawal %s\n", shipSynopsis)
		return exitUsage
	}
	if o.timeout < 0 {
		fmt.Fprintf(stderr, "kafkawal ship: --timeout %v is negative\n", o.timeout)
		return exitUsage
	}
	if err := checkDir(o.dir); err != nil {
		return fail(stderr, "ship", err, exitUsage)
	}
	// Ctrl-C or SIGTERM stops delivery; Close then persists the cursor.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return ship(ctx, o, stdout, stderr, isTerminal(stderr))
}

// ship opens o.dir, delivers its backlog and reports; it returns the exit
// status.
func ship(ctx context.Context, o shipOptions, stdout, stderr io.Writer, tty bool) int {
	// The sender's log events and the progress reach stderr from two
	// goroutines: a file takes that (and the bar its width from it), any
	// other writer gets the writes one at a time.
	if _, ok := stderr.(*os.File); !ok {
		stderr = &syncWriter{w: stderr}
	}
	lvl := zerolog.WarnLevel
	if o.verbose {
		lvl = zerolog.InfoLevel
	}
	// What Open logs is held back: if it fails, the one line below says
	// it all; if it succeeds, it follows.
	logs := &switchWriter{held: &bytes.Buffer{}}
	lg := zerolog.New(zerolog.ConsoleWriter{Out: logs, NoColor: !tty, TimeFormat: time.TimeOnly}).
		Level(lvl).With().Timestamp().Logger()
	start := time.Now()
	cfg := kafkawal.Config{
		Dir:              o.dir,
		Kafka:            o.kafka,
		CorruptionPolicy: o.policy,
		// Damage in a sealed segment would otherwise be found only when
		// the sender reaches it, and delivery would stall there.
		FullScanOnOpen: true,
		Logger:         &lg,
	}
	id, eos, err := wal.LoadTxnIdentity(o.dir)
	if err != nil {
		return fail(stderr, "ship", err, exitUsage)
	}
	if eos && !o.atLeastOnce {
		cfg.Delivery, cfg.TransactionalID, cfg.CheckpointTopic = kafkawal.ExactlyOnce, id.TransactionalID, o.checkpointTopic
		fmt.Fprintf(stderr, "ship: %s was delivered exactly once: delivering it exactly once, as TransactionalID %q\n", o.dir, id.TransactionalID)
	}
	p, err := kafkawal.Open(cfg)
	if err != nil {
		return shipOpenFailed(o, err, stderr)
	}
	logs.release(stderr)
	// From here the sender's goroutine logs while this one prints
	// progress: both write through logs, one at a time (stderr need not
	// be safe for concurrent writes: in tests it is a bytes.Buffer).
	stderr = logs
	rep := p.OpenReport()
	st := p.Stats()
	total := st.BacklogRecords
	fmt.Fprintf(stderr, "ship: %s: %d records to deliver (seq %d..%d, %s in the WAL)\n", o.dir, total,
		st.Cursor+1, st.LastSeq, humanBytes(st.BacklogBytes))
	if r := rep.Recovery; r.TornTailRepairs > 0 {
		fmt.Fprintf(stderr, "ship: repaired a torn tail left by a crash (%s kept in %s/)\n", humanBytes(r.QuarantinedBytes), recovery.QuarantineDir)
	}
	if r := rep.Recovery; r.LostRecords > 0 {
		atLeast := ""
		if r.LostAtLeast {
			atLeast = "at least "
		}
		fmt.Fprintf(stderr, "ship: mid-log corruption: %s%d records lost (%d bytes), damaged bytes kept in %s/\n", atLeast, r.LostRecords, r.LostBytes, recovery.QuarantineDir)
	}

	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, o.timeout, fmt.Errorf("--timeout %v reached", o.timeout))
		defer cancel()
	}
	deliverErr := deliver(ctx, p, total, stderr, tty)
	if cfg.Delivery == kafkawal.ExactlyOnce {
		// What Kafka had committed beyond the local cursor left the
		// backlog without being delivered again.
		total = min(total, p.Stats().Delivered+p.Stats().DeadLettered+p.Stats().BacklogRecords)
	}

	// Close persists the cursor; after a failed delivery it needs no
	// long deadline: what is not delivered stays in DIR.
	closeWait := 30 * time.Second
	if deliverErr != nil {
		closeWait = time.Second
	}
	cctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	closeErr := p.Close(cctx)
	st = p.Stats()
	// Delivered counts Kafka's acknowledgements; dead letters and records
	// lost to corruption leave the backlog too, and are told apart.
	delivered := st.Delivered
	elapsed := time.Since(start)
	// The verdict is the cursor on disk, which the next run starts from.
	cur, _, err := wal.LoadCursor(o.dir)
	if err != nil {
		return fail(stderr, "ship", err, exitUsage)
	}
	if left := st.LastSeq - min(cur.Acked, st.LastSeq); left > 0 {
		reason := "Close: " + errString(closeErr)
		switch {
		case deliverErr != nil:
			reason = deliverErr.Error()
		case st.BacklogRecords == 0:
			reason = "the cursor was not persisted; delivered records would be sent again"
		}
		switch {
		case st.BrokerAuthFailed:
			reason += "; authentication with Kafka failed: " + st.BrokerAuthError
		case !st.BrokerReachable:
			reason += "; Kafka was unreachable"
		}
		fmt.Fprintf(stdout, "ship: NOT COMPLETE: delivered %d of %d records in %s; %d left in %s (%s); run ship again to continue\n",
			delivered, total, duration(elapsed.Round(time.Millisecond)), left, o.dir, reason)
		return exitProblem
	}
	rate := ""
	if s := elapsed.Seconds(); s > 0 && delivered > 0 {
		rate = fmt.Sprintf(", %.0f records/s", float64(delivered)/s)
	}
	fmt.Fprintf(stdout, "ship: delivered %d records in %s%s; the backlog of %s is empty\n", delivered, duration(elapsed.Round(time.Millisecond)), rate, o.dir)
	if st.DeadLettered > 0 {
		fmt.Fprintf(stdout, "ship: %d records refused by Kafka for good went to the dead-letter log; see 'kafkawal dump --dead %s'\n", st.DeadLettered, o.dir)
	}
	if !o.remove {
		return exitOK
	}
	if err := removeShipped(o.dir, st.LastSeq); err != nil {
		var kept *keptError
		if errors.As(err, &kept) {
			fmt.Fprintf(stdout, "ship: %s kept: %v\n", o.dir, err)
			return exitProblem
		}
		return fail(stderr, "ship", fmt.Errorf("remove %s: %w", o.dir, err), exitUsage)
	}
	fmt.Fprintf(stdout, "ship: removed %s\n", o.dir)
	return exitOK
}

// deliver waits until the backlog is delivered (or dead-lettered) or ctx
// ends, showing progress.
func deliver(ctx context.Context, p *kafkawal.Producer, total uint64, stderr io.Writer, tty bool) error {
	flushed := make(chan error, 1)
	go func() { flushed <- p.Flush(ctx) }()
	bar := newProgress(stderr, tty, shipStyle)
	defer bar.finish()
	every := time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	show := func() {
		st := p.Stats()
		bar.update(int64(total-min(total, st.BacklogRecords)), int64(total), shipDetail(st))
	}
	show()
	for {
		select {
		case err := <-flushed:
			if err == nil {
				show()
				return nil
			}
			if cause := context.Cause(ctx); cause != nil {
				if errors.Is(cause, context.Canceled) {
					return errors.New("interrupted")
				}
				return cause
			}
			return err
		case <-tick.C:
			show()
		}
	}
}

// shipDetail is what the progress adds to the count of records.
func shipDetail(st kafkawal.Stats) string {
	s := fmt.Sprintf("%d left (%s)", st.BacklogRecords, humanBytes(st.BacklogBytes))
	if !st.BrokerReachable {
		s += ", Kafka unreachable"
	}
	return s
}

var shipStyle = progressStyle{
	verb: "shipping",
	unit: "records",
	line: func(done, total int64, detail string) string {
		pct := int64(100)
		if total > 0 {
			pct = done * 100 / total
		}
		return fmt.Sprintf("ship: delivered %d of %d records (%d%%), %s", done, total, pct, detail)
	},
	quiet: shipPlainEvery,
}

// shipOpenFailed explains why DIR could not be opened.
func shipOpenFailed(o shipOptions, err error, stderr io.Writer) int {
	var ce *recovery.CorruptionError
	switch {
	case errors.Is(err, kafkawal.ErrLocked):
		return fail(stderr, "ship", fmt.Errorf("%w: stop the producer that holds it first; nothing was sent", err), exitProblem)
	case errors.As(err, &ce):
		return fail(stderr, "ship", fmt.Errorf("%w; nothing was sent. 'kafkawal verify %s' lists every damaged range; --corruption quarantine ships the rest, counting the damaged records lost", err, o.dir), exitProblem)
	case errors.Is(err, kafkawal.ErrCorrupt):
		return fail(stderr, "ship", fmt.Errorf("%w; nothing was sent", err), exitProblem)
	}
	return fail(stderr, "ship", err, exitUsage)
}

// syncWriter serializes writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

// switchWriter holds what is written until release, then passes it on.
type switchWriter struct {
	mu   sync.Mutex
	held *bytes.Buffer
	out  io.Writer
}

func (w *switchWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.out == nil {
		return w.held.Write(b)
	}
	return w.out.Write(b)
}

// release writes what was held to out, and from now on everything.
func (w *switchWriter) release(out io.Writer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.held.WriteTo(out)
	w.out = out
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
