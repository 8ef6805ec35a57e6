package sender

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal/wal"
)

// Sender forwards the WAL to Kafka. One goroutine (run) owns the librdkafka
// producer: it reads the WAL from the cursor onward, produces each record
// to a known partition (or with its sequence as Opaque, see partition.go),
// drains every event librdkafka emits, attributes each delivery report to
// its record, turns them into the contiguous watermark, persists it as the WAL
// cursor, dead-letters records Kafka refuses for good, and rebuilds the
// producer after a fatal error. Other goroutines talk to it through
// atomics and channels only.
type Sender struct {
	cfg  Config
	kcfg kafka.ConfigMap
	wal  *wal.Log
	dl   *wal.DeadLetters
	lg   *zerolog.Logger

	// Owned by run.
	p       *kafka.Producer
	events  chan kafka.Event
	logs    chan kafka.LogEvent
	win     *window
	pf      *prefetcher
	pfGen   uint64         // generation of the prefetcher's current position
	pfNext  uint64         // the sequence its next batch starts at; 0: seek first
	cur     chunk          // the buffer pending is a view of
	pending []wal.Entry    // records read ahead, from win.next on
	msg     kafka.Message  // reused by message
	hdrs    []kafka.Header // reused by message
	rt      *router
	meta    *metaFetcher // of the current producer
	// passedFP is, under exactly-once, the fingerprint of the record the
	// main stream passed last in the chunk before cur (fingerprintAt).
	passedFP struct {
		seq uint64
		fp  uint32
	}
	// active counts the partitions with records in flight, recent those
	// with records in flight or produced to lately (share.go).
	active, recent int
	// served counts the partitions with records in flight and a success
	// within lagAfter, on the cursor tick: a round of turns (awaitsTurn).
	served int
	// stalledN counts the partitions marked stalled (stall.go), so that a
	// check run on every turn of the loop need not walk every partition
	// to find none (txnStalledInFlight).
	stalledN int
	// maxN and maxB are the window's size now: the records and bytes it
	// may hold, main stream and lanes together (share.go).
	maxN int
	maxB int64
	// lanes carry the records of partitions that fell behind (lane.go);
	// laneFlightN and laneFlightB count theirs in flight, beside the
	// window's. Their readers signal laneReady when a batch is waiting.
	lanes       []*lane
	laneFlightN int
	laneFlightB int64
	laneReady   chan struct{}
	wake        time.Time // come back then (a lagging partition's deadline)
	partsM      sync.Mutex
	parts       []PartitionStatus // published on the cursor tick
	// Parking (park.go).
	park        *parker
	partitioner string   // librdkafka's setting, as park logs record it
	parkSkip    []uint64 // records in park logs found at Open that the main stream skips
	// positional: reports are attributed by partition and position
	// (partition.go); false without idempotence, or after the tripwire.
	positional bool
	// closing: a failure was settled while the producer was purged for
	// shutdown or closed; no positional success is believed until a new
	// producer.
	closing bool
	mode    mode
	retryAt time.Time
	backoff time.Duration
	// deadline for purged records' reports before a rebuild goes ahead
	rebuildBy time.Time
	persisted uint64
	// After a failed persist: when to try again, and the current backoff.
	persistAt      time.Time
	persistBackoff time.Duration
	outageSince    time.Time
	outage         outageLog
	outageErr      string // the all-brokers-down event's text
	outageLogged   bool   // outageTick has handled the outage
	// when the current producer was built, the pause before its rebuild
	// and the earliest time for it (brokererr.go)
	builtAt          time.Time
	rebuildPause     time.Duration
	rebuildNotBefore time.Time
	authLog          limiter   // "authentication with Kafka failed"
	rebuildLog       *limiters // "fatal producer error", per error code
	rdLines          *limiters // librdkafka's log lines at warning and above
	// Isolation (isolate.go): records produced alone to confirm a
	// permanent error. isolateUntil bounds the records of no known
	// partition to isolate; solos are the records produced alone whose
	// reports are not in yet, globalSolo whether one of them has no known
	// partition (nothing else is produced until its report).
	isolateUntil uint64
	solos        map[uint64]solo
	globalSolo   bool
	// now (Unix nanos) is read once per round of delivery reports, for
	// their latency (Config.ObserveDelivery).
	now int64
	// flightWait is the average wait of a record the main stream produced,
	// from its produce to its report, in nanoseconds (noteWait, share.go).
	flightWait int64
	// turns counts the partitions' turns, successful produce requests
	// seen from their reports; lastTurn is when (now) the latest success
	// was reported (noteTurn, share.go).
	turns    uint64
	lastTurn int64

	tx *txnState // exactly-once delivery (txn.go); nil for at-least-once
	// flushTo is the highest sequence a Flush waits for, flushes wakes
	// the loop for it: under exactly-once, transactions are committed at
	// once, not at the end of their CommitInterval, until it is
	// committed.
	flushTo atomic.Uint64
	flushes chan struct{}

	stats   counters
	notifyM sync.Mutex
	notify  chan struct{} // closed and replaced when the watermark advances

	closeCh chan closeReq
	credsCh chan credsReq
	done    chan struct{}
	runErr  error
}

type mode int

const (
	normal     mode = iota
	draining        // a transient failure: wait for every report, then re-send from the oldest unacknowledged
	rebuilding      // a fatal error: purge, wait for reports, then a new producer
)

type closeReq struct {
	ctx    context.Context
	target uint64
}

type counters struct {
	delivered, deadLettered, resent, holes, rebuilds atomic.Uint64
	anomalies                                        atomic.Uint64
	deferred                                         atomic.Uint64
	acked                                            atomic.Uint64 // in-memory watermark
	inFlight                                         atomic.Int64
	oldest                                           atomic.Int64 // Unix nanos of the oldest unacknowledged record in flight
	oldestBacklog                                    atomic.Int64 // the same, or the next record to produce when none is in flight
	unreachable                                      atomic.Bool
	authFailed                                       atomic.Bool
	authError                                        atomic.Pointer[string]
}

// Stats are the sender's counters since New.
type Stats struct {
	Delivered, DeadLettered uint64
	// Resent counts records produced again after a transient failure,
	// a rebuild or a restart: each may be a duplicate in Kafka.
	Resent uint64
	// Holes counts records recovery could not read; they were skipped.
	Holes    uint64
	Rebuilds uint64
	// ReportAnomalies counts delivery reports that broke an expectation
	// of per-partition report order: each is logged, and answered by
	// re-sending what was unacknowledged. Zero unless librdkafka changes.
	ReportAnomalies uint64
	// PartitionsDeferred counts the times a partition that did not keep up
	// was handed to a lane of its own (share.go, lane.go).
	PartitionsDeferred uint64
	Acked              uint64 // every sequence <= Acked is delivered or dead-lettered
	InFlight           int
	OldestUnacked      time.Time // zero when nothing is in flight
	// OldestBacklog is OldestUnacked, or, with nothing in flight, the
	// timestamp of the next record to produce once it has been read;
	// zero when the backlog is empty.
	OldestBacklog   time.Time
	BrokerReachable bool
	// BrokerAuthFailed is set by an authentication failure (see
	// authFailure) and cleared by the next delivery; BrokerAuthError is
	// librdkafka's text of the last one.
	BrokerAuthFailed bool
	BrokerAuthError  string
	// StalledPartitions are the partitions whose records wait while the
	// others go on (published every CursorSyncInterval).
	StalledPartitions []PartitionStatus

	// Exactly-once only.
	Transactions, TransactionsAborted uint64
	Fenced                            bool
	ExactlyOnceError                  string
	CommitP50, CommitP99              time.Duration // over the last 1024 commits
}

// New creates a sender that starts at the WAL's cursor. It fails with an
// error naming the setting when the configuration is invalid, or when
// librdkafka refuses it.
func New(l *wal.Log, dl *wal.DeadLetters, cfg Config) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	kcfg, err := cfg.KafkaConfig()
	if err != nil {
		return nil, err
	}
	kind, err := partitionerOf(kcfg)
	if err != nil {
		return nil, err
	}
	partitioner := "consistent_random"
	if v, ok := kcfg["partitioner"].(string); ok {
		partitioner = v
	}
	linger, err := stickyLinger(kcfg)
	if err != nil {
		return nil, err
	}
	s := &Sender{
		cfg:     cfg,
		kcfg:    kcfg,
		wal:     l,
		dl:      dl,
		lg:      cfg.Logger,
		win:     newWindow(max(l.Cursor()+1, l.FirstSeq()), cfg.initialRing()),
		pf:      newPrefetcher(l),
		rt:      newRouter(kind, linger),
		backoff: minBackoff,
		// Per-partition report order needs idempotence (retries that
		// keep order).
		positional:  truthy(kcfg["enable.idempotence"]),
		laneReady:   make(chan struct{}, 1),
		solos:       map[uint64]solo{},
		partitioner: partitioner,
		notify:      make(chan struct{}),
		authLog:     limiter{every: repeatEvery},
		rebuildLog:  newLimiters(repeatEvery),
		rdLines:     newLimiters(repeatEvery),
		closeCh:     make(chan closeReq),
		credsCh:     make(chan credsReq),
		flushes:     make(chan struct{}, 1),
		done:        make(chan struct{}),
	}
	s.persisted = s.win.low - 1
	s.sizeWindow()
	if cfg.ExactlyOnce {
		if s.tx, err = newTxnState(cfg, kcfg, l.Dir()); err != nil {
			return nil, err
		}
	}
	if err := s.resumeParked(); err != nil {
		return nil, err
	}
	s.stats.acked.Store(s.watermark())
	if err := s.newProducer(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start runs the sender goroutine (and its WAL reader and parker).
func (s *Sender) Start() {
	s.park = newParker(s.wal)
	go s.pf.run()
	go s.run()
}

const (
	minBackoff     = 50 * time.Millisecond
	maxBackoff     = 5 * time.Second
	readBytes      = 1 << 20
	purgeWait      = 10 * time.Second
	closePurgeWait = 2 * time.Second
	eventsPerRound = 1024
)

func (s *Sender) run() {
	defer close(s.done)
	defer s.pf.stop()
	defer s.park.close()
	defer func() {
		for _, l := range s.lanes {
			s.stopReading(l)
		}
	}()
	tick := time.NewTicker(s.cfg.CursorSyncInterval)
	defer tick.Stop()
	timer := time.NewTimer(time.Hour) // re-armed for retries and rebuild deadlines
	defer timer.Stop()
	var closing *closeReq
	var closeDone <-chan struct{}
	closeCh := s.closeCh
	var txnResults <-chan txnResult
	if s.tx != nil {
		txnResults = s.tx.results
		s.txnStartInit()
	}
	for {
		if closing != nil && (s.watermark() >= closing.target || closing.ctx.Err() != nil || s.stopErr() != nil || s.waitErr() != nil) {
			s.shutdown()
			return
		}
		s.maybeRewind()
		s.fill()
		if s.tx != nil {
			// Commit at once when a Flush or Close waits for records all
			// produced already; while a backlog drains, transactions keep
			// their interval (committing after every fill would only add
			// commits).
			target := s.flushTo.Load()
			if closing != nil {
				target = max(target, closing.target)
			}
			s.txnTick(s.txnProduced(target))
		}
		s.checkRebuild()
		// Every path that moves the watermark ends here: delivery reports,
		// and records skipped or dead-lettered while producing.
		s.published()
		// Wait for read-ahead only when out of records to produce.
		var reads <-chan readBatch
		if len(s.pending) == 0 {
			reads = s.pf.out
		}
		var retry <-chan time.Time
		at := s.nextWake()
		if s.tx != nil {
			if w := s.txnWake(); !w.IsZero() && (at.IsZero() || w.Before(at)) {
				at = w
			}
		}
		if !at.IsZero() {
			timer.Reset(max(time.Until(at), time.Millisecond))
			retry = timer.C
		}
		select {
		case ev := <-s.events:
			s.now = time.Now().UnixNano()
			s.handle(ev)
			for i := 0; i < eventsPerRound; i++ {
				select {
				case ev := <-s.events:
					s.handle(ev)
					continue
				default:
				}
				break
			}
		case lg := <-s.logs:
			s.logLibrdkafka(lg)
		case a := <-s.meta.out:
			s.setMeta(a)
		case d := <-s.park.out:
			s.parkedRound(d)
		case b := <-reads:
			s.take(b)
		case <-s.laneReady:
		case r := <-txnResults:
			s.txnOnResult(r)
		case <-s.flushes:
		case now := <-tick.C:
			if s.positional {
				now := time.Now()
				s.countRecent(now)
				s.checkStalls()
				s.parkLanes(now)
				s.unpark()
				s.publishPartitions()
			}
			s.sizeWindow()
			s.persist()
			s.outageTick(now)
			s.summarize(now)
		case <-retry:
			s.wake = time.Time{}
		case r := <-s.credsCh:
			s.setCredentials(r)
		case req := <-closeCh:
			closing, closeCh, closeDone = &req, nil, req.ctx.Done()
		case <-closeDone:
		}
	}
}

// nextWake returns when the run loop must come back without an event,
// zero if never.
func (s *Sender) nextWake() time.Time {
	if s.mode == rebuilding {
		return s.rebuildWake()
	}
	at := s.retryAt
	if !s.wake.IsZero() && (at.IsZero() || s.wake.Before(at)) {
		at = s.wake
	}
	return at
}

// Stats returns the sender's counters.
func (s *Sender) Stats() Stats {
	st := Stats{
		Delivered:          s.stats.delivered.Load(),
		DeadLettered:       s.stats.deadLettered.Load(),
		Resent:             s.stats.resent.Load(),
		Holes:              s.stats.holes.Load(),
		Rebuilds:           s.stats.rebuilds.Load(),
		ReportAnomalies:    s.stats.anomalies.Load(),
		PartitionsDeferred: s.stats.deferred.Load(),
		Acked:              s.stats.acked.Load(),
		InFlight:           int(s.stats.inFlight.Load()),
		BrokerReachable:    !s.stats.unreachable.Load(),
		BrokerAuthFailed:   s.stats.authFailed.Load(),

		StalledPartitions: s.stalledPartitions(),
	}
	if e := s.stats.authError.Load(); e != nil {
		st.BrokerAuthError = *e
	}
	if ts := s.stats.oldest.Load(); ts != 0 {
		st.OldestUnacked = time.Unix(0, ts)
	}
	if ts := s.stats.oldestBacklog.Load(); ts != 0 {
		st.OldestBacklog = time.Unix(0, ts)
	}
	if t := s.tx; t != nil {
		st.Transactions = t.stats.commits.Load()
		st.TransactionsAborted = t.stats.aborts.Load()
		st.Fenced = t.stats.fenced.Load()
		if p := t.stats.problem.Load(); p != nil {
			st.ExactlyOnceError = *p
		}
		st.CommitP50, st.CommitP99 = t.stats.lat.quantiles()
	}
	return st
}
