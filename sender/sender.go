package sender

import (
	"context"
	"errors"
	"fmt"
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
	// positional: reports are attributed by partition and position
	// (partition.go); false without idempotence, or after the tripwire.
	positional bool
	closing    bool // shutdown saw a failure report: positional successes are not believed
	mode       mode
	retryAt    time.Time
	backoff    time.Duration
	// deadline for purged records' reports before a rebuild goes ahead
	rebuildBy   time.Time
	persisted   uint64
	outageSince time.Time
	// isolateUntil: sequences below it are produced one at a time. A
	// "record too large" answer applies to librdkafka's whole batch, so a
	// permanent error is only believed for a record sent alone.
	isolateUntil uint64
	soloSeq      uint64 // the record last produced alone under isolation

	stats   counters
	notifyM sync.Mutex
	notify  chan struct{} // closed and replaced when the watermark advances

	closeCh chan closeReq
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
	acked                                            atomic.Uint64 // in-memory watermark
	inFlight                                         atomic.Int64
	oldest                                           atomic.Int64 // Unix nanos of the oldest unacknowledged record in flight
	unreachable                                      atomic.Bool
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
	Acked           uint64 // every sequence <= Acked is delivered or dead-lettered
	InFlight        int
	OldestUnacked   time.Time // zero when nothing is in flight
	BrokerReachable bool
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
		win:     newWindow(max(l.Cursor()+1, l.FirstSeq()), cfg.MaxInFlight),
		pf:      newPrefetcher(l),
		rt:      newRouter(kind, linger),
		backoff: minBackoff,
		// Per-partition report order needs idempotence (retries that
		// keep order).
		positional: truthy(kcfg["enable.idempotence"]),
		notify:     make(chan struct{}),
		closeCh:    make(chan closeReq),
		done:       make(chan struct{}),
	}
	s.persisted = s.win.low - 1
	s.stats.acked.Store(s.win.low - 1)
	if err := s.newProducer(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start runs the sender goroutine (and its WAL reader).
func (s *Sender) Start() {
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

func (s *Sender) newProducer() error {
	cfg := kafka.ConfigMap{}
	for k, v := range s.kcfg {
		cfg[k] = v
	}
	p, err := kafka.NewProducer(&cfg)
	if err != nil {
		// librdkafka names the offending key; it does not echo values.
		return fmt.Errorf("kafkawal: config: Kafka: %w", err)
	}
	s.p, s.events, s.logs = p, p.Events(), p.Logs()
	s.meta = startMeta(p)
	s.rt.restartFetches()
	return nil
}

func (s *Sender) run() {
	defer close(s.done)
	defer s.pf.stop()
	tick := time.NewTicker(s.cfg.CursorSyncInterval)
	defer tick.Stop()
	timer := time.NewTimer(time.Hour) // re-armed for retries and rebuild deadlines
	defer timer.Stop()
	var closing *closeReq
	var closeDone <-chan struct{}
	closeCh := s.closeCh
	for {
		if closing != nil && (s.win.low > closing.target || closing.ctx.Err() != nil) {
			s.shutdown()
			return
		}
		s.maybeRewind()
		s.fill()
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
		if !s.retryAt.IsZero() || s.mode == rebuilding {
			at := s.retryAt
			if s.mode == rebuilding {
				at = s.rebuildBy
			}
			timer.Reset(max(time.Until(at), time.Millisecond))
			retry = timer.C
		}
		select {
		case ev := <-s.events:
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
			s.rt.setMeta(a.topic, a.md, a.err)
		case b := <-reads:
			s.take(b)
		case <-tick.C:
			s.persist()
		case <-retry:
		case req := <-closeCh:
			closing, closeCh, closeDone = &req, nil, req.ctx.Done()
		case <-closeDone:
		}
	}
}

// fill produces from the WAL while the window has room.
func (s *Sender) fill() {
	if s.mode != normal {
		return
	}
	if !s.retryAt.IsZero() {
		if time.Now().Before(s.retryAt) {
			return
		}
		s.retryAt = time.Time{}
	}
	s.rt.tick()
	for n := 1; s.win.hasRoom(s.cfg.MaxInFlight, s.cfg.MaxInFlightBytes); n++ {
		if n%clockEvery == 0 {
			s.rt.tick()
		}
		// Isolated: one record at a time, and the record after the range
		// waits for the last isolated one's report too, or librdkafka
		// would batch them together again.
		lastSolo := s.soloSeq != 0 && s.soloSeq == s.win.next-1
		if s.win.produced > 0 && (s.win.next < s.isolateUntil || lastSolo) {
			break
		}
		if s.win.nextDone() {
			s.win.skip()
			continue
		}
		e := s.peek()
		if e == nil {
			return // caught up, or waiting for the read-ahead
		}
		if e.Hole {
			s.lg.Error().Uint64("seq", e.Seq).Msg("sender: skipping a record recovery could not read (counted lost)")
			s.stats.holes.Add(1)
			s.win.skip()
			continue
		}
		m, q := s.message(e)
		err := s.p.Produce(m, nil)
		if err != nil {
			c := classify(err)
			if q != nil && e.Record.Partition == wal.PartitionAny && c == permanent {
				// The partition we chose does not exist (a topic re-created
				// with fewer): forget the count; the record goes again with
				// PartitionAny and Opaque until new metadata is in.
				s.lg.Warn().Err(err).Str("topic", e.Record.Topic).Msg("sender: chosen partition refused; refreshing the topic's partitions")
				s.rt.forget(e.Record.Topic)
				continue
			}
			switch c {
			case permanent:
				if s.deadLetter(e.Seq, e.Record.Clone(), err) {
					s.win.skip()
					continue
				}
			case fatal:
				s.startRebuild(err)
			default: // ErrQueueFull and friends: wait for reports to free room
				s.retryLater()
			}
			return
		}
		if q != nil {
			q.push(e.Seq)
		}
		if e.Seq < s.win.hi {
			s.stats.resent.Add(1)
		}
		if e.Seq < s.isolateUntil {
			s.soloSeq = e.Seq
		}
		s.win.add(e.Seq, e.Size, e.Record.Timestamp.UnixNano())
	}
	s.stats.inFlight.Store(int64(s.win.produced))
	s.stats.oldest.Store(s.win.oldest())
}

// peek returns the record at win.next from the read-ahead, or nil when it
// has not been read yet. It moves the prefetcher when win.next is not
// where it reads (after a rewind or a skip past what it read).
func (s *Sender) peek() *wal.Entry {
	next := s.win.next
	for {
		for len(s.pending) > 0 && s.pending[0].Seq < next {
			s.pending = s.pending[1:]
		}
		if len(s.pending) > 0 {
			if s.pending[0].Seq == next {
				return &s.pending[0]
			}
			s.pending = nil // read ahead of next: a rewind went back
		}
		if s.pfNext != next {
			s.pfGen++
			s.pf.seekTo(s.pfGen, next)
			s.pfNext = next
		}
		select {
		case b := <-s.pf.out:
			s.take(b)
		default:
			return nil
		}
		if len(s.pending) == 0 {
			return nil // a read failed, or a batch from before a seek
		}
	}
}

// take accepts a batch from the prefetcher: records, or a read error
// (retried after a backoff, from the same sequence).
func (s *Sender) take(b readBatch) {
	if b.gen != s.pfGen {
		s.pf.recycle(b.chunk) // read before the latest seek
		return
	}
	if b.err != nil {
		s.pf.recycle(b.chunk)
		s.lg.Error().Err(b.err).Uint64("seq", s.pfNext).Msg("sender: cannot read the WAL; retrying")
		s.pfNext = 0 // seek again when retrying
		s.retryLater()
		return
	}
	s.pf.recycle(s.cur)
	s.cur, s.pending = b.chunk, b.ents
	s.pfNext = b.ents[len(b.ents)-1].Seq + 1
}

// message fills the sender's one reusable kafka.Message with e: Produce
// copies what it needs (librdkafka's RD_KAFKA_MSG_F_COPY) and keeps no
// reference to the Message, so one per sender saves an allocation per
// record. It returns the queue of the partition the record goes to, to
// push its sequence on once produced, or nil when the record carries its
// sequence as Opaque instead.
func (s *Sender) message(e *wal.Entry) (*kafka.Message, *fifo) {
	r := &e.Record
	m := &s.msg
	part, q := s.route(e)
	*m = kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &r.Topic, Partition: part},
		Key:            r.Key,
		Value:          r.Value,
		Timestamp:      r.Timestamp,
	}
	if q == nil {
		m.Opaque = e.Seq
	}
	if len(r.Headers) > 0 {
		s.hdrs = s.hdrs[:0]
		for _, h := range r.Headers {
			s.hdrs = append(s.hdrs, kafka.Header{Key: h.Key, Value: h.Value})
		}
		m.Headers = s.hdrs
	}
	return m, q
}

// route returns the partition to produce e to and its queue, or the
// record's own partition and nil to attribute its report by Opaque: when
// reports are not positional, for records sent alone to confirm a
// permanent error (the dead-letter decision must not rest on our choice
// of partition), and for PartitionAny records of a topic whose partitions
// are not known yet.
func (s *Sender) route(e *wal.Entry) (int32, *fifo) {
	r := &e.Record
	if !s.positional || e.Seq < s.isolateUntil {
		return r.Partition, nil
	}
	t := s.rt.topic(r.Topic)
	p := r.Partition
	if p == wal.PartitionAny {
		if !t.fetching && !s.rt.now.Before(t.fetchAt) {
			if s.meta.ask(r.Topic) {
				t.fetching = true
			} else {
				t.fetchAt = s.rt.now.Add(metaRetry)
			}
		}
		var ok bool
		if p, ok = s.rt.partition(t, r.Key); !ok {
			return wal.PartitionAny, nil
		}
	}
	return p, t.queue(p)
}

func (s *Sender) retryLater() {
	s.retryAt = time.Now().Add(s.backoff)
	s.backoff = min(2*s.backoff, maxBackoff)
}

func (s *Sender) handle(ev kafka.Event) {
	switch e := ev.(type) {
	case *kafka.Message:
		s.report(e)
	case kafka.Error:
		s.brokerError(e)
	}
}

// attribute returns the sequence a report is for: its Opaque, or the
// oldest sequence produced to its partition and not yet reported.
func (s *Sender) attribute(m *kafka.Message) (seq uint64, q *fifo, ok bool) {
	if seq, ok := m.Opaque.(uint64); ok {
		return seq, nil, true
	}
	tp := m.TopicPartition
	if tp.Topic == nil {
		return 0, nil, false
	}
	q = s.rt.topic(*tp.Topic).queue(tp.Partition)
	if seq, ok = q.pop(); !ok {
		s.anomaly("sender: a delivery report for a partition with no record in flight; ignored", m)
		return 0, nil, false
	}
	return seq, q, true
}

func (s *Sender) anomaly(msg string, m *kafka.Message) {
	s.stats.anomalies.Add(1)
	s.lg.Error().Str("topic", *m.TopicPartition.Topic).Int32("partition", m.TopicPartition.Partition).
		Int64("offset", int64(m.TopicPartition.Offset)).Msg(msg)
}

func (s *Sender) report(m *kafka.Message) {
	seq, q, ok := s.attribute(m)
	if !ok {
		return
	}
	err := m.TopicPartition.Error
	if err == nil && q != nil {
		// A positional success is believed only while no failure has been
		// reported since the last rewind (see partition.go), and only if
		// the partition's offsets still rise in report order.
		if s.mode != normal || s.closing {
			s.win.resolve(seq, false)
			return
		}
		if off := int64(m.TopicPartition.Offset); off >= 0 {
			if off <= q.lastOffset {
				s.anomaly("sender: delivery reports out of order in a partition; re-sending everything unacknowledged and attributing reports by Opaque from now on", m)
				s.positional = false
				s.win.resolve(seq, false)
				s.enter(draining, errMisordered)
				return
			}
			q.lastOffset = off
		}
	}
	if err == nil {
		if s.win.resolve(seq, true) {
			s.stats.delivered.Add(1)
			s.backoff = minBackoff
			s.reachable()
			if s.cfg.OnDelivered != nil {
				s.cfg.OnDelivered(seq, *m.TopicPartition.Topic, m.TopicPartition.Partition, int64(m.TopicPartition.Offset))
			}
		}
		return
	}
	switch c := classify(err); c {
	case permanent:
		if seq != s.soloSeq {
			// Kafka may have refused the batch this record was in, not
			// the record: send everything not yet acknowledged again, one
			// record at a time, and believe the error only then.
			s.isolateUntil = max(s.isolateUntil, s.win.hi)
			s.win.resolve(seq, false)
			s.enter(draining, err)
			break
		}
		// The report carries no payload (go.delivery.report.fields=none):
		// read the record back from the WAL for the dead-letter log.
		ents, rerr := s.wal.Read(seq, make([]wal.Entry, 0, 1), 1)
		if rerr != nil || len(ents) != 1 {
			s.lg.Error().Err(rerr).Uint64("seq", seq).Msg("sender: cannot read back a refused record; will retry it")
			s.win.resolve(seq, false)
			s.enter(draining, err)
			return
		}
		if s.deadLetter(seq, ents[0].Record, err) {
			s.win.resolve(seq, true)
		} else {
			s.win.resolve(seq, false)
			s.enter(draining, err)
		}
	case fatal:
		s.win.resolve(seq, false)
		s.startRebuild(err)
	case purged:
		s.win.resolve(seq, false)
		if s.mode == normal {
			s.enter(draining, err)
		}
	default:
		s.win.resolve(seq, false)
		s.enter(draining, err)
	}
	s.maybeRewind()
}

// enter switches to draining (unless a rebuild is already under way): no
// more records are produced until every outstanding report is in, then
// everything unacknowledged is produced again in order.
func (s *Sender) enter(m mode, cause error) {
	if s.mode != normal {
		return
	}
	s.mode = m
	s.lg.Warn().Err(cause).Uint64("from_seq", s.win.low).Int("in_flight", s.win.produced).
		Msg("sender: transient delivery failure; re-sending from the oldest unacknowledged record")
	// Take back everything still queued or in flight now: left alone,
	// later records could be delivered before the failed one is re-sent,
	// and land ahead of it in its partition. A purged record that did reach
	// Kafka is sent again: a duplicate (counted in Resent), never a reorder.
	if err := s.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking); err != nil {
		s.lg.Warn().Err(err).Msg("sender: purge failed")
	}
}

func (s *Sender) maybeRewind() {
	if s.mode == draining && s.win.produced == 0 {
		s.win.rewind() // peek then finds next behind the read-ahead and seeks
		s.resetRouter()
		s.mode = normal
		s.retryLater()
	}
}

// resetRouter forgets the queues of reports to come: every report of
// what was produced is in (or, after a rebuild, will never come).
func (s *Sender) resetRouter() {
	if n := s.rt.outstanding(); n > 0 && s.win.produced == 0 {
		s.stats.anomalies.Add(uint64(n))
		s.lg.Error().Int("records", n).Msg("sender: records produced without a delivery report; they are re-sent")
	}
	s.rt.reset()
}

func (s *Sender) brokerError(e kafka.Error) {
	if e.IsFatal() {
		s.startRebuild(e)
		return
	}
	switch e.Code() {
	case kafka.ErrAllBrokersDown:
		if !s.stats.unreachable.Swap(true) {
			s.outageSince = time.Now()
			st := s.wal.Stats()
			s.lg.Warn().Str("err", e.String()).Uint64("backlog_records", st.LastSeq-s.win.low+1).
				Msg("sender: Kafka unreachable; records wait in the WAL")
		}
	default:
		s.lg.Debug().Str("err", e.String()).Msg("sender: librdkafka error event")
	}
}

func (s *Sender) reachable() {
	if s.stats.unreachable.Swap(false) {
		st := s.wal.Stats()
		s.lg.Info().Dur("outage", time.Since(s.outageSince)).Uint64("backlog_records", st.LastSeq-s.win.low+1).
			Msg("sender: Kafka reachable again; draining the backlog")
	}
}

// startRebuild purges librdkafka and waits (bounded) for the purged
// records' reports; checkRebuild then replaces the producer.
func (s *Sender) startRebuild(cause error) {
	if s.mode == rebuilding {
		return
	}
	s.mode = rebuilding
	s.rebuildBy = time.Now().Add(purgeWait)
	s.lg.Error().Err(cause).Uint64("from_seq", s.win.low).Int("in_flight", s.win.produced).
		Msg("sender: fatal producer error; rebuilding the producer and re-sending unacknowledged records")
	if err := s.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking); err != nil {
		s.lg.Warn().Err(err).Msg("sender: purge failed")
	}
}

func (s *Sender) checkRebuild() {
	if s.mode != rebuilding || (s.win.produced > 0 && time.Now().Before(s.rebuildBy)) {
		return
	}
	if s.win.produced > 0 {
		s.lg.Warn().Int("in_flight", s.win.produced).Msg("sender: purged records did not report in time; re-sending them")
		for seq := s.win.low; seq < s.win.next; seq++ {
			s.win.resolve(seq, false)
		}
	}
	s.closeProducer()
	if err := s.newProducer(); err != nil {
		s.lg.Error().Err(err).Msg("sender: cannot create a producer; retrying")
		s.rebuildBy = time.Now().Add(maxBackoff)
		return
	}
	s.stats.rebuilds.Add(1)
	s.win.rewind()
	s.rt.reset()
	s.mode = normal
}

// closeProducer closes librdkafka while draining its channels: Close waits
// for the poller, which may be blocked sending an event.
func (s *Sender) closeProducer() {
	s.meta.close()
	p, events, logs := s.p, s.events, s.logs
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	for {
		select {
		case <-closed:
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if m, isMsg := ev.(*kafka.Message); isMsg && m.TopicPartition.Error == nil {
				s.report(m) // a late success still counts
			}
		case lg, ok := <-logs:
			if !ok {
				logs = nil
				continue
			}
			s.logLibrdkafka(lg)
		}
	}
}

// deadLetter records a refused record durably, then tells the application.
// It returns false if the dead-letter log could not be written; the record
// is then retried, never dropped.
func (s *Sender) deadLetter(seq uint64, r wal.Record, cause error) bool {
	dl := wal.DeadLetter{Seq: seq, Time: time.Now(), Err: cause.Error(), Record: r}
	if err := s.dl.Add(dl); err != nil {
		s.lg.Error().Err(err).Uint64("seq", seq).Msg("sender: cannot write the dead-letter log; retrying the record")
		return false
	}
	s.stats.deadLettered.Add(1)
	s.lg.Error().Err(cause).Uint64("seq", seq).Str("topic", r.Topic).Int32("partition", r.Partition).
		Msg("sender: record refused by Kafka for good; dead-lettered")
	if s.cfg.OnDeadLetter != nil {
		s.cfg.OnDeadLetter(dl)
	}
	return true
}

// published makes the new watermark visible to Stats and Flush.
func (s *Sender) published() {
	s.stats.inFlight.Store(int64(s.win.produced))
	s.stats.oldest.Store(s.win.oldest())
	if acked := s.win.low - 1; acked != s.stats.acked.Load() {
		s.stats.acked.Store(acked)
		s.notifyM.Lock()
		close(s.notify)
		s.notify = make(chan struct{})
		s.notifyM.Unlock()
	}
}

// persist stores the watermark as the WAL cursor.
func (s *Sender) persist() {
	acked := s.win.low - 1
	if acked <= s.persisted {
		return
	}
	if err := s.wal.SetCursor(acked); err != nil {
		s.lg.Error().Err(err).Uint64("cursor", acked).Msg("sender: cannot persist the cursor")
		return
	}
	s.persisted = acked
}

// shutdown purges what librdkafka still holds (it is replayed from the WAL
// by the next Open), collects every report it can, closes the producer and
// persists the final cursor.
func (s *Sender) shutdown() {
	if s.win.produced > 0 {
		_ = s.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking)
		deadline := time.NewTimer(closePurgeWait)
		defer deadline.Stop()
	collect:
		for s.win.produced > 0 {
			select {
			case ev := <-s.events:
				if m, ok := ev.(*kafka.Message); ok {
					if seq, q, ok := s.attribute(m); ok {
						failed := m.TopicPartition.Error != nil
						// As in report: no positional success is believed
						// after a failure.
						s.win.resolve(seq, !failed && (q == nil || !s.closing))
						s.closing = s.closing || failed
					}
				}
			case lg := <-s.logs:
				s.logLibrdkafka(lg)
			case <-deadline.C:
				break collect
			}
		}
	}
	s.closeProducer()
	s.published()
	s.persist()
}

// Flush waits until every sequence <= upTo is delivered or dead-lettered,
// or ctx ends.
func (s *Sender) Flush(ctx context.Context, upTo uint64) error {
	for {
		s.notifyM.Lock()
		ch := s.notify
		s.notifyM.Unlock()
		if s.stats.acked.Load() >= upTo {
			return nil
		}
		select {
		case <-ch:
		case <-s.done:
			if s.stats.acked.Load() >= upTo {
				return nil
			}
			return errors.New("kafkawal: sender stopped before the flush completed")
		case <-ctx.Done():
			return fmt.Errorf("kafkawal: flush: %w (delivered through %d of %d)", context.Cause(ctx), s.stats.acked.Load(), upTo)
		}
	}
}

// Close delivers what it can until everything up to upTo is delivered or
// ctx ends, then stops: librdkafka is purged and closed, the cursor
// persisted. Whatever is left stays in the WAL for the next Open.
func (s *Sender) Close(ctx context.Context, upTo uint64) error {
	select {
	case s.closeCh <- closeReq{ctx: ctx, target: upTo}:
	case <-s.done:
	}
	<-s.done
	if acked := s.stats.acked.Load(); acked < upTo {
		return fmt.Errorf("kafkawal: close: %w: delivered through %d of %d; the rest stays in the WAL", context.Cause(ctx), acked, upTo)
	}
	return nil
}

// Stats returns the sender's counters.
func (s *Sender) Stats() Stats {
	st := Stats{
		Delivered:       s.stats.delivered.Load(),
		DeadLettered:    s.stats.deadLettered.Load(),
		Resent:          s.stats.resent.Load(),
		Holes:           s.stats.holes.Load(),
		Rebuilds:        s.stats.rebuilds.Load(),
		ReportAnomalies: s.stats.anomalies.Load(),
		Acked:           s.stats.acked.Load(),
		InFlight:        int(s.stats.inFlight.Load()),
		BrokerReachable: !s.stats.unreachable.Load(),
	}
	if ts := s.stats.oldest.Load(); ts != 0 {
		st.OldestUnacked = time.Unix(0, ts)
	}
	return st
}

func (s *Sender) logLibrdkafka(e kafka.LogEvent) {
	lvl := zerolog.DebugLevel
	switch {
	case e.Level <= 3:
		lvl = zerolog.ErrorLevel
	case e.Level == 4:
		lvl = zerolog.WarnLevel
	case e.Level == 5:
		lvl = zerolog.InfoLevel
	}
	s.lg.WithLevel(lvl).Str("source", "librdkafka").Str("tag", e.Tag).Msg(e.Message)
}
