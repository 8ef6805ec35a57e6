package wal

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	twal "github.com/tidwall/wal"
)

// Log is kafkawal's write-ahead log: checksummed records in tidwall/wal
// segments, appended with group commit, read sequentially by one consumer,
// and deleted a whole segment at a time once the durable cursor has passed
// them. See doc.go for the format and the rules.
type Log struct {
	dir, segDir string
	opts        Options
	log         *zerolog.Logger
	lock        *dirLock
	disk        *diskCap

	// tlMu guards the identity of tl: reading and writing hold it shared
	// (tidwall serializes those itself); truncation and repair, which close
	// and reopen tl, hold it exclusively, as does presizeTail, which
	// replaces the tail segment's buffers under tidwall.
	tlMu sync.RWMutex
	tl   *twal.Log
	// readMu serializes tidwall Read calls: two concurrent Reads race in its
	// segment cache (upstream issue #34).
	readMu sync.Mutex
	sr     sealedReader // ReadInto's position; guarded by readMu

	curMu sync.Mutex
	cur   *cursorFile
	// noted is the synced watermark last stored (guarded by curMu);
	// syncedSeq the one known now (synced.go).
	noted     uint64
	syncedSeq atomic.Uint64
	noteDone  chan struct{} // closed when noteLoop returns

	acked   atomic.Uint64 // persisted cursor: every seq <= acked is delivered
	first   atomic.Uint64 // first seq still on disk
	visible atomic.Uint64 // last seq written (and, with SyncAlways, synced)
	// sealed: every seq below it lies in a sealed segment, whose file is
	// complete and never changes again (repair only rolls back to a batch
	// in the tail segment of the last published batch, or later).
	sealed   atomic.Uint64
	pressure atomic.Bool // an appender waits for room
	segCount atomic.Int64
	// segFirsts: the first sequence of every segment, in order; replaced
	// (never modified) by the writer whenever the list changes, and
	// before a new segment's records are published.
	segFirsts atomic.Pointer[[]uint64]

	// Park logs (park.go): found at Open or created since.
	parksMu sync.Mutex
	parks   []*ParkLog
	sizes   atomic.Pointer[segSizes] // for BytesAfter, published with segFirsts

	reqs    chan *appendReq
	reqPool sync.Pool // of *appendReq
	async   asyncQueue
	// appendedOK counts records whose append succeeded.
	appendedOK atomic.Uint64
	// writeFull counts appends answered ErrFull because the disk itself
	// was full (ENOSPC); the disk cap counts those refused at MaxDiskBytes.
	writeFull atomic.Uint64
	truncCh   chan struct{}
	appended  chan struct{}

	closeMu    sync.RWMutex
	closed     bool
	done       chan struct{} // closed when Close starts
	writerDone chan struct{}

	w    writer   // owned by the writer goroutine
	pins readPins // what the consumer still holds of what it read
}

// OpenInfo reports what Open found on disk.
type OpenInfo struct {
	FirstSeq, LastSeq uint64
	Cursor            CursorState
	// CursorClamped is set when the persisted cursor was beyond the last
	// record on disk (records lost by a power loss under SyncPeriodic or
	// SyncNever); it was lowered to LastSeq.
	CursorClamped bool
}

// Open opens (creating if needed) the log in dir. It takes dir's lock and
// fails with ErrLocked if another Log holds it. A torn tail must have been
// repaired first (package recovery); tidwall/wal refuses to open one, and
// Open then fails with an error matching ErrCorrupt.
func Open(dir string, opts Options) (*Log, OpenInfo, error) {
	var info OpenInfo
	if err := opts.Validate(); err != nil {
		return nil, info, err
	}
	opts = opts.withDefaults()
	if dir == "" {
		return nil, info, errors.New("kafkawal: config: Dir: empty")
	}
	if err := mkdirAllDurable(dir, opts.DirMode); err != nil {
		return nil, info, fmt.Errorf("kafkawal: create %s: %w", dir, err)
	}
	lock, err := lockDir(dir, opts.FileMode)
	if err != nil {
		return nil, info, err
	}
	l := &Log{
		dir:        dir,
		segDir:     filepath.Join(dir, SegmentsDir),
		opts:       opts,
		log:        opts.Logger,
		lock:       lock,
		reqs:       make(chan *appendReq, 1024),
		truncCh:    make(chan struct{}, 1),
		appended:   make(chan struct{}, 1),
		done:       make(chan struct{}),
		writerDone: make(chan struct{}),
		noteDone:   make(chan struct{}),
	}
	info, err = l.open()
	if err != nil {
		lock.unlock()
		return nil, info, err
	}
	l.async.init(opts.AsyncQueue, opts.AsyncQueueBytes)
	go l.run()
	go l.complete()
	go l.noteLoop()
	return l, info, nil
}

func (l *Log) open() (info OpenInfo, err error) {
	if err := mkdirAllDurable(l.segDir, l.opts.DirMode); err != nil {
		return info, fmt.Errorf("kafkawal: create %s: %w", l.segDir, err)
	}
	if l.opts.BeforeOpen != nil {
		if err := l.opts.BeforeOpen(l.dir); err != nil {
			return info, err
		}
	}
	if err := l.openTidwall(); err != nil {
		return info, err
	}
	defer func() { // a failed Open leaves nothing open
		if err != nil {
			closeTidwall(l.tl)
			l.tl = nil
			l.w.closeTail()
		}
	}()
	first, _ := l.tl.FirstIndex()
	last, _ := l.tl.LastIndex()
	segs, err := ListSegments(l.dir)
	if err != nil {
		return info, err
	}
	if len(segs) == 0 {
		return info, fmt.Errorf("kafkawal: %s: no segment file after open", l.segDir)
	}
	l.w.segs = segTracker{dir: l.segDir, limit: l.opts.SegmentBytes, segs: segs}
	if ebuf, epos := tidwallTail(l.tl); ebuf != nil {
		l.w.bufs.give(*ebuf, *epos, segs[len(segs)-1].First)
	}
	l.w.last = last
	l.w.markGood()
	if err := l.w.openTail(); err != nil {
		return info, err
	}
	// tidwall/wal creates files without syncing their directory.
	if err := SyncDir(l.segDir); err != nil {
		return info, fmt.Errorf("kafkawal: sync %s: %w", l.segDir, err)
	}
	cur, st, err := openCursor(l.dir, l.opts.FileMode)
	if err != nil {
		return info, err
	}
	l.cur = cur
	acked := st.Acked
	if acked > last {
		info.CursorClamped = true
		l.log.Warn().Uint64("cursor", acked).Uint64("last_seq", last).
			Msg("wal: cursor beyond the last record on disk (unsynced records lost by an OS crash); lowering it")
		acked = last
		// syncAtOpen below stores it durably, before anything is appended:
		// the next records reuse the sequences above last, and a cursor
		// file still saying they were delivered would skip them at the
		// next Open (and let recovery call damage in them delivered).
	}
	if st.Damaged > 0 {
		l.log.Warn().Int("damaged_slots", st.Damaged).Uint64("cursor", acked).
			Msg("wal: cursor slot failed its checksum; using the previous value (records after it may be sent twice)")
	}
	if err := l.syncAtOpen(acked, last); err != nil {
		return info, fmt.Errorf("kafkawal: store the cursor at %d: %w", acked, err)
	}
	l.acked.Store(acked)
	l.first.Store(first)
	l.visible.Store(last)
	l.sealed.Store(segs[len(segs)-1].First)
	l.segsChanged()
	l.disk = newDiskCap(l.w.segs.totalBytes(), l.opts.MaxDiskBytes)
	parked, err := l.openParks()
	if err != nil {
		return info, err
	}
	l.disk.used += parked
	l.watchFull()
	info.FirstSeq, info.LastSeq, info.Cursor = first, last, st
	return info, nil
}

// tidwallSegmentBytes is the segment size tidwall is opened with: the
// tracker's, unless a test skews it (Options.hooks) to prove a divergence
// is caught.
func (l *Log) tidwallSegmentBytes() int {
	if h := l.opts.hooks; h != nil {
		return int(l.opts.SegmentBytes + h.segmentSkew)
	}
	return int(l.opts.SegmentBytes)
}

func (l *Log) openTidwall() error {
	tl, err := twal.Open(l.segDir, &twal.Options{
		NoSync:           true, // the writer fsyncs the tail itself, outside tidwall's lock
		NoCopy:           true, // Read copies, ReadInto does not
		SegmentSize:      l.tidwallSegmentBytes(),
		SegmentCacheSize: tidwallCached,
		AllowEmpty:       true, // truncation may leave only an empty tail segment
		DirPerms:         l.opts.DirMode,
		FilePerms:        l.opts.FileMode,
	})
	if err != nil {
		if errors.Is(err, twal.ErrCorrupt) {
			return fmt.Errorf("%w: %s: last segment does not parse (torn tail? run recovery): %v", ErrCorrupt, l.segDir, err)
		}
		return fmt.Errorf("kafkawal: open %s: %w", l.segDir, err)
	}
	l.tl = tl
	// A new tidwall holds none of the writer's buffers; records read from
	// them may still be in use, so they are never recycled.
	clear(l.w.bufs.given)
	l.w.bufs.given = l.w.bufs.given[:0]
	l.presizeTail(0)
	return nil
}

// Dir returns the log's directory.
func (l *Log) Dir() string { return l.dir }

// Cursor returns the persisted cursor: every sequence <= it was delivered.
func (l *Log) Cursor() uint64 { return l.acked.Load() }

// FirstSeq returns the first sequence still on disk (LastSeq+1 when empty).
func (l *Log) FirstSeq() uint64 { return l.first.Load() }

// LastSeq returns the last sequence a reader can see.
func (l *Log) LastSeq() uint64 { return l.visible.Load() }

// Appended signals (without blocking the writer) that LastSeq advanced. It
// has a single reader: the log's consumer.
func (l *Log) Appended() <-chan struct{} { return l.appended }

// Stats is a snapshot of the log's counters.
type Stats struct {
	FirstSeq, LastSeq, Cursor uint64
	// Appended counts records whose Append, AppendBatch or AppendAsync
	// succeeded since Open.
	Appended                uint64
	DiskBytes, MaxDiskBytes int64
	// BacklogBytes is the size of the records after the cursor
	// (BytesAfter).
	BacklogBytes int64
	Segments     int
	// FullAnswers counts appends answered ErrFull since Open: refused at
	// MaxDiskBytes, given up waiting for room, or failed for lack of disk
	// space.
	FullAnswers uint64
}

// Stats returns current counters. It is cheap and safe from any goroutine.
func (l *Log) Stats() Stats {
	st := Stats{
		FirstSeq:     l.first.Load(),
		LastSeq:      l.visible.Load(),
		Cursor:       l.acked.Load(),
		DiskBytes:    l.disk.usedBytes(),
		MaxDiskBytes: l.opts.MaxDiskBytes,
		Segments:     int(l.segCount.Load()),
		Appended:     l.appendedOK.Load(),
		FullAnswers:  l.disk.fullAnswers() + l.writeFull.Load(),
	}
	st.BacklogBytes = l.BytesAfter(st.Cursor)
	return st
}

// SetCursor persists acked (every seq <= acked was delivered) and lets the
// writer delete segments wholly below it. It ignores values that do not
// advance the cursor and rejects values beyond LastSeq.
func (l *Log) SetCursor(acked uint64) error {
	l.curMu.Lock()
	defer l.curMu.Unlock()
	if acked <= l.acked.Load() {
		return nil
	}
	if last := l.visible.Load(); acked > last {
		return fmt.Errorf("kafkawal: cursor %d beyond last sequence %d", acked, last)
	}
	if err := l.storeCursorLocked(acked); err != nil {
		return err
	}
	l.acked.Store(acked)
	select {
	case l.truncCh <- struct{}{}:
	default:
	}
	return nil
}

// StopAppends makes further Appends fail with ErrClosed, finishes those
// already queued, syncs them and runs every AppendAsync callback. Reading
// and SetCursor keep working until Close. It returns ErrClosed if appends
// were already stopped, and a *WriteError when records it had answered may
// not be durable: under SyncPeriodic and SyncNever, when the final fsync
// failed or the log was still failed after a write or fsync error.
func (l *Log) StopAppends() error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		<-l.writerDone
		<-l.async.done
		return ErrClosed
	}
	l.closed = true
	close(l.done)
	l.closeAsync()
	close(l.reqs) // the writer then takes the asynchronous calls one last time
	l.closeMu.Unlock()
	<-l.writerDone
	<-l.async.done
	return l.w.closeErr
}

// Close stops appends (see StopAppends; if they were not stopped before,
// Close returns StopAppends' error), closes the segment files and releases
// the directory lock. The cursor is whatever SetCursor last stored. A
// second Close returns ErrClosed.
func (l *Log) Close() error {
	err := l.StopAppends()
	if errors.Is(err, ErrClosed) {
		err = nil // stopped before: that call reported
	}
	<-l.noteDone
	if nerr := l.noteSynced(); nerr != nil {
		err = errors.Join(err, fmt.Errorf("kafkawal: store the synced watermark: %w", nerr))
	}
	defer func() { // after tlMu: readers take readMu first
		l.readMu.Lock()
		l.sr.close()
		l.readMu.Unlock()
	}()
	l.tlMu.Lock()
	defer l.tlMu.Unlock()
	if l.lock.f == nil {
		return ErrClosed
	}
	if l.tl != nil {
		if cerr := closeTidwall(l.tl); cerr != nil && !errors.Is(cerr, twal.ErrClosed) {
			err = errors.Join(err, fmt.Errorf("kafkawal: close segments: %w", cerr))
		}
		l.tl = nil
	}
	l.w.closeTail()
	l.parksMu.Lock()
	for _, pl := range l.parks {
		pl.close()
	}
	l.parksMu.Unlock()
	if uerr := l.lock.unlock(); uerr != nil {
		err = errors.Join(err, uerr)
	}
	return err
}

// Append writes recs as consecutive sequences and returns the first. It
// returns nil only once every record is durable under the configured Sync
// mode. Invalid input (no records, an empty topic, a record over
// MaxRecordBytes) fails the whole call with an error matching
// ErrInvalidRecord before anything is written.
func (l *Log) Append(ctx context.Context, recs []Record) (uint64, error) {
	return l.AppendAt(ctx, recs, time.Time{})
}

// AppendAt is Append that stores now as the timestamp of the records
// without one (the zero now leaves them unset). recs is not modified.
func (l *Log) AppendAt(ctx context.Context, recs []Record, now time.Time) (uint64, error) {
	if len(recs) == 0 {
		return 0, fmt.Errorf("%w: no records", ErrInvalidRecord)
	}
	var unset int64
	if !now.IsZero() {
		unset = now.UnixNano()
	}
	req, err := l.encode(recs, unset)
	if err != nil {
		return 0, err
	}
	// Every path below ends with the writer done with req (it has
	// answered, or never saw it): back to the pool then.
	defer l.putReq(req)
	if req.bytes > l.opts.MaxDiskBytes-l.opts.SegmentBytes {
		return 0, fmt.Errorf("%w: batch of %d bytes can never fit under MaxDiskBytes %d", ErrTooLarge, req.bytes, l.opts.MaxDiskBytes)
	}
	select {
	case <-l.done:
		return 0, ErrClosed
	default:
	}
	if err := l.disk.reserve(ctx, req.bytes, l.opts.FullPolicy, l.done, l.askTruncate); err != nil {
		return 0, err
	}
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		l.disk.release(req.bytes)
		return 0, ErrClosed
	}
	l.reqs <- req
	l.closeMu.RUnlock()
	<-req.done // the writer is done with req once it has signalled
	if req.err == nil {
		l.appendedOK.Add(uint64(len(recs)))
	}
	return req.first, req.err
}

// Append requests are pooled: an append then allocates nothing, and a
// batch of a thousand 1 KiB records does not allocate and zero a fresh
// megabyte. sync.Pool drops what is not reused within two garbage
// collections; requests that grew larger than this are not kept at all.
const (
	pooledReqBytes   = 2 << 20
	pooledReqRecords = 4096
)

func (l *Log) getReq(n, total int) *appendReq {
	r, _ := l.reqPool.Get().(*appendReq)
	if r == nil {
		r = &appendReq{done: make(chan struct{}, 1)}
	}
	select {
	case <-r.done:
		panic("kafkawal: wal: an append request was answered twice")
	default:
	}
	r.buf = slices.Grow(r.buf[:0], total)
	r.entries = slices.Grow(r.entries[:0], n)[:n]
	r.framed = slices.Grow(r.framed[:0], n)[:n]
	r.bytes, r.first, r.err = 0, 0, nil
	return r
}

func (l *Log) putReq(r *appendReq) {
	if cap(r.buf) > pooledReqBytes || cap(r.entries) > pooledReqRecords {
		return
	}
	l.reqPool.Put(r)
}

func (l *Log) askTruncate() {
	l.pressure.Store(true)
	select {
	case l.truncCh <- struct{}{}:
	default:
	}
}

// encode validates and encodes recs into one buffer, with the timestamp
// unset for records without one.
func (l *Log) encode(recs []Record, unset int64) (*appendReq, error) {
	total := 0
	for i := range recs {
		n, err := l.check(i, &recs[i])
		if err != nil {
			return nil, err
		}
		total += n
	}
	req := l.getReq(len(recs), total)
	buf := req.buf
	for i := range recs {
		start := len(buf)
		buf = appendEncode(buf, &recs[i], unset)
		req.entries[i] = buf[start:len(buf):len(buf)]
		req.framed[i] = FramedLen(len(buf) - start)
		req.bytes += req.framed[i]
	}
	req.buf = buf
	return req, nil
}
