package kafkawal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal/recovery"
	"github.com/kafkawal/kafkawal/sender"
	"github.com/kafkawal/kafkawal/wal"
)

// Record is one Kafka record. Partition is explicit, as in
// confluent-kafka-go: 0 is partition 0; PartitionAny (-1) lets librdkafka's
// partitioner choose from the key. A zero Timestamp is set to the time of
// Append, so a record that waits out an outage keeps its real time.
type Record = wal.Record

// Header is a Kafka record header.
type Header = wal.Header

// PartitionAny lets the partitioner choose the partition.
const PartitionAny = wal.PartitionAny

// Producer appends records to the WAL and forwards them to Kafka in the
// background. It is safe for concurrent use.
type Producer struct {
	cfg    Config
	log    *wal.Log
	dl     *wal.DeadLetters
	snd    *sender.Sender
	lg     *zerolog.Logger
	opened OpenReport

	closeOnce sync.Once
	closeErr  error
	// noCallback is logAsyncError, made once: AppendAsync's callback when
	// given none.
	noCallback func(uint64, error)
	out        *outcomes
	// lostAtOpen reports the sequences this Open's repair lost (holes it
	// counted in Recovery.LostRecords); nil when none.
	lostAtOpen func(seq uint64) bool
	lostLater  atomic.Uint64 // holes of earlier repairs skipped since Open
	deadAtOpen bool          // the dead-letter log held frames at Open
	// flushed is the last sequence a Flush reported on (the cursor at Open
	// before the first): the next one reports dead letters after it.
	flushed atomic.Uint64
	lat     latencies
}

// OpenReport says what Open found and did.
type OpenReport struct {
	Recovery recovery.Report
	WAL      wal.OpenInfo
	// Replay is the number of records after the cursor that will be sent
	// (again), the parked ones included; up to CursorSyncInterval's worth
	// may already be in Kafka.
	Replay uint64
	// Parked is the number of records found in park logs (partitions that
	// were stalled): each goes before its partition's records in the WAL.
	Parked uint64
	// DeadLetterBytesCut counts a torn dead-letter frame cut off at open.
	DeadLetterBytesCut int64
	// DeadLetterDamage lists damaged ranges inside the dead-letter log, with
	// intact frames after them (left in place; readers skip them).
	DeadLetterDamage []wal.DeadLetterDamage
}

// Open opens (or creates) the WAL in cfg.Dir, repairs a torn tail left by a
// crash (keeping the cut bytes in quarantine/), and starts forwarding every
// record after the durable cursor to Kafka. It fails with an error naming
// the field for an invalid Config, ErrLocked if the directory is in use, and
// ErrCorrupt for damage inside the log (see CorruptionPolicy).
func Open(cfg Config) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		nop := zerolog.Nop()
		lg = &nop
	}
	cfg.Logger = lg
	p := &Producer{cfg: cfg, lg: lg}
	p.noCallback = p.logAsyncError
	opts := cfg.walOptions()
	opts.ObserveFsync = p.lat.fsync.observe
	opts.ObserveAsyncAppend = p.lat.append.observe
	opts.BeforeOpen = func(dir string) error {
		rep, err := recovery.Repair(dir, recovery.Options{
			Policy:   cfg.CorruptionPolicy,
			FullScan: cfg.FullScanOnOpen,
			FileMode: opts.FileMode,
			DirMode:  opts.DirMode,
			Logger:   lg,
		})
		p.opened.Recovery = rep
		return err
	}
	l, info, err := wal.Open(cfg.Dir, opts)
	if err != nil {
		return nil, err
	}
	p.log, p.opened.WAL = l, info
	dl, cut, err := wal.OpenDeadLetters(cfg.Dir, opts.FileMode)
	if err != nil {
		l.Close()
		return nil, err
	}
	p.dl, p.opened.DeadLetterBytesCut = dl, cut
	if cut > 0 {
		lg.Warn().Int64("bytes", cut).Msg("kafkawal: cut a torn dead-letter frame")
	}
	for _, d := range dl.Damage() {
		p.opened.DeadLetterDamage = append(p.opened.DeadLetterDamage, d)
		lg.Error().Int64("offset", d.Offset).Int64("bytes", d.Bytes).
			Msg("kafkawal: dead-letter log damaged; at least one dead letter there cannot be read (the frames after it are kept)")
	}
	if fi, err := os.Stat(filepath.Join(cfg.Dir, wal.DeadLetterFile)); err == nil && fi.Size() > 0 {
		p.deadAtOpen = true
	}
	p.lostAtOpen = lostAtOpen(p.opened.Recovery)
	scfg := cfg.senderConfig()
	p.out = newOutcomes(min(scfg.InitialRing(), scfg.MaxInFlightOrDefault()))
	p.hookOutcomes(&scfg)
	scfg.ObserveDelivery = p.lat.delivery.observe
	scfg.ObserveCommit = p.lat.commit.observe
	if cfg.Delivery == ExactlyOnce {
		fileMode := opts.FileMode
		if fileMode == 0 {
			fileMode = wal.DefaultFileMode
		}
		if scfg.Identity, err = txnIdentity(cfg, fileMode, lg); err != nil {
			dl.Close()
			l.Close()
			return nil, err
		}
		scfg.FileMode = fileMode
	}
	p.snd, err = sender.New(l, dl, scfg)
	if err != nil {
		dl.Close()
		l.Close()
		return nil, err
	}
	st := l.Stats()
	p.flushed.Store(st.Cursor)
	if st.LastSeq > st.Cursor {
		p.opened.Replay = st.LastSeq - st.Cursor
	}
	p.opened.Parked = uint64(p.snd.Parked())
	p.opened.Replay += p.opened.Parked
	lg.Info().Str("dir", cfg.Dir).Uint64("cursor", st.Cursor).Uint64("last_seq", st.LastSeq).
		Uint64("replay", p.opened.Replay).Uint64("parked", p.opened.Parked).Int64("disk_bytes", st.DiskBytes).Msg("kafkawal: opened")
	p.snd.Start()
	return p, nil
}

// OpenReport returns what Open found: repairs, the cursor, the replay.
func (p *Producer) OpenReport() OpenReport { return p.opened }

// Dir returns the WAL directory, as given in Config.Dir.
func (p *Producer) Dir() string { return p.cfg.Dir }

// Append writes r to the WAL and returns its sequence once it is durable
// under Config.Durability; a background goroutine then delivers it to
// Kafka. Errors: ErrInvalidRecord (ErrTooLarge among them) for bad input,
// ErrFull at the disk cap, ErrClosed after Close, and otherwise a failure
// of the disk (write, fsync) or of the context; in every error case
// nothing was written.
func (p *Producer) Append(ctx context.Context, r Record) (uint64, error) {
	return p.AppendBatch(ctx, []Record{r})
}

// AppendBatch writes rs as consecutive sequences, all or none, and returns
// the first. One call costs one fsync whatever its size.
func (p *Producer) AppendBatch(ctx context.Context, rs []Record) (uint64, error) {
	if p == nil {
		return 0, fmt.Errorf("%w: nil *Producer", ErrClosed)
	}
	// Records without a timestamp get the append time, stamped as they are
	// encoded: the caller's slice is not modified.
	start := time.Now()
	first, err := p.log.AppendAt(ctx, rs, start)
	if err != nil {
		return 0, err
	}
	p.lat.append.observe(time.Since(start))
	return first, nil
}

// AppendAsync queues r for the WAL and returns at once; durable is called
// exactly once, with r's sequence when r is durable under
// Config.Durability, or with the error that kept it out of the WAL
// (nothing written): ErrInvalidRecord (ErrTooLarge among them) for bad
// input, ErrFull at the disk cap, ErrClosed once Close has begun, ctx's
// error (see below). A background goroutine then delivers r to Kafka, as after
// Append.
//
// Calls from one goroutine get increasing sequences, and their callbacks
// run in the same order. Sequences also follow an Append or AppendBatch
// made after AppendAsync returned.
//
// The queue of calls whose callbacks have not returned is bounded
// (Config.AsyncQueue records, Config.AsyncQueueBytes of them): when it is
// full, AppendAsync blocks until there is room or ctx ends, and durable
// then gets ctx's error. Under FullPolicy Block it also blocks at the
// disk cap, as Append does (durable then gets an error matching ErrFull
// and wrapping ctx's). ctx bounds only this waiting: once AppendAsync has
// returned, cancelling ctx changes nothing.
//
// durable runs on one kafkawal goroutine, the callbacks of every call one
// after another: it must not block, and must not call the Producer (an
// AppendAsync from a callback can wait for room that only the callback's
// return frees). Once Close has begun, durable gets ErrClosed on the
// caller's goroutine, before AppendAsync returns and after every earlier
// callback; Close returns only after every callback has run. A nil
// durable is allowed; errors are then logged. AppendAsync allocates
// nothing per call beyond what the caller's callback costs.
func (p *Producer) AppendAsync(ctx context.Context, r Record, durable func(seq uint64, err error)) {
	if p == nil {
		if durable != nil {
			durable(0, fmt.Errorf("%w: nil *Producer", ErrClosed))
		}
		return
	}
	if durable == nil {
		durable = p.noCallback
	}
	var now time.Time // reading the clock is not free: only for a record that needs it
	if r.Timestamp.IsZero() {
		now = time.Now()
	}
	p.log.AppendAsync(ctx, &r, now, durable)
}

// logAsyncError is the callback of an AppendAsync given none.
func (p *Producer) logAsyncError(_ uint64, err error) {
	if err != nil {
		p.lg.Error().Err(err).Msg("kafkawal: AppendAsync failed (no callback was given)")
	}
}

// SetSASLCredentials replaces the SASL username and password (mechanism
// PLAIN or SCRAM) the producer authenticates with, from its next
// connection to each broker on; connections already authenticated stay.
// Use it to rotate credentials without a restart: see "Secure clusters" in
// the README. Neither value is logged. It fails with ErrClosed after
// Close, and with an error naming the setting when Config.Kafka does not
// use SASL with PLAIN or SCRAM.
func (p *Producer) SetSASLCredentials(username, password string) error {
	if p == nil {
		return fmt.Errorf("%w: nil *Producer", ErrClosed)
	}
	return p.snd.SetSASLCredentials(username, password)
}

// Flush waits until every record appended before the call (with
// AppendAsync: every call that returned before it) is delivered to Kafka
// or dead-lettered, or ctx ends (an error wrapping ctx's). When records
// appended since the last Flush that returned (or since Open) were
// dead-lettered, it returns a *DeadLetterError matching ErrDeadLettered,
// with their count and the first of them: they are not in Kafka. Records
// lost to corruption are not reported here (see Stats.Lost).
func (p *Producer) Flush(ctx context.Context) error {
	if p == nil {
		return fmt.Errorf("%w: nil *Producer", ErrClosed)
	}
	if err := p.log.AsyncBarrier(ctx); err != nil {
		return err
	}
	from := p.flushed.Load() + 1
	last := p.log.LastSeq()
	if err := p.snd.Flush(ctx, last); err != nil {
		return err
	}
	err := p.deadLettered(from, last)
	for {
		old := p.flushed.Load()
		if old >= last || p.flushed.CompareAndSwap(old, last) {
			return err
		}
	}
}

// Close stops accepting appends (they fail with ErrClosed), keeps
// delivering until everything appended is delivered or ctx ends, then
// stops librdkafka deliberately (purging what it still holds), persists
// the cursor and releases the directory. Records not delivered stay in the
// WAL and are sent by the next Open; Close then returns an error saying how
// far delivery got (it wraps ctx's error). While Kafka is unreachable Close
// waits for ctx: give it a deadline. Under SyncPeriodic and SyncNever,
// Close fsyncs what was appended; if that fails, or a write error left the
// WAL failed, it returns that error (a *wal.WriteError): records whose
// Append returned nil may not be durable. Like Flush, Close also returns a
// *DeadLetterError (joined with any other error) when records appended
// since the last Flush that returned were dead-lettered. A second Close
// returns ErrClosed.
func (p *Producer) Close(ctx context.Context) error {
	if p == nil {
		return fmt.Errorf("%w: nil *Producer", ErrClosed)
	}
	err := ErrClosed
	p.closeOnce.Do(func() {
		last := p.log.LastSeq()
		p.closeErr = p.closeAll(ctx, last)
		err = p.closeErr
	})
	return err
}

func (p *Producer) closeAll(ctx context.Context, last uint64) error {
	from := p.flushed.Load() + 1
	// Refuse new appends first; appends already queued finish.
	var errs []error
	if err := p.log.StopAppends(); err != nil && !errors.Is(err, ErrClosed) {
		errs = append(errs, err)
	}
	last = max(last, p.log.LastSeq())
	if err := p.snd.Close(ctx, last); err != nil {
		errs = append(errs, err)
	}
	acked, _ := p.snd.Watermark()
	if err := p.deadLettered(from, min(acked, last)); err != nil {
		errs = append(errs, err)
	}
	if err := p.dl.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := p.log.Close(); err != nil && !errors.Is(err, ErrClosed) {
		errs = append(errs, err)
	}
	st := p.log.Stats()
	if n := st.LastSeq - min(st.LastSeq, max(st.Cursor, st.FirstSeq-1)); n > 0 {
		p.lg.Warn().Uint64("cursor", st.Cursor).Uint64("last_seq", st.LastSeq).Uint64("undelivered_records", n).
			Msg("kafkawal: closed with records undelivered; they stay in the WAL and the next Open sends them")
	} else {
		p.lg.Info().Uint64("cursor", st.Cursor).Uint64("last_seq", st.LastSeq).Msg("kafkawal: closed")
	}
	return errors.Join(errs...)
}

func osMode(m uint32) os.FileMode { return os.FileMode(m) }
