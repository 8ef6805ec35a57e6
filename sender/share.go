package sender

import "time"

// deferAfter is the least time a partition at its share of the window may
// hold the main stream before its records are deferred to its lane: a
// partition whose oldest record in flight is younger is only busy and will
// be acknowledged soon (waiting for it costs the others less than reading
// its records back from the WAL later); one that has waited longer than
// lagAfter is not keeping up.
const deferAfter = time.Second

// lagFactor: a partition lags once its oldest record in flight has waited
// lagFactor times as long as records in flight wait on average
// (flightWait), and at least deferAfter. On a busy cluster with many
// partitions every partition waits long: librdkafka puts one partition in
// each produce request and keeps at most max.in.flight (5 with
// idempotence) requests in flight per broker, so a partition's turn comes
// round once in partitions/5 requests, more than a second for 1,000
// partitions on Apache Kafka. Judged by deferAfter alone, every partition
// then looked stuck and went to its lane, and each lane read the WAL back
// for its own records: the throughput fell to a tenth (bench/HISTORY.md).
// A partition that is really stuck waits on while the others' records
// are acknowledged at their usual pace, so it still stands out.
const lagFactor = 4

// lagAfter is how long a partition's oldest record in flight may wait
// before the partition counts as not keeping up (lagFactor).
func (s *Sender) lagAfter() time.Duration {
	return max(deferAfter, lagFactor*time.Duration(s.flightWait))
}

// turnGap: success reports of a partition within turnGap of the first of
// its turn belong to that turn. librdkafka serves a broker's partitions
// in turn, one partition per produce request; the reports of one request
// reach the run loop together, but over as many of its rounds as the
// poller and the loop take turns (each may be hundreds of records). A
// partition served without pause counts a turn each turnGap, so one that
// is stuck among a few that are served is passed over (awaitsTurn) well
// inside lagAfter.
const turnGap = 10 * time.Millisecond

// noteTurn counts p's success report as a turn, unless it belongs to the
// turn before (turnGap). Failed reports do not count: a partition whose
// requests fail and are retried is not being served.
func (s *Sender) noteTurn(p *part) {
	s.lastTurn = s.now
	if s.now-p.turnAt < int64(turnGap) {
		return
	}
	p.turnAt = s.now
	s.turns++
	p.turnMark = s.turns
}

// passedOverRounds: a partition that the others' turns have passed over
// for more rounds than this is not merely waiting its turn (awaitsTurn).
// librdkafka's rotation over a broker's partitions is uneven: on a slow
// cluster with many partitions some wait several rounds of the others'
// turns for their first (measured; the likely reason, read in librdkafka's
// source, is that partitions walked past while max.in.flight requests are
// out wait for a later pass, bench/HISTORY.md). A lane does not get such
// a partition served sooner (its records go to the same librdkafka
// queue); it only reads them back from the WAL. lagFactor rounds still
// sent many partitions to lanes (bench/HISTORY.md).
const passedOverRounds = 16

// awaitsTurn reports whether p, whose records have waited, is only
// waiting its turn: other partitions have had turns since p's last (the
// cluster answers), but at most passedOverRounds rounds of them, and the
// latest within lagAfter. A round is a turn for each partition being
// served (served: records in flight and a success within lagAfter):
// counting the stuck ones too would stretch the rounds that pass them
// over, the more so the more partitions are stuck. On a slow cluster a
// round of 1,000 partitions can take longer than any fixed timeout. A
// partition that is stuck is passed over round after round while the
// others are served. With no turn since p's, or none for lagAfter
// (nothing answers now, or the main stream waits behind p and the others
// have nothing left in flight), p does not merely await its turn: the
// timeouts alone decide.
func (s *Sender) awaitsTurn(p *part, now time.Time) bool {
	since := s.turns - p.turnMark
	return since > 0 && since <= uint64(passedOverRounds*max(s.served, 1)) &&
		now.UnixNano()-s.lastTurn < int64(s.lagAfter())
}

// flightWaitWeight: flightWait averages over about this many reports.
const flightWaitWeight = 256

// noteWait folds into flightWait the wait of a record the main stream
// produced, from its produce to its report (at is when it was produced).
// A sample counts for at most twice the average plus flowingFor: a
// partition back from a stall, whose records all waited through it,
// raises the average only by a factor of about e over flightWaitWeight of
// its reports, and the partitions that keep up bring it back; on a
// cluster that really slows down it reaches the new wait within a few
// hundred reports.
func (s *Sender) noteWait(at int64) {
	w := min(max(s.now-at, 0), 2*s.flightWait+int64(flowingFor))
	s.flightWait += (w - s.flightWait) / flightWaitWeight
}

// share returns the most records and bytes p may have in flight while the
// window is shared: an equal part of the window (sizeWindow)
// among the partitions with records in flight or produced to within
// activeFor (p included), and never more than half, so that a partition
// that stalls before any other has records leaves them room. (Counting
// only those with records in flight would leave out healthy partitions,
// whose records are acknowledged within milliseconds, and give stalled
// ones the whole window between them.)
func (s *Sender) share(p *part) (int, int64) {
	n := s.active
	if p.q.n == 0 {
		n++
	}
	n = max(n, s.recent, 2)
	return max(1, s.maxN/n), max(1, s.maxB/int64(n))
}

// activeFor is how long after its last record a partition still counts
// for the shares.
const activeFor = time.Second

// countRecent counts the partitions with records in flight or produced to
// within activeFor. It runs on the cursor tick.
func (s *Sender) countRecent(now time.Time) {
	n, served := 0, 0
	since := now.Add(-activeFor).UnixNano()
	servedSince := now.Add(-s.lagAfter()).UnixNano()
	for _, t := range s.rt.topics {
		for _, p := range t.parts {
			if p.q.n > 0 || p.lastAt > since {
				n++
			}
			if p.q.n > 0 && p.acked > servedSince {
				served++
			}
		}
	}
	s.recent, s.served = n, served
}

// atShare reports whether p holds its share of the window, and may not
// go past it.
//
// A partition that only awaits its turn (awaitsTurn: the others' turns
// have not yet passed it over) is never at its share. The main stream
// produces in WAL order, so a partition held at its share stops every
// record behind it. On a slow cluster with many partitions a turn comes
// round once in many seconds, and the others then drain to a few records
// each: librdkafka sends them in requests of a few records, and the
// broker, whose requests a second are what they are, carries a fraction
// of what the same partitions would carry with full queues (bench/HISTORY.md,
// "where the time goes"). A partition that is stuck is passed over after
// passedOverRounds rounds of the others' turns (or, once nothing else is
// in flight, gets no turn for lagAfter), and from then on is held to its
// share and goes to its lane as before.
//
// A partition that keeps up (keepsUp) may go past its share while the
// window is less than half full: with a hot key, one partition takes a
// large part of the records, and a share of the window per round trip
// would cap the whole stream at a few times that. What partitions hold
// past their shares this way is at most half the window.
func (s *Sender) atShare(p *part) bool {
	if p.q.n == 0 {
		return false
	}
	n, b := s.share(p)
	if p.q.n < n && p.bytes < b {
		return false
	}
	if !p.stalled && s.awaitsTurn(p, s.rt.now) {
		return false
	}
	inN, inB := s.inFlight()
	return inN >= s.maxN/2 || inB >= s.maxB/2 || !s.keepsUp(p)
}

// keepsUp reports whether p may go past its share while the window is
// less than half full: it is not stalled, and it is flowing or its oldest
// record in flight has waited less than lagAfter/keepsUpMargin, inside the
// cluster's own pace (on a cluster where every partition waits its turn
// for a while, none is flowing by flowingFor's measure).
func (s *Sender) keepsUp(p *part) bool {
	return !p.stalled && (s.flowing(p) || p.age(s.rt.now) < s.lagAfter()/keepsUpMargin)
}

// keepsUpMargin keeps a partition that goes past its share clear of
// lagging. A hot key's partition, served at every turn, holds a queue that
// drains from its front: the more it holds, the older its oldest record.
// Were it allowed to grow until that record reached lagAfter, it would
// reach it at its very next record and go to its lane, which reads the
// WAL back for its records only to hand them to the same librdkafka queue
// (bench/HISTORY.md, "head-of-line blocking removed"). Stopping at a
// fraction of lagAfter leaves its turns time to bring it back.
const keepsUpMargin = 2

// flowingFor: a partition that delivered a record within flowingFor and
// whose oldest record in flight is younger keeps up.
const flowingFor = 200 * time.Millisecond

// flowing reports whether p keeps up: not stalled, a delivery within
// flowingFor, and its oldest record in flight younger than that.
func (s *Sender) flowing(p *part) bool {
	now := s.rt.now.UnixNano()
	return !p.stalled && now-p.acked < int64(flowingFor) && now-p.oldestAt() < int64(flowingFor)
}

// accepts reports whether keyless records may go to partition q of t now:
// it is not stalled, no lane carries its records, and it is below its
// share of the window.
func (s *Sender) accepts(t *topicRoute, q int32) bool {
	p := t.part(q)
	return !p.stalled && (p.lane == nil || !p.lane.active) && !s.atShare(p)
}

// lagging reports whether p, at its share, should give its records to its
// lane now; if not yet, the run loop comes back when it should.
func (s *Sender) lagging(p *part) bool {
	if s.mode != normal {
		return false
	}
	after := s.lagAfter()
	if p.age(s.rt.now) >= after {
		if !s.awaitsTurn(p, s.rt.now) {
			return true
		}
		// Waiting its turn: the others' reports bring the loop back and
		// their turns decide; if they stop coming, so does this.
		s.wakeAt(time.Unix(0, s.lastTurn).Add(after))
		return false
	}
	s.wakeAt(time.Unix(0, p.oldestAt()).Add(after))
	return false
}

// unblock is for a window whose ring is full: the record at its low end is
// in flight, and if its partition has not kept up, its lane takes it over.
func (s *Sender) unblock() {
	if p := s.win.lowPart(); p != nil && p.oldestAt() != 0 && s.lagging(p) {
		s.deferPart(p)
	}
}

// open reports whether partition q of t takes keyless records at all: it
// is not stalled and no lane carries its records (it may be busy).
func (s *Sender) open(t *topicRoute, q int32) bool {
	p := t.part(q)
	return !p.stalled && (p.lane == nil || !p.lane.active)
}

// sizeWindow sets the records and bytes the window may hold: MaxInFlight
// and MaxInFlightBytes, or, when the window adapts (MinInFlight,
// MinInFlightBytes), InFlightPerPartition records and
// InFlightBytesPerPartition bytes for each partition of the topics produced
// to since Open, between the minimum and MaxInFlight (MaxInFlightBytes). It runs
// at Open and on the cursor tick. The window's ring grows with it, to
// ringSpan times the window (at least doubling, so that a window that
// creeps up does not copy the ring at every tick), and OnRing tells the
// outcomes ring; the events channel is sized for the maximum at Open.
func (s *Sender) sizeWindow() {
	// A topic's partitions are its count once metadata gave it (a topic
	// with PartitionAny records), else those produced to. Counting only
	// those produced to would keep the window at its minimum while it is
	// full of records for a few partitions and the records for the others
	// wait behind them.
	parts := 0
	for _, t := range s.rt.topics {
		parts += max(int(t.count), len(t.parts))
	}
	s.maxN, s.maxB = s.cfg.MaxInFlight, s.cfg.MaxInFlightBytes
	if m := s.cfg.MinInFlight; m > 0 {
		s.maxN = min(s.maxN, max(m, parts*InFlightPerPartition))
	}
	if m := s.cfg.MinInFlightBytes; m > 0 {
		s.maxB = min(s.maxB, max(m, int64(parts)*InFlightBytesPerPartition))
	}
	if n := len(s.win.slots); ringSpan*s.maxN > n {
		s.win.reserve(min(ringSpan*s.cfg.MaxInFlight, max(ringSpan*s.maxN, 2*n)))
		if s.cfg.OnRing != nil {
			s.cfg.OnRing(len(s.win.slots))
		}
	}
}

// ringSpan: the window's ring holds ringSpan times the records the window
// may have in flight. The ring spans sequences from the oldest record not
// yet acknowledged, and with many partitions that one may wait seconds for
// its partition's turn while records behind it, of other partitions, are
// acknowledged: a ring only as long as the window would then fill with
// them and stop the main stream (bench/HISTORY.md, "where the time goes").
const ringSpan = 2

// initialRing is the window ring's size at Open: ringSpan times the
// window's minimum when it adapts, else ringSpan times its size.
func (c Config) initialRing() int {
	if c.MinInFlight > 0 {
		return ringSpan * min(c.MinInFlight, c.MaxInFlight)
	}
	return ringSpan * c.MaxInFlight
}
