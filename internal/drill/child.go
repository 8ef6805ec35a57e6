package drill

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal"
)

// Record headers that tie a record read back from Kafka to the ledger.
const (
	// IDHeader carries the record's id, in decimal.
	IDHeader = "kafkawal-drill-id"
	// NonceHeader carries the drill's nonce, so that records of other
	// drills in the same topics are told apart.
	NonceHeader = "kafkawal-drill-nonce"
)

// ledgerFD is the child's file descriptor for the ledger pipe (the first
// of exec.Cmd.ExtraFiles).
const ledgerFD = 3

// maxBatch bounds one AppendBatch: a child that falls behind its rate (a
// slow fsync) catches up in batches of at most this many records.
const maxBatch = 1000

// ChildConfig is one run of the load generator. Its flags are the child's
// command line (Args, parseChildArgs).
type ChildConfig struct {
	Dir       string
	Bootstrap string
	// KafkaConfig, if set, is a JSON object of librdkafka settings (a
	// secure listener's) that the child adds to its Config.Kafka.
	KafkaConfig string
	Topics      []string
	Partitions  int
	Rate        float64
	Size        int
	Durability  string
	// TransactionalID, if set, makes the child deliver exactly once,
	// committing every CommitInterval (0: kafkawal's default).
	TransactionalID string
	CommitInterval  time.Duration
	// Run numbers the child's life; ids are Run<<32 | counter.
	Run   uint32
	Nonce string
	// Drain makes the child append DrainRecords records, Flush and Close
	// within DrainTimeout, and exit 0; otherwise it appends until killed.
	Drain        bool
	DrainRecords int
	DrainTimeout time.Duration
	// SegmentBytes is the WAL's segment size; 0: kafkawal's default. The
	// power-cut drill makes it small, so that segments rotate and are
	// deleted often.
	SegmentBytes int64
	// Every DeadLetterEvery-th record (0: none) goes to DeadLetterTopic
	// with a value of DeadLetterSize bytes, more than that topic accepts:
	// Kafka refuses it for good and kafkawal dead-letters it.
	DeadLetterTopic string
	DeadLetterEvery int
	DeadLetterSize  int
	// StallTimeout and ParkAfter are the Producer's PartitionStallTimeout
	// and ParkAfter (0: its defaults).
	StallTimeout time.Duration
	ParkAfter    time.Duration
}

func (c ChildConfig) flags(fs *flag.FlagSet) *ChildConfig {
	fs.StringVar(&c.Dir, "dir", c.Dir, "WAL directory")
	fs.StringVar(&c.Bootstrap, "bootstrap", c.Bootstrap, "bootstrap.servers")
	fs.StringVar(&c.KafkaConfig, "kafka-config", c.KafkaConfig, "JSON file of librdkafka settings to add")
	fs.Func("topics", "comma-separated topics", func(s string) error {
		c.Topics = strings.Split(s, ",")
		return nil
	})
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "partitions per topic")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "records per second")
	fs.IntVar(&c.Size, "size", c.Size, "value bytes")
	fs.StringVar(&c.Durability, "durability", c.Durability, "always|periodic|never")
	fs.StringVar(&c.TransactionalID, "transactional-id", c.TransactionalID, "deliver exactly once with this TransactionalID")
	fs.DurationVar(&c.CommitInterval, "commit-interval", c.CommitInterval, "CommitInterval with --transactional-id")
	fs.Func("run", "run number", func(s string) error {
		n, err := strconv.ParseUint(s, 10, 32)
		c.Run = uint32(n)
		return err
	})
	fs.StringVar(&c.Nonce, "nonce", c.Nonce, "the drill's nonce")
	fs.BoolVar(&c.Drain, "drain", c.Drain, "append, flush, close, exit")
	fs.IntVar(&c.DrainRecords, "drain-records", c.DrainRecords, "records the drain run appends")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "bound of the drain's Flush and Close")
	fs.Int64Var(&c.SegmentBytes, "segment-bytes", c.SegmentBytes, "WAL segment size (0: default)")
	fs.StringVar(&c.DeadLetterTopic, "dead-letter-topic", c.DeadLetterTopic, "topic that refuses the dead-letter records")
	fs.IntVar(&c.DeadLetterEvery, "dead-letter-every", c.DeadLetterEvery, "every n-th record is refused (0: none)")
	fs.IntVar(&c.DeadLetterSize, "dead-letter-size", c.DeadLetterSize, "value bytes of a refused record")
	fs.DurationVar(&c.StallTimeout, "stall-timeout", c.StallTimeout, "PartitionStallTimeout")
	fs.DurationVar(&c.ParkAfter, "park-after", c.ParkAfter, "ParkAfter")
	return &c
}

// Args is c as the child's command-line arguments.
func (c ChildConfig) Args() []string {
	return []string{
		"--dir", c.Dir,
		"--bootstrap", c.Bootstrap,
		"--kafka-config", c.KafkaConfig,
		"--topics", strings.Join(c.Topics, ","),
		"--partitions", strconv.Itoa(c.Partitions),
		"--rate", strconv.FormatFloat(c.Rate, 'g', -1, 64),
		"--size", strconv.Itoa(c.Size),
		"--durability", c.Durability,
		"--transactional-id", c.TransactionalID,
		"--commit-interval", c.CommitInterval.String(),
		"--run", strconv.FormatUint(uint64(c.Run), 10),
		"--nonce", c.Nonce,
		"--drain=" + strconv.FormatBool(c.Drain),
		"--drain-records", strconv.Itoa(c.DrainRecords),
		"--drain-timeout", c.DrainTimeout.String(),
		"--segment-bytes", strconv.FormatInt(c.SegmentBytes, 10),
		"--dead-letter-topic", c.DeadLetterTopic,
		"--dead-letter-every", strconv.Itoa(c.DeadLetterEvery),
		"--dead-letter-size", strconv.Itoa(c.DeadLetterSize),
		"--stall-timeout", c.StallTimeout.String(),
		"--park-after", c.ParkAfter.String(),
	}
}

func parseChildArgs(args []string) (ChildConfig, error) {
	fs := flag.NewFlagSet("kafkawal drill-child", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := ChildConfig{}.flags(fs)
	if err := fs.Parse(args); err != nil {
		return ChildConfig{}, err
	}
	switch {
	case fs.NArg() > 0:
		return ChildConfig{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.Dir == "" || c.Bootstrap == "" || len(c.Topics) == 0 || c.Nonce == "":
		return ChildConfig{}, errors.New("--dir, --bootstrap, --topics and --nonce are required")
	case c.Partitions < 1 || c.Rate <= 0 || c.Size < 0 || c.Run == 0:
		return ChildConfig{}, errors.New("--partitions, --rate and --run must be positive, --size not negative")
	case c.SegmentBytes < 0 || c.DeadLetterEvery < 0 || c.DeadLetterSize < 0:
		return ChildConfig{}, errors.New("--segment-bytes, --dead-letter-every and --dead-letter-size must not be negative")
	case c.DeadLetterEvery > 0 && c.DeadLetterTopic == "":
		return ChildConfig{}, errors.New("--dead-letter-every needs --dead-letter-topic")
	}
	if _, err := parseDurability(c.Durability); err != nil {
		return ChildConfig{}, err
	}
	return *c, nil
}

// ChildMain is the body of the hidden `kafkawal drill-child` command (and
// of a test binary standing in for it): it parses args, writes the ledger
// to fd 3 and logs to stderr. It returns the exit status: 0 only after a
// drain run closed cleanly.
func ChildMain(args []string, stderr io.Writer) int {
	c, err := parseChildArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "kafkawal drill-child: %v\n", err)
		return 2
	}
	ledger := os.NewFile(ledgerFD, "ledger")
	if ledger == nil {
		fmt.Fprintln(stderr, "kafkawal drill-child: no ledger on fd 3 (run by kafkawal drill only)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := RunChild(ctx, c, ledger, stderr); err != nil {
		fmt.Fprintf(stderr, "kafkawal drill-child run %d: %v\n", c.Run, err)
		return 1
	}
	return 0
}

// RunChild opens a Producer on c.Dir and appends records at c.Rate,
// writing each acknowledged id range to ledger, until ctx ends or a write
// to the ledger fails (the parent is gone); a drain run instead appends
// c.DrainRecords records, flushes and closes, and returns nil only if both
// succeeded. Warnings of kafkawal and librdkafka go to logw.
func RunChild(ctx context.Context, c ChildConfig, ledger, logw io.Writer) error {
	dur, err := parseDurability(c.Durability)
	if err != nil {
		return err
	}
	lw := &ledgerWriter{w: ledger}
	lg := zerolog.New(logw).Level(childLogLevel()).With().Timestamp().Uint32("run", c.Run).Logger()
	var first sync.Once
	cfg := kafkawal.Config{
		Dir: c.Dir,
		Kafka: kafka.ConfigMap{
			"bootstrap.servers": c.Bootstrap,
			// Back after a broker restart or a network cut within a
			// second, not librdkafka's default 10.
			"reconnect.backoff.max.ms": 1000,
		},
		Durability:            dur,
		SegmentBytes:          c.SegmentBytes,
		PartitionStallTimeout: c.StallTimeout,
		ParkAfter:             c.ParkAfter,
		Logger:                &lg,
		OnDeliveryResult: func(kafkawal.DeliveryResult) {
			first.Do(func() { _ = lw.line(lineDelivered, time.Now().UnixNano()) })
		},
	}
	if c.KafkaConfig != "" {
		js, err := os.ReadFile(c.KafkaConfig)
		if err != nil {
			return fmt.Errorf("--kafka-config: %w", err)
		}
		var m map[string]string
		if err := json.Unmarshal(js, &m); err != nil {
			return fmt.Errorf("--kafka-config %s: %w", c.KafkaConfig, err)
		}
		for k, v := range m {
			cfg.Kafka[k] = v
		}
	}
	if c.TransactionalID != "" {
		cfg.Delivery, cfg.TransactionalID, cfg.CommitInterval = kafkawal.ExactlyOnce, c.TransactionalID, c.CommitInterval
	}
	start := time.Now()
	p, err := kafkawal.Open(cfg)
	if err != nil {
		return fmt.Errorf("open %s: %w", c.Dir, err)
	}
	rep := p.OpenReport()
	st := p.Stats()
	err = lw.line(lineOpen, OpenLine{
		Repairs:          rep.Recovery.TornTailRepairs,
		Replay:           rep.Replay,
		Parked:           rep.Parked,
		LostRecords:      rep.Recovery.LostRecords,
		QuarantinedBytes: rep.Recovery.QuarantinedBytes,
		CursorClamped:    rep.WAL.CursorClamped,
		CursorFound:      rep.WAL.Cursor.Acked,
		Cursor:           st.PersistedCursor,
		LastSeq:          rep.WAL.LastSeq,
		OpenMS:           ms(time.Since(start)),
	})
	if err == nil {
		stop := watchCursor(p, lw)
		defer stop()
		limit := -1 // until killed
		if c.Drain {
			limit = c.DrainRecords
		}
		err = generate(ctx, p, c, lw, limit)
	}
	if err != nil || !c.Drain {
		// An interrupt, a lost parent or a failed append: leave the rest
		// in the WAL for the next run.
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return errors.Join(err, p.Close(closeCtx))
	}
	return drain(ctx, p, c, lw)
}

// drain flushes and closes p within c.DrainTimeout and reports it.
func drain(ctx context.Context, p *kafkawal.Producer, c ChildConfig, lw *ledgerWriter) error {
	ctx, cancel := context.WithTimeout(ctx, c.DrainTimeout)
	defer cancel()
	t := time.Now()
	if err := p.Flush(ctx); err != nil && !c.refused(err) {
		st := p.Stats()
		return errors.Join(fmt.Errorf("flush: %w (cursor %d of %d)", err, st.Cursor, st.LastSeq), p.Close(ctx))
	}
	flushed := time.Since(t)
	st := p.Stats()
	t = time.Now()
	if err := p.Close(ctx); err != nil && !c.refused(err) {
		return fmt.Errorf("close: %w", err)
	}
	return lw.line(lineDrained, DrainLine{
		Appended:     st.Appended,
		Delivered:    st.Delivered,
		Resent:       st.Resent,
		DeadLettered: st.DeadLettered,
		Cursor:       st.Cursor,
		LastSeq:      st.LastSeq,
		FlushMS:      ms(flushed),
		CloseMS:      ms(time.Since(t)),
	})
}

// generate appends records at c.Rate, as single records or, when it falls
// behind, as batches, until limit records (limit < 0: until ctx ends or
// the ledger fails). One goroutine appends, so WAL order is id order.
func generate(ctx context.Context, p *kafkawal.Producer, c ChildConfig, lw *ledgerWriter, limit int) error {
	start := time.Now()
	var sent uint64 // records appended; the next counter is sent+1
	timer := time.NewTimer(0)
	defer timer.Stop()
	for limit < 0 || sent < uint64(limit) {
		// Records due by now: one at start, then one per 1/Rate.
		due := uint64(time.Since(start).Seconds()*c.Rate) + 1
		if due <= sent {
			next := start.Add(time.Duration(float64(sent) / c.Rate * float64(time.Second)))
			timer.Reset(time.Until(next))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			}
			continue
		}
		n := min(due-sent, maxBatch)
		if limit >= 0 {
			n = min(n, uint64(limit)-sent)
		}
		recs := make([]kafkawal.Record, n)
		for i := range recs {
			recs[i] = c.record(sent + uint64(i))
		}
		if err := lw.line(lineTry, c.id(sent), n); err != nil {
			return err
		}
		if _, err := p.AppendBatch(ctx, recs); err != nil {
			return fmt.Errorf("append ids %d..%d: %w", c.id(sent), c.id(sent+n-1), err)
		}
		if err := lw.line(lineAck, c.id(sent), n); err != nil {
			return err
		}
		sent += n
	}
	return nil
}

// cursorPoll is how often a child looks for a newly persisted cursor.
const cursorPoll = 10 * time.Millisecond

// watchCursor writes a cursor line each time p's persisted cursor moves,
// until the returned stop is called.
func watchCursor(p *kafkawal.Producer, lw *ledgerWriter) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(cursorPoll)
		defer t.Stop()
		last := p.Stats().PersistedCursor
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if c := p.Stats().PersistedCursor; c != last {
				last = c
				if lw.line(lineCursor, c) != nil {
					return
				}
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// refused reports whether err says only that records were dead-lettered,
// which the child asked for when it sends records Kafka refuses (the
// drill checks the dead-letter log for them).
func (c ChildConfig) refused(err error) bool {
	var dl *kafkawal.DeadLetterError
	return c.DeadLetterEvery > 0 && errors.As(err, &dl) && err == error(dl)
}

// id is the id of the run's i-th record (from 0).
func (c ChildConfig) id(i uint64) uint64 { return uint64(c.Run)<<32 | (i + 1) }

// record is the run's i-th record: round-robin over topics, then over
// partitions, so that every partition gets ids in increasing order. On
// every second topic the partition is not given: the record has
// PartitionAny and a key per would-be partition, which the partitioner
// hashes to the same partition on every run (and kafkawal's sender
// partitions itself, attributing reports by position).
//
// Every DeadLetterEvery-th record instead goes to DeadLetterTopic,
// partition 0, with a DeadLetterSize-byte value.
func (c ChildConfig) record(i uint64) kafkawal.Record {
	id := c.id(i)
	ids := strconv.FormatUint(id, 10)
	nt := uint64(len(c.Topics))
	r := kafkawal.Record{
		Topic:     c.Topics[i%nt],
		Partition: int32(i / nt % uint64(c.Partitions)),
		Value:     idValue(id, c.Size),
		Headers: []kafkawal.Header{
			{Key: IDHeader, Value: []byte(ids)},
			{Key: NonceHeader, Value: []byte(c.Nonce)},
		},
	}
	if isDeadLetter(id, c.DeadLetterEvery) {
		r.Topic, r.Partition, r.Value = c.DeadLetterTopic, 0, idValue(id, c.DeadLetterSize)
		return r
	}
	if i%nt%2 == 1 {
		r.Key = []byte("p" + strconv.Itoa(int(r.Partition)))
		r.Partition = kafkawal.PartitionAny
	}
	return r
}

// idValue is the value of the record with this id: the id in decimal and a
// space, repeated over size bytes.
func idValue(id uint64, size int) []byte {
	ids := strconv.FormatUint(id, 10) + " "
	v := make([]byte, size)
	for j := 0; j < len(v); j += len(ids) {
		copy(v[j:], ids)
	}
	return v
}

// isDeadLetter says whether the record with this id goes to the
// dead-letter topic, with a dead letter every n records (0: never).
func isDeadLetter(id uint64, n int) bool {
	return n > 0 && (id&(1<<32-1))%uint64(n) == 0
}

// recordID reads a record's drill id; ok is false without one.
func recordID(r *kgo.Record) (uint64, bool) {
	for _, h := range r.Headers {
		if h.Key == IDHeader {
			id, err := strconv.ParseUint(string(h.Value), 10, 64)
			return id, err == nil
		}
	}
	return 0, false
}

// recordNonce reads a record's drill nonce; "" without one.
func recordNonce(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == NonceHeader {
			return string(h.Value)
		}
	}
	return ""
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// childLogLevel is the children's log level: warnings, or what
// KAFKAWAL_DRILL_CHILD_LOG names (debug, info) when a failure needs the
// children's story (with the drill's -v).
func childLogLevel() zerolog.Level {
	if l, err := zerolog.ParseLevel(os.Getenv("KAFKAWAL_DRILL_CHILD_LOG")); err == nil && l != zerolog.NoLevel {
		return l
	}
	return zerolog.WarnLevel
}
