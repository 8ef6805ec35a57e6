package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/internal/powercut"
	"github.com/kafkawal/kafkawal/wal"
)

// brokerStartTimeout bounds starting (or restarting) a broker and creating
// the topics; a real broker needs most of it on a cold machine.
const brokerStartTimeout = 3 * time.Minute

// drill is one Run's state.
type drill struct {
	cfg       Config
	t0        time.Time
	rep       *Report
	bootstrap string
	cur       *child // the running child, killed on every way out
	ledgers   map[int]*runLedger

	broker     kafkatest.Broker // nil for --bootstrap
	txnID      string           // the children's TransactionalID if placed (txnplace.go)
	kafkaFile  string           // the children's security settings (0600, removed by tearDown); "" for plaintext
	faults     *faultRunner     // nil without faults
	stopFaults context.CancelFunc

	mnt string       // power cuts: the mount point
	fs  *powercut.FS // power cuts: the mounted filesystem, if any
}

// Run runs the drill cfg describes: start (or use) a broker and create the
// topics, start cfg.Kills children one after the other and SIGKILL each at
// a random instant while faults happen on their own schedule, run a last
// child that must flush and close cleanly, read every topic back and
// compare it with the ledger.
//
// A drill that ran to the end returns its report and a nil error, whatever
// it found: Report.OK says whether the contract held. An error means the
// drill itself could not run (bad config, broker, topics, a child that
// cannot start, a fault that failed, ctx); the report, if not nil, is
// partial. No child or broker the drill started outlives Run.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	nonce, err := newNonce()
	if err != nil {
		return nil, err
	}
	d := &drill{cfg: cfg, t0: time.Now()}
	d.rep = &Report{
		Broker: cfg.Broker, Listener: cfg.Listener, Topics: cfg.Topics, Partitions: cfg.Partitions,
		Durability: cfg.Durability, ExactlyOnce: cfg.ExactlyOnce, Rate: cfg.Rate, Size: cfg.Size, Seed: cfg.Seed, Nonce: nonce,
		KillsRequested: cfg.Kills, KillAfterMinMS: ms(cfg.KillAfterMin), KillAfterMaxMS: ms(cfg.KillAfterMax),
		Runs: []RunReport{},
	}
	rep = d.rep

	tempDir := cfg.Dir == ""
	if tempDir {
		if d.cfg.Dir, err = os.MkdirTemp("", "kafkawal-drill-"); err != nil {
			return rep, fmt.Errorf("drill: WAL directory: %w", err)
		}
	}
	rep.Dir, rep.DirKept = d.cfg.Dir, true
	defer func() {
		err = errors.Join(err, d.tearDown())
		if err != nil {
			// A partial report says why it is partial.
			rep.fail("the drill did not finish: %v", err)
			rep.OK = false
			rep.ElapsedMS = ms(time.Since(d.t0))
		}
		// A temporary WAL is evidence only when the drill ran to the
		// end and found the contract broken.
		if tempDir && (err != nil || rep.OK) {
			if rerr := os.RemoveAll(d.cfg.Dir); rerr != nil {
				err = errors.Join(err, fmt.Errorf("drill: remove %s: %w", d.cfg.Dir, rerr))
			} else {
				rep.DirKept = false
			}
		}
	}()

	if cfg.PowerCuts > 0 {
		if err := d.setUpPowerCuts(); err != nil {
			return rep, err
		}
	}
	if err := d.setUpBroker(ctx); err != nil {
		return rep, err
	}
	rng := mrand.New(mrand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	if cfg.PowerCuts > 0 {
		delays := make([]time.Duration, cfg.PowerCuts)
		for i := range delays {
			delays[i] = cfg.KillAfterMin + time.Duration(rng.Int64N(int64(cfg.KillAfterMax-cfg.KillAfterMin)+1))
		}
		if err := d.cutPhase(ctx, rng, delays); err != nil {
			return rep, err
		}
		return d.finish(ctx)
	}
	delays := make([]time.Duration, cfg.Kills)
	var span time.Duration
	for i := range delays {
		delays[i] = cfg.KillAfterMin + time.Duration(rng.Int64N(int64(cfg.KillAfterMax-cfg.KillAfterMin)+1))
		span += delays[i]
	}
	var faults *faultRunner
	if plan := planFaults(rng, cfg.BrokerRestarts, cfg.NetCuts, cfg.StallPartition, span); len(plan) > 0 {
		faults = newFaultRunner(d.broker, plan, cfg, d.t0)
		var fctx context.Context
		fctx, d.stopFaults = context.WithCancel(ctx)
		d.faults = faults
		go faults.run(fctx, time.Now())
	}

	if err := d.killPhase(ctx, delays, faults); err != nil {
		return rep, err
	}
	if faults != nil {
		close(faults.finish)
		<-faults.done
		rep.Faults = faults.faults
		for _, f := range faults.faults {
			switch f.Kind {
			case faultBrokerRestart:
				rep.BrokerRestarts++
			case faultNetCut:
				rep.NetCuts++
			case faultStall:
				rep.PartitionStalls++
			}
		}
		if faults.err != nil {
			return rep, faults.err
		}
	}
	return d.finish(ctx)
}

// finish runs the drain child, reads everything back and judges.
func (d *drill) finish(ctx context.Context) (*Report, error) {
	if err := d.drainRun(ctx); err != nil {
		return d.rep, err
	}
	if err := d.verify(ctx); err != nil {
		return d.rep, err
	}
	d.rep.finishRuns()
	d.rep.judge()
	d.rep.ElapsedMS = ms(time.Since(d.t0))
	return d.rep, nil
}

// setUpBroker starts the broker (none for --bootstrap) and creates the
// topics.
func (d *drill) setUpBroker(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, brokerStartTimeout)
	defer cancel()
	cfg := d.cfg
	if cfg.Bootstrap != "" {
		d.bootstrap = cfg.Bootstrap
		d.rep.Broker = "external"
		d.rep.Bootstrap = cfg.Bootstrap
		for _, t := range cfg.Topics {
			err := kafkatest.CreateTopics(ctx, cfg.Bootstrap, int32(cfg.Partitions), nil, t)
			if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				return fmt.Errorf("drill: %w", err)
			}
		}
		if cfg.DeadLetterEvery > 0 {
			err := kafkatest.CreateTopics(ctx, cfg.Bootstrap, 1, map[string]string{"max.message.bytes": strconv.Itoa(deadLetterMaxBytes)}, d.deadLetterTopic())
			if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				return fmt.Errorf("drill: %w", err)
			}
		}
		return nil
	}
	l, err := kafkatest.ParseListener(cfg.Listener)
	if err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	opts := kafkatest.Options{Partitions: int32(cfg.Partitions), Proxy: cfg.NetCuts > 0, Secure: l != kafkatest.Plaintext, Listener: l}
	if cfg.StallPartition > 0 && cfg.Broker == "real" {
		// A partition stalls when its broker is cut off from clients, one
		// of two, each behind its own proxy.
		opts.Brokers, opts.Proxy = 2, true
	}
	start := kafkatest.StartEmbedded
	if cfg.Broker == "real" {
		start = kafkatest.StartReal
	}
	t := time.Now()
	b, err := start(ctx, opts)
	if err != nil {
		return fmt.Errorf("drill: start %s broker: %w", cfg.Broker, err)
	}
	d.broker = b // closed by tearDown from here on
	for _, topic := range cfg.Topics {
		if err := b.CreateTopic(ctx, topic, int32(cfg.Partitions), nil); err != nil {
			return fmt.Errorf("drill: %w", err)
		}
	}
	if sec := b.Security(); sec != nil {
		if err := d.secure(ctx, b, l); err != nil {
			return err
		}
	}
	if err := d.placeTransactionalID(ctx, b); err != nil {
		return err
	}
	if cfg.DeadLetterEvery > 0 {
		err := b.CreateTopic(ctx, d.deadLetterTopic(), 1, map[string]string{"max.message.bytes": strconv.Itoa(deadLetterMaxBytes)})
		if err != nil {
			return fmt.Errorf("drill: %w", err)
		}
	}
	d.bootstrap = b.Bootstrap()
	d.rep.Bootstrap = d.bootstrap
	via := ""
	if len(b.Proxies()) > 0 {
		via = " (through the fault proxy)"
	}
	d.logf("%s broker at %s%s up in %v; topics %v x %d partitions; WAL %s",
		cfg.Broker, d.bootstrap, via, time.Since(t).Round(time.Millisecond), cfg.Topics, cfg.Partitions, d.cfg.Dir)
	return nil
}

// secure grants the client identities WRITE on the topics (nothing else)
// and writes the children's librdkafka settings for listener l to a file
// only this user can read: credentials stay off command lines and out of
// the WAL directory.
func (d *drill) secure(ctx context.Context, b kafkatest.Broker, l kafkatest.Listener) error {
	sec := b.Security()
	for _, p := range []string{sec.UserPrincipal, sec.ClientPrincipal} {
		if err := kafkatest.GrantProducer(ctx, b, p, d.cfg.Topics...); err != nil {
			return fmt.Errorf("drill: %w", err)
		}
	}
	cm, err := b.ClientConfig(l)
	if err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	m := make(map[string]string, len(cm))
	for k, v := range cm {
		m[k] = fmt.Sprint(v)
	}
	js, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	dir, err := os.MkdirTemp("", "kafkawal-drill-kafka-")
	if err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	d.kafkaFile = filepath.Join(dir, "kafka.json")
	if err := os.WriteFile(d.kafkaFile, js, 0o600); err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	return nil
}

// tearDown kills the running child, stops the faults and closes the
// broker: whatever way Run leaves, nothing it started outlives it.
func (d *drill) tearDown() error {
	var errs []error
	if c := d.cur; c != nil && !c.exited() {
		errs = append(errs, c.kill(), c.waitExited(childExitTimeout))
	}
	errs = append(errs, d.tearDownPowerCuts())
	if d.faults != nil {
		d.stopFaults()
		<-d.faults.done
	}
	if d.broker != nil {
		if err := d.broker.Close(); err != nil {
			errs = append(errs, fmt.Errorf("drill: close %s broker: %w", d.broker.Kind(), err))
		}
	}
	if d.kafkaFile != "" {
		errs = append(errs, os.RemoveAll(filepath.Dir(d.kafkaFile)))
	}
	return errors.Join(errs...)
}

// killPhase starts a child per delay and SIGKILLs it that long after its
// start. A child that exits on its own ends the phase with a failure.
func (d *drill) killPhase(ctx context.Context, delays []time.Duration, faults *faultRunner) error {
	var faultDone <-chan struct{}
	if faults != nil {
		faultDone = faults.done
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i, delay := range delays {
		run := i + 1
		c, err := d.startChild(run, false)
		if err != nil {
			return err
		}
		timer.Reset(delay)
		early := false
	wait:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-faultDone:
				if faults.err != nil {
					return faults.err
				}
				faultDone = nil // all faults done early: keep killing
				continue
			case <-c.done:
				early = true
			case <-timer.C:
			}
			break wait
		}
		if early {
			timer.Stop()
		} else if err := c.kill(); err != nil {
			return err
		}
		if err := c.waitExited(childExitTimeout); err != nil {
			return err
		}
		d.finishRun(c, delay, false)
		if c.diedOfKill() {
			d.rep.Kills++
		} else {
			d.rep.fail("run %d: child exited before its kill at %v: %s\n%s", run, delay, c.status(), indent(strings.TrimRight(c.tail.String(), "\n")))
			return nil // the drain and the read-back still say what was lost
		}
	}
	return nil
}

// drainRun runs the last child, which must append, flush, close and exit 0.
func (d *drill) drainRun(ctx context.Context) error {
	run := len(d.rep.Runs) + 1
	if d.cfg.PowerCuts > 0 {
		// No cut ends this run: Unmount below shuts the filesystem down
		// cleanly once the child is gone.
		if _, err := d.mount(run, newKiller()); err != nil {
			return err
		}
	}
	c, err := d.startChild(run, true)
	if err != nil {
		return err
	}
	appendFor := time.Duration(float64(d.cfg.DrainRecords) / d.cfg.Rate * float64(time.Second))
	if err := c.wait(ctx, d.cfg.DrainTimeout+appendFor+time.Minute); err != nil {
		if ctx.Err() != nil {
			return err
		}
		d.rep.fail("drain run %d: %v", run, err)
	}
	if err := d.unmount(); err != nil {
		return err
	}
	l := d.finishRun(c, 0, true)
	if c.cmd.ProcessState != nil && c.cmd.ProcessState.Success() && l != nil && l.Drained != nil {
		d.rep.Drained, d.rep.Drain = true, l.Drained
	} else {
		d.rep.fail("drain run %d: %s\n%s", run, c.status(), indent(strings.TrimRight(c.tail.String(), "\n")))
	}
	return nil
}

// verify reads every topic back and compares it with the ledgers.
func (d *drill) verify(ctx context.Context) error {
	var ledgers []*runLedger
	for _, rr := range d.rep.Runs {
		ledgers = append(ledgers, d.ledgers[rr.Run])
	}
	acked := ackedIDs(ledgers)
	if d.cfg.DeadLetterEvery > 0 {
		// Kafka refuses these; the dead-letter log must hold them.
		acked = slices.DeleteFunc(acked, func(id uint64) bool { return isDeadLetter(id, d.cfg.DeadLetterEvery) })
	}
	vctx, cancel := context.WithTimeout(ctx, d.cfg.VerifyTimeout)
	defer cancel()
	t := time.Now()
	// Every child is dead: nothing is in flight any more, so read what
	// the topics hold now (up to their end offsets), not until a count
	// that a lost record would never let arrive.
	admin := []kgo.Opt{kgo.SeedBrokers(d.bootstrap)}
	if d.broker != nil {
		admin = d.broker.AdminOpts()
	}
	read, how := kafkatest.ReadAllWith, "read_uncommitted"
	if d.cfg.ExactlyOnce {
		read, how = kafkatest.ReadCommittedWith, "read_committed"
	}
	recs, err := read(vctx, admin, d.cfg.Topics, 0)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.rep.fail("read back (%s): %v", how, err)
	}
	d.logf("read back %d records (%s) in %v", len(recs), how, time.Since(t).Round(time.Millisecond))
	d.rep.verify(acked, recs)
	if pc := d.rep.PowerCut; pc != nil {
		var dead []wal.DeadLetter
		err := wal.ReadDeadLetters(pc.WAL, func(dl wal.DeadLetter) error {
			if deadLetterNonce(dl) == d.rep.Nonce {
				dead = append(dead, dl)
			}
			return nil
		})
		if err != nil {
			d.rep.fail("read the dead-letter log: %v", err)
		}
		var mine []*kgo.Record
		for _, rec := range recs {
			if recordNonce(rec) == d.rep.Nonce {
				mine = append(mine, rec)
			}
		}
		pc.check(d.rep, d.ledgers, mine, dead, d.cfg.Size)
	}
	if d.cfg.ExactlyOnce {
		// What a consumer that ignores transactions sees: the copies of
		// aborted transactions too.
		all, err := kafkatest.ReadAllWith(vctx, admin, d.cfg.Topics, 0)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d.rep.fail("read back (read_uncommitted): %v", err)
		}
		d.rep.verifyUncommitted(all)
		if d.rep.Lost > 0 {
			d.rep.noteEnds(endOffsets(vctx, admin, d.cfg.Topics))
		}
	}
	return nil
}

// endOffsets describes each partition's end offsets, for a report of
// lost records: the committed one (the last stable offset, what
// read_committed consumers read up to) below the other means a
// transaction is still open there.
func endOffsets(ctx context.Context, opts []kgo.Opt, topics []string) []string {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return []string{fmt.Sprintf("end offsets: %v", err)}
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	hw, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return []string{fmt.Sprintf("end offsets: %v", err)}
	}
	lso, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return []string{fmt.Sprintf("committed end offsets: %v", err)}
	}
	var out []string
	hw.Each(func(o kadm.ListedOffset) {
		c, _ := lso.Lookup(o.Topic, o.Partition)
		out = append(out, fmt.Sprintf("%s/%d: end offset %d, committed end offset %d", o.Topic, o.Partition, o.Offset, c.Offset))
	})
	slices.Sort(out)
	return out
}

// deadLetterTopic is the topic that refuses the dead-letter records.
func (d *drill) deadLetterTopic() string { return d.cfg.Topics[0] + deadLetterTopicSuffix }

// transactionalID is the children's TransactionalID under ExactlyOnce:
// one per drill, "" otherwise.
func (d *drill) transactionalID() string {
	if !d.cfg.ExactlyOnce {
		return ""
	}
	if d.txnID != "" {
		return d.txnID
	}
	return "kafkawal-drill-" + d.rep.Nonce
}

// commitInterval is the children's CommitInterval: 0 (the default)
// without ExactlyOnce, which refuses one.
func (d *drill) commitInterval() time.Duration {
	if !d.cfg.ExactlyOnce {
		return 0
	}
	return d.cfg.CommitInterval
}

// startChild starts run's child and makes it the one to kill on the way out.
func (d *drill) startChild(run int, drain bool) (*child, error) {
	cc := ChildConfig{
		Dir: d.cfg.Dir, Bootstrap: d.bootstrap, Topics: d.cfg.Topics, Partitions: d.cfg.Partitions,
		Rate: d.cfg.Rate, Size: d.cfg.Size, Durability: d.cfg.Durability, TransactionalID: d.transactionalID(), CommitInterval: d.commitInterval(),
		Run: uint32(run), Nonce: d.rep.Nonce, KafkaConfig: d.kafkaFile,
		Drain: drain, DrainRecords: d.cfg.DrainRecords, DrainTimeout: d.cfg.DrainTimeout,
		SegmentBytes: d.cfg.SegmentBytes,
		StallTimeout: d.cfg.StallTimeout, ParkAfter: d.cfg.ParkAfter,
	}
	if d.cfg.PowerCuts > 0 {
		cc.Dir = filepath.Join(d.mnt, walSubdir)
	}
	if d.cfg.DeadLetterEvery > 0 {
		cc.DeadLetterTopic, cc.DeadLetterEvery, cc.DeadLetterSize = d.deadLetterTopic(), d.cfg.DeadLetterEvery, deadLetterValueSize
	}
	c, err := startChild(run, d.cfg.Command, cc.Args(), d.cfg.ChildStderr)
	if err != nil {
		return nil, err
	}
	d.cur = c
	if d.cfg.onChildStart != nil {
		d.cfg.onChildStart(run, c.pid())
	}
	return c, nil
}

// finishRun records an exited child and returns its ledger (nil if the
// ledger is not complete).
func (d *drill) finishRun(c *child, killAfter time.Duration, drain bool) *runLedger {
	d.cur = nil
	var l *runLedger
	select {
	case <-c.ledgerDone:
		l = c.ledger
	default:
	}
	if d.ledgers == nil {
		d.ledgers = make(map[int]*runLedger)
	}
	d.ledgers[c.run] = l
	rr := RunReport{
		Run: c.run, PID: c.pid(), Drain: drain,
		StartMS: ms(c.start.Sub(d.t0)), EndMS: ms(time.Since(d.t0)), KillAfterMS: ms(killAfter),
		Exit: c.status(), Killed: c.diedOfKill(),
	}
	d.rep.addRun(rr, c.start, l)
	last := d.rep.Runs[len(d.rep.Runs)-1]
	opened := "no open"
	if o := last.Open; o != nil {
		opened = fmt.Sprintf("open after %s (replay %d, parked %d, repairs %d)", afterMS(last.OpenAfterMS), o.Replay, o.Parked, o.Repairs)
	}
	d.logf("run %d (pid %d): %s after %v; %d acked; %s; first delivery after %s",
		c.run, rr.PID, rr.Exit, time.Since(c.start).Round(time.Millisecond), last.Acked, opened, afterMS(last.FirstDeliveryAfterMS))
	return l
}

func (d *drill) logf(format string, args ...any) {
	fmt.Fprintf(d.cfg.Log, "drill: "+format+"\n", args...)
}

func afterMS(v *float64) string {
	if v == nil {
		return "-"
	}
	return (time.Duration(*v * float64(time.Millisecond))).Round(time.Millisecond).String()
}

func indent(s string) string {
	if s == "" {
		return "    (no output)"
	}
	out := []byte("    ")
	for i := 0; i < len(s); i++ {
		out = append(out, s[i])
		if s[i] == '\n' && i < len(s)-1 {
			out = append(out, "    "...)
		}
	}
	return string(out)
}

func newNonce() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("drill: nonce: %w", err)
	}
	return hex.EncodeToString(b), nil
}
