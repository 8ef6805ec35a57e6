package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// appendReq is one Append call waiting for the writer.
type appendReq struct {
	buf     []byte // the encoded records; entries are views of it
	entries [][]byte
	framed  []int64 // on-disk size of each entry
	bytes   int64   // sum of framed
	first   uint64  // result: sequence of entries[0]
	err     error   // result
	// done receives one value when the writer has answered (first and
	// err are set) and will not touch the request again: the appender
	// then returns it to the pool.
	done     chan struct{}
	asyncReq // AppendAsync's calls, when the request gathers them
}

// writer is the state owned by the writer goroutine (run).
type writer struct {
	segs        segTracker
	last        uint64   // last sequence written (not necessarily synced)
	tail        *os.File // our own descriptor of the tail segment, for fsync
	retired     []*os.File
	dirty       bool  // written since the last fsync
	kicked      int64 // tail bytes whose writeback was started (startWriteback)
	dirDirty    bool  // a segment file was created since the last directory fsync
	batch       batchBuilder
	framed      []int64
	failed      error // sticky after a failed write, until repair succeeds
	failedAt    time.Time
	lastTrunc   time.Time
	stale       int      // segments deleted since tidwall was last (re)opened
	bufs        tailBufs // tail buffers given to tidwall, and free ones
	heldScratch []unsafe.Pointer
	cuts        []int

	// good is the state a failed write rolls back to: the end of the last
	// batch that is durable under the Sync mode.
	good goodState
	// Every fsync of the tail after a write runs on the syncer goroutine
	// (inflight), so the writer goes on writing meanwhile. SyncAlways
	// answers appenders only then: the batches written during one fsync
	// (unsynced) are covered by the next. SyncPeriodic and SyncNever have
	// answered them already; they ask for an fsync (wantSync) on the
	// SyncInterval tick and when the tail nears a segment's end (sealKicked
	// once per segment), and it starts as soon as none is in flight.
	inflight   *syncJob
	job        syncJob // the one inflight points to
	unsynced   []*appendReq
	wantSync   bool
	sealKicked bool
	// truncDeferred: truncation was due while an fsync was in flight; it
	// runs when that fsync ends.
	truncDeferred bool
	// closeErr is what finish could not make durable; the call that
	// stopped appends returns it.
	closeErr error
}

type goodState struct {
	last      uint64
	tailFirst uint64
	tailBytes int64
}

// syncJob is one fsync on the syncer goroutine.
type syncJob struct {
	reqs    []*appendReq
	last    uint64
	good    goodState
	file    *os.File
	syncDir bool
	err     error
}

func (w *writer) markGood() {
	t := w.segs.tail()
	w.good = goodState{last: w.last, tailFirst: t.First, tailBytes: t.Bytes}
}

// truncateEvery spaces truncations out when there is no space pressure: each
// one closes and reopens the tidwall log, which re-reads the tail segment.
const truncateEvery = time.Second

// run is the writer goroutine: it owns every write to the segment files and
// every deletion. Appenders queue requests; the writer takes all that are
// waiting (up to MaxBatchBytes) and writes them with one WriteBatch. Under
// SyncAlways a second goroutine (syncLoop) fsyncs; while it does, the writer
// writes what arrives next, and one fsync then covers all of it (group
// commit, pipelined). Each appender is answered once its bytes are durable.
func (l *Log) run() {
	defer close(l.writerDone)
	syncJobs := make(chan *syncJob)
	syncDone := make(chan *syncJob, 1)
	go l.syncLoop(syncJobs, syncDone)
	defer close(syncJobs)
	var syncTick <-chan time.Time
	if l.opts.Sync == SyncPeriodic {
		t := time.NewTicker(l.opts.SyncInterval)
		defer t.Stop()
		syncTick = t.C
	}
	house := time.NewTicker(truncateEvery)
	defer house.Stop()
	batch := make([]*appendReq, 0, 256)
	// group: what one write takes: the asynchronous requests, then batch.
	group := make([]*appendReq, 0, 256)
	// held: requests that arrived while an fsync ran (SyncAlways only).
	held := make([]*appendReq, 0, 1024)
	reqs := l.reqs
	for {
		// Under SyncAlways, asynchronous calls gather while an fsync runs
		// and are taken in one go when it ends.
		asyncReady := l.async.ready
		if l.opts.Sync == SyncAlways && l.w.inflight != nil {
			asyncReady = nil
		}
		select {
		case r, ok := <-reqs:
			batch = batch[:0]
			var size int64
			if !ok {
				reqs = nil // drain the pipeline, then finish
			} else {
				batch = append(batch, r)
				size = r.bytes
			}
			yielded := false
		drain:
			for reqs != nil && size < int64(l.opts.MaxBatchBytes) {
				select {
				case r, ok := <-reqs:
					if !ok {
						reqs = nil
						break drain
					}
					batch = append(batch, r)
					size += r.bytes
				default:
					// Nothing more waiting: let appenders that are about
					// to queue run first (once, and only for a small
					// group). With many concurrent appenders, one
					// scheduler round makes the groups several times
					// larger (bench/HISTORY.md, "The first profiles").
					if !yielded && len(batch) < 4 {
						yielded = true
						runtime.Gosched()
						continue
					}
					break drain
				}
			}
			// Asynchronous calls are taken after the queued requests were
			// received and written before them: a call that returned
			// before an Append was queued gets the lower sequence.
			group = append(l.takeAsync(group[:0]), batch...)
			clear(batch)
			if len(group) == 0 {
				break
			}
			if l.opts.Sync == SyncAlways && l.w.inflight != nil && len(held)+len(group) < cap(held) {
				// An fsync is running: hold these and write them in one
				// go when it ends (one write(2) per fsync, not per wakeup).
				held = append(held, group...)
			} else {
				if len(held) > 0 {
					// Held requests came first: they take the lower
					// sequences.
					l.write(held)
					clear(held)
					held = held[:0]
				}
				l.write(group)
			}
			clear(group)
		case <-asyncReady:
			if group = l.takeAsync(group[:0]); len(group) > 0 {
				l.write(group)
				clear(group)
			}
		case job := <-syncDone:
			l.synced(job)
			if held = l.takeAsync(held); len(held) > 0 {
				l.write(held)
				clear(held)
				held = held[:0]
			}
		case <-syncTick:
			// Appends go on while it runs: they were answered at write(2)
			// and keep being answered so.
			l.w.wantSync = true
		case <-l.truncCh:
			l.maybeTruncate()
		case <-house.C:
			if l.w.failed == nil && l.w.tail != nil {
				if err := l.checkTail(); err != nil {
					l.fail(err, "write")
				}
			}
			l.maybeTruncate()
		}
		if l.w.wantSync && (l.w.failed != nil || !(l.w.dirty || l.w.dirDirty)) {
			l.w.wantSync = false // nothing to sync, or repair will
		}
		if l.w.inflight == nil && (len(l.w.unsynced) > 0 || l.w.wantSync) {
			// Before an fsync that acknowledges appends (or makes them
			// durable), prove it is the right file.
			l.w.wantSync = false
			if err := l.checkTail(); err != nil {
				l.fail(err, "write")
			} else {
				l.w.inflight = l.newSyncJob()
				syncJobs <- l.w.inflight
			}
		}
		if reqs == nil && l.w.inflight == nil {
			l.finish()
			return
		}
	}
}

func (l *Log) syncLoop(jobs <-chan *syncJob, done chan<- *syncJob) {
	for job := range jobs {
		if err := l.fdatasync(job.file); err != nil {
			job.err = fmt.Errorf("%s: %w", job.file.Name(), err)
		} else if job.syncDir {
			if err := SyncDir(l.segDir); err != nil {
				job.err = fmt.Errorf("%s: %w", l.segDir, err)
			}
		}
		done <- job
	}
}

// newSyncJob hands the unsynced appends to the one syncJob (only one
// fsync is in flight at a time), trading slices with it so that neither
// is allocated again.
func (l *Log) newSyncJob() *syncJob {
	t := l.w.segs.tail()
	job := &l.w.job
	reqs := job.reqs[:0]
	*job = syncJob{
		reqs:    l.w.unsynced,
		last:    l.w.last,
		good:    goodState{last: l.w.last, tailFirst: t.First, tailBytes: t.Bytes},
		file:    l.w.tail,
		syncDir: l.w.dirDirty,
	}
	l.w.unsynced = reqs
	l.w.dirty, l.w.dirDirty = false, false
	return job
}

// synced answers the appenders of a finished fsync.
func (l *Log) synced(job *syncJob) {
	l.w.inflight = nil
	defer clear(job.reqs) // answered: the pool may hand them out again
	l.w.closeRetired()
	if job.err != nil {
		if l.w.failed == nil {
			l.fail(job.err, "fsync")
		}
		for _, r := range job.reqs {
			l.answer(r, &WriteError{Op: "fsync", Err: job.err})
		}
		return
	}
	l.markSynced(job.last)
	// Under SyncPeriodic and SyncNever its appenders were answered and its
	// records published when written, and good moved with every write.
	if l.opts.Sync == SyncAlways {
		// Durable, even if a later write has failed since: repair keeps it.
		l.w.good = job.good
		l.publish(job.last, job.good.tailFirst, job.reqs)
	}
	if l.w.truncDeferred {
		l.maybeTruncate()
	}
}

// publish makes records up to last readable and answers their appenders;
// tailFirst is the first sequence of the segment that held last when it
// was written: every segment before it is sealed.
func (l *Log) publish(last, tailFirst uint64, reqs []*appendReq) {
	if tailFirst > l.sealed.Load() {
		l.sealed.Store(tailFirst)
	}
	l.visible.Store(last)
	for _, r := range reqs {
		l.disk.commit(r.bytes)
		r.done <- struct{}{}
	}
	select {
	case l.appended <- struct{}{}:
	default:
	}
}

// finish makes what was written durable, whatever the mode, before Close
// returns, and keeps for Close what it could not make durable: under
// SyncPeriodic and SyncNever the appenders were answered before their
// records were fsync'd, so a failed final fsync, or a log still failed,
// may have lost records the application was told about. (Under SyncAlways
// every answered record was fsync'd.)
func (l *Log) finish() {
	switch {
	case l.w.failed != nil:
		if l.opts.Sync != SyncAlways {
			l.w.closeErr = l.w.failed
		}
	case l.w.dirty || l.w.dirDirty:
		if err := l.syncTail(); err != nil {
			l.log.Error().Err(err).Msg("wal: final fsync failed")
			l.w.closeErr = &WriteError{Op: "fsync", Err: err}
			return
		}
		fallthrough
	default:
		l.markSynced(l.w.last)
	}
}

func (l *Log) write(batch []*appendReq) {
	if l.w.failed != nil && !l.tryRepair() {
		for _, r := range batch {
			l.answer(r, l.w.failed)
		}
		return
	}
	framed := l.w.framed[:0]
	for _, r := range batch {
		framed = append(framed, r.framed...)
	}
	l.w.framed = framed
	if l.w.dirty && l.w.segs.rotates(framed) {
		// tidwall fsyncs a segment when it rotates, under the lock its
		// Read takes, so the sender reads nothing until it is done: that
		// fsync waits for the writeback in flight and whatever is still
		// dirty. Sync the tail first, outside that lock, so that tidwall's
		// fsync finds only this batch's bytes to write. (It still halves
		// the time the sender's reads are held with startWriteback and
		// the background fsync at three quarters in place:
		// bench/HISTORY.md, "Figures that were in code comments".)
		if err := l.syncData(); err != nil {
			l.fail(err, "fsync")
			for _, r := range batch {
				l.answer(r, l.w.failed)
			}
			return
		}
	}
	// The batch goes to tidwall in parts cut where it rotates, so that each
	// new tail segment gets its buffers (presizeTail) before its first
	// entry rather than growing them by append first.
	cuts := l.w.segs.cuts(framed, l.w.cuts[:0])
	l.w.cuts = cuts
	first := l.w.last + 1
	tailFirst := l.w.segs.tail().First
	before := l.w.segs.tail().Bytes > l.w.segs.limit // tidwall rotates before the batch
	if before {
		tailFirst = first
	}
	created := l.w.segs.apply(first, framed)
	seq := first
	var err error
	for _, r := range batch {
		r.first = seq
		for _, e := range r.entries {
			l.w.batch.add(seq, e, r.buf)
			seq++
			if len(cuts) > 0 && seq-first == uint64(cuts[0]) {
				cuts = cuts[1:]
				if err = l.writeTidwall(); err != nil {
					break
				}
				// tidwall sealed the tail after this entry: the new
				// tail gets a sealed segment's buffers if nothing
				// can read them any more, sized by the one just sealed.
				l.tlMu.Lock()
				l.w.bufs.sealedAt(seq)
				l.reclaim()
				l.presizeTail(int(seq - tailFirst))
				l.tlMu.Unlock()
				tailFirst = seq
			}
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = l.writeTidwall()
	}
	if err == nil && before && len(l.w.cuts) == 0 {
		l.tlMu.Lock()
		l.w.bufs.sealedAt(first)
		l.presizeTail(0)
		l.tlMu.Unlock()
	}
	if err == nil && created > 0 {
		l.w.dirDirty = true
		l.segsChanged()
		err = l.w.openTail() // also proves the predicted file exists
		if err == nil {
			err = l.checkTail()
		}
	}
	if err != nil {
		l.fail(err, "write")
		for _, r := range batch {
			l.answer(r, l.w.failed)
		}
		return
	}
	l.w.last = seq - 1
	l.w.dirty = true
	if l.opts.Sync == SyncAlways {
		// Every group is fsync'd as soon as the previous fsync ends.
		l.w.unsynced = append(l.w.unsynced, batch...)
		return
	}
	l.w.startWriteback()
	if t := l.w.segs.tail(); !l.w.sealKicked && t.Bytes >= l.opts.SegmentBytes-l.opts.SegmentBytes/4 {
		// Three quarters full: fsync it in the background now, so that the
		// fsyncs at its end (ours before the batch that seals it, and
		// tidwall's while it seals it, under the lock the sender's reads
		// take, while every appender waits) find little left to write.
		l.w.sealKicked = true
		l.w.wantSync = true
	}
	l.w.markGood()
	l.publish(l.w.last, l.w.segs.tail().First, batch)
}

// writeTidwall writes the entries gathered in the writer's batch.
func (l *Log) writeTidwall() error {
	if l.w.batch.len() == 0 {
		return nil
	}
	l.tlMu.RLock()
	err := l.w.batch.write(l.tl)
	l.tlMu.RUnlock()
	return err
}

// checkTail proves the segment tracker still agrees with tidwall: the file
// it calls the tail has exactly the bytes it predicts. A disagreement would
// mean fsyncing the wrong file, so it fails the write instead. It runs when
// a segment was created, before every fsync of the tail (under SyncAlways,
// before the appenders it covers are answered) and every housekeeping
// tick: one fstat per fsync rather than one per write.
func (l *Log) checkTail() error {
	var st unix.Stat_t
	if err := unix.Fstat(int(l.w.tail.Fd()), &st); err != nil {
		return fmt.Errorf("%s: %w", l.w.tail.Name(), err)
	}
	if want := l.w.segs.tail().Bytes; st.Size != want {
		return fmt.Errorf("segment tracking diverged: %s has %d bytes, expected %d", filepath.Base(l.w.tail.Name()), st.Size, want)
	}
	return nil
}

func (l *Log) answer(r *appendReq, err error) {
	l.countFull(r, err)
	l.disk.release(r.bytes)
	r.err = err
	r.done <- struct{}{}
}
