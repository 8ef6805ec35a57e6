package sender

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal/wal"
)

// Exactly-once delivery (Config.ExactlyOnce), the pattern of Kafka
// Connect's exactly-once sources (KIP-618):
//
//   - Records are produced in transactions. Each transaction ends with one
//     more record, the checkpoint (checkpoint.go), in the compacted
//     CheckpointTopic, keyed by TransactionalID: the WAL sequence below
//     which everything is in Kafka or dead-lettered. Records and
//     checkpoint are committed together or not at all, so the checkpoint
//     Kafka holds is the truth about what was delivered.
//   - At start, InitTransactions fences any older producer with the same
//     TransactionalID and aborts its open transaction; then the checkpoint
//     is read with read_committed to the true end of its partition, and
//     delivery resumes from it. The local cursor is only what the WAL may
//     delete: it moves at commits, never past the committed position.
//   - A transaction gathers records for CommitInterval (or until it holds
//     MaxInFlight records or MaxInFlightBytes), then is committed.
//     CommitTransaction and AbortTransaction block; they run on a
//     goroutine of their own (txncalls.go) while the sender goroutine keeps
//     draining events. Nothing is produced while one runs.
//   - A record that fails makes the transaction abortable: it is aborted,
//     and everything after the committed position is produced again (the
//     aborted copies are visible to read_uncommitted consumers only). A
//     record refused for good is isolated as in at-least-once mode (sent
//     alone, in a transaction of its own), dead-lettered, and covered by
//     the next commit: it never aborts the transactions behind it.
//   - A transaction cannot stay open through a long outage: the
//     coordinator aborts it after transaction.timeout.ms, and the producer
//     then fails with the same fatal ERR__FENCED that fencing by a newer
//     instance gives (docs/brokers.md). The transaction's age tells them
//     apart: younger than transaction.timeout.ms, only a newer instance
//     can have fenced it: delivery stops for good (ErrFenced), the records
//     stay in the WAL. Older, the producer is replaced, initialized again,
//     and the checkpoint read again: if it is still this Sender's (or the
//     one it started from), delivery resumes from it; if another instance
//     has committed since, this one was fenced after all, and stops.
//   - librdkafka's message.timeout.ms stays 0 by default (it must be 0 or at
//     most transaction.timeout.ms): records wait in librdkafka through an
//     outage, bounded by the window, and the coordinator's timeout ends the
//     transaction.

type txnPhase uint8

const (
	txnStarting   txnPhase = iota // InitTransactions, then the checkpoint: nothing is produced
	txnIdle                       // no transaction open
	txnOpen                       // records are produced into the open transaction
	txnCommitting                 // CommitTransaction runs
	txnAborting                   // AbortTransaction runs
	txnStopped                    // fenced: nothing is produced any more
)

func (p txnPhase) String() string {
	return [...]string{"starting", "idle", "open", "committing", "aborting", "stopped"}[p]
}

// ckptMarker is the Opaque of the checkpoint record, to tell its report
// from the WAL records'.
type ckptMarker struct{}

// txnState is the exactly-once side of a Sender, owned by its goroutine
// (the counters excepted).
type txnState struct {
	store   *checkpointStore
	timeout time.Duration // transaction.timeout.ms
	writer  uint64        // random, per Sender: whose checkpoint it is
	id      wal.TxnIdentity
	dir     string
	mode    os.FileMode

	phase   txnPhase
	results chan txnResult
	calling bool // a call runs; its result comes on results
	ctx     context.Context
	cancel  context.CancelFunc
	closing bool // shutdown: no new calls

	begun   time.Time // of the open transaction
	records int       // produced into it
	bytes   int64
	doomed  error // why it must abort, nil while it may commit
	pending Checkpoint
	// last is the newest checkpoint this Sender knows to be its own, or
	// the one it started from; haveLast is false before either exists.
	last         Checkpoint
	haveLast     bool
	adopted      bool       // the first checkpoint read has set the start
	start        Checkpoint // what that read found
	readAt       time.Time  // next read after an unusable checkpoint
	rebuildAfter time.Time
	problem      string // the unusable checkpoint's error, logged once
	reread       bool   // the checkpoint could not be written: read it again after the abort
	reports      []delivery
	probes       map[*part]*probe // of stalled partitions (txnstall.go)

	stats txnCounters
}

// delivery is an OnDelivered call waiting for the commit.
type delivery struct {
	seq       uint64
	topic     *string
	partition int32
	offset    int64
}

type txnCounters struct {
	commits, aborts atomic.Uint64
	fenced          atomic.Bool
	stopErr         atomic.Pointer[error] // why delivery stopped (fenced)
	problem         atomic.Pointer[string]
	lat             latencies
}

func newTxnState(cfg Config, kcfg kafka.ConfigMap, dir string) (*txnState, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("kafkawal: exactly-once writer id: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &txnState{
		store:   newCheckpointStore(cfg, kcfg),
		timeout: transactionTimeout(kcfg),
		writer:  binary.BigEndian.Uint64(b[:]),
		id:      cfg.Identity,
		dir:     dir,
		mode:    cfg.FileMode,
		results: make(chan txnResult, 1),
		probes:  make(map[*part]*probe),
		ctx:     ctx,
		cancel:  cancel,
	}, nil
}

// txnOnResult handles the end of a transactional call.
func (s *Sender) txnOnResult(r txnResult) {
	t := s.tx
	t.calling = false
	class := classifyTxn(r.err)
	if r.op == opRead {
		s.txnOnRead(r)
		return
	}
	switch class {
	case txnOK:
		switch r.op {
		case opInit:
			s.lg.Debug().Dur("took", r.took).Msg("sender: transactions initialized")
			if !t.closing {
				t.call(opRead, readCall(s.p, t.store, 2*t.timeout))
			}
		case opCommit:
			s.txnCommitted(r.took)
		case opAbort:
			t.stats.aborts.Add(1)
			s.txnProbesFailed()
			s.txnAbortedAll()
			t.phase, t.doomed = txnIdle, nil
			t.reports = t.reports[:0]
			if t.reread {
				t.reread = false
				t.phase, t.readAt = txnStarting, time.Now().Add(checkpointRetry)
			}
			if s.mode == normal {
				s.mode = draining // rewind once every report is in
			}
		}
	case txnRetry:
		// Only shutdown ends a call's retries.
	case txnAbort:
		t.doomed = r.err
		t.phase = txnOpen
		s.txnAbort()
	case txnFenced:
		s.txnFenced(r.err)
	default:
		if r.op == opInit && authorization(r.err) {
			// Not a failure a new producer fixes: say so once, and try
			// again every checkpointRetry (an operator may grant it).
			s.txnProblem(fmt.Errorf("%w: InitTransactions: %v (grant Write and Describe on TransactionalId %q to this producer's principal)", errNeedsOperator, r.err, t.store.key))
			t.rebuildAfter = time.Now().Add(checkpointRetry)
			s.mode, s.rebuildBy = rebuilding, time.Now()
			return
		}
		s.txnFatal(fmt.Errorf("%v: %w", r.op, r.err))
	}
}

// txnMayProduce is called before each record is produced: it opens a
// transaction if none is, and reports whether the record may go into it.
// It reads the router's clock (time.Now per record showed in the sender's
// profile), which fill reads at its start and the main stream every
// clockEvery records: a transaction that falls due during a pass may take
// up to clockEvery records more (a lane: up to its partition's share),
// and txnTick commits it when the pass ends, as before.
func (s *Sender) txnMayProduce() bool {
	t := s.tx
	switch t.phase {
	case txnIdle:
		if t.closing {
			return false
		}
		if err := s.p.BeginTransaction(); err != nil {
			s.txnCallError(opInit, err)
			return false
		}
		t.phase, t.begun, t.records, t.bytes, t.doomed = txnOpen, time.Now(), 0, 0, nil
		return true
	case txnOpen:
		return t.doomed == nil && !s.txnDue(s.rt.now)
	}
	return false
}

// txnDue reports whether the open transaction should be committed.
func (s *Sender) txnDue(now time.Time) bool {
	t := s.tx
	return !now.Before(t.begun.Add(s.cfg.CommitInterval)) || t.records >= s.maxN ||
		t.bytes >= s.maxB || s.win.full()
}

// txnTick commits or aborts the open transaction when it is time. now
// commits what is open at once (a Flush or Close waits for it).
func (s *Sender) txnTick(now bool) {
	t := s.tx
	if t.calling || t.closing {
		return
	}
	at := time.Now()
	switch t.phase {
	case txnStarting:
		if !t.readAt.IsZero() && !at.Before(t.readAt) {
			t.readAt = time.Time{}
			t.call(opRead, readCall(s.p, t.store, 2*t.timeout))
		}
	case txnIdle:
		// A record dead-lettered after the last commit: commit a
		// transaction holding just the checkpoint that covers it.
		if n, _ := s.inFlight(); s.mode == normal && n == 0 && s.txnPendingDead() && s.txnMayProduce() {
			s.txnCommit()
		}
	case txnOpen:
		switch {
		case t.doomed != nil:
			s.txnAbort()
		case now || s.txnDue(at):
			// The commit waits for every record's report (txnstall.go).
			if n, _ := s.inFlight(); n > 0 {
				if s.txnStalledInFlight(at) {
					s.txnDoom(errStalledInTxn)
					s.txnAbort()
				}
				return
			}
			s.txnCommit()
		}
	}
}

// txnWake is when txnTick has something to do by time, zero if nothing.
func (s *Sender) txnWake() time.Time {
	t := s.tx
	switch {
	case t.calling:
		return time.Time{}
	case t.phase == txnOpen:
		at := t.begun.Add(s.cfg.CommitInterval)
		if n, _ := s.inFlight(); n > 0 && !time.Now().Before(at) {
			// Due, and waiting for reports: they wake the loop, and so
			// does the cursor tick that finds a partition stalled.
			at = time.Time{}
		}
		if w := s.txnProbeWake(); !w.IsZero() && (at.IsZero() || w.Before(at)) {
			at = w
		}
		return at
	case t.phase == txnStarting:
		return t.readAt
	case s.mode == rebuilding:
		return t.rebuildAfter
	}
	return time.Time{}
}

// txnCheckpointReport handles the checkpoint record's delivery report. A
// failure makes the transaction abortable like any record's; one that
// retrying cannot fix (no authorization, the topic gone) also stops
// delivery until a new read of the checkpoint succeeds.
func (s *Sender) txnCheckpointReport(m *kafka.Message) {
	err := m.TopicPartition.Error
	if err == nil {
		return
	}
	s.txnDoom(err)
	if classify(err) == permanent {
		s.tx.reread = true
		s.txnProblem(fmt.Errorf("%w: topic %q: cannot write the checkpoint: %v", errNeedsOperator, s.tx.store.topic, err))
	}
}

// txnCommit produces the checkpoint into the open transaction and starts
// its commit.
func (s *Sender) txnCommit() {
	t := s.tx
	t.pending = Checkpoint{
		WALID: t.id.WALID, Writer: t.writer, Commit: t.last.Commit + 1,
		Time: time.Now(), Next: s.win.firstFree(),
	}
	t.pending.Deferred = s.txnDeferred(t.pending.Next)
	t.pending.sortDeferred()
	if t.pending.Next > 1 {
		t.pending.Last = s.fingerprintAt(t.pending.Next - 1)
	}
	m := kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &t.store.topic, Partition: t.store.partition},
		Key:            t.store.key,
		Value:          t.pending.encode(),
		Opaque:         ckptMarker{},
	}
	if err := s.p.Produce(&m, nil); err != nil {
		t.doomed = err
		s.txnCallError(opCommit, err)
		return
	}
	t.phase = txnCommitting
	t.call(opCommit, commitCall(s.p))
}

// txnCommitted: every record of the transaction is in Kafka.
func (s *Sender) txnCommitted(took time.Duration) {
	t := s.tx
	n, gaps := s.txnCommitAll()
	s.stats.delivered.Add(uint64(n))
	if gaps {
		// Cannot happen (a failed record aborts its transaction); if it
		// did, the checkpoint stopped below it, and it is sent again.
		s.stats.anomalies.Add(1)
		s.lg.Error().Uint64("from_seq", s.watermark()+1).Msg("sender: a transaction committed with a record that failed in it; re-sending it")
		if s.mode == normal {
			s.mode = draining
		}
	}
	t.stats.commits.Add(1)
	t.stats.lat.add(took)
	s.cfg.ObserveCommit(took)
	t.last, t.haveLast = t.pending, true
	t.phase = txnIdle
	s.backoff = minBackoff
	if s.cfg.OnDelivered != nil {
		for _, d := range t.reports {
			s.cfg.OnDelivered(d.seq, *d.topic, d.partition, d.offset)
		}
	}
	t.reports = t.reports[:0]
	if !t.id.Committed {
		id := t.id
		id.Committed = true
		if err := wal.StoreTxnIdentity(t.dir, id, t.mode); err != nil {
			s.lg.Error().Err(err).Msg("sender: cannot record the first commit in the WAL directory; retrying at the next commit")
		} else {
			t.id = id
		}
	}
}

// txnDoom marks the open transaction for abort: a record failed in it.
func (s *Sender) txnDoom(cause error) {
	t := s.tx
	if t.doomed == nil {
		t.doomed = cause
	}
}

// txnAbort starts the abort of the open transaction (unless a call runs:
// its result leads here again).
func (s *Sender) txnAbort() {
	t := s.tx
	if t.calling || t.closing || t.phase != txnOpen {
		return
	}
	flying, _ := s.inFlight()
	s.lg.Warn().Err(t.doomed).Uint64("from_seq", s.watermark()+1).Int("in_flight", flying).
		Msg("sender: transaction failed; aborting it and re-sending from the last committed position")
	if s.mode == normal {
		s.mode = draining
	}
	if errors.Is(t.doomed, errStalledInTxn) {
		// AbortTransaction waits for every record in flight, and those
		// of a stalled partition would keep it waiting: their reports
		// do not matter any more, the abort discards them anyway.
		if err := s.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking); err != nil {
			s.lg.Error().Err(err).Msg("sender: cannot purge the producer before an abort")
		}
	}
	t.phase = txnAborting
	t.call(opAbort, abortCall(s.p))
}

// txnCallError handles an error of a non-blocking transactional call
// (BeginTransaction, the checkpoint's Produce).
func (s *Sender) txnCallError(op txnOp, err error) {
	switch classifyTxn(err) {
	case txnFenced:
		s.txnFenced(err)
	case txnAbort, txnRetry:
		s.tx.doomed = err
	default:
		s.txnFatal(fmt.Errorf("%v: %w", op, err))
	}
}
