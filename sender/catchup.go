package sender

import (
	"slices"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

// laneFilter tells a lane's records from the others: those of its topic
// that go to its partition (explicitly, or hashed by key with the topic's
// partition count), or for a keyless lane the topic's keyless PartitionAny
// records. It runs on the lane's reader goroutine, so it is a value.
type laneFilter struct {
	topic string
	part  int32 // wal.PartitionAny: the keyless lane
	kind  partitionerKind
	count int32
}

func (f laneFilter) match(r *wal.Record) bool {
	if r.Topic != f.topic {
		return false
	}
	if r.Partition != wal.PartitionAny {
		return r.Partition == f.part
	}
	if f.kind.keyless(r.Key) {
		return f.part == wal.PartitionAny
	}
	if f.part == wal.PartitionAny || f.count <= 0 {
		return false
	}
	p, _ := f.kind.hash(r.Key, f.count)
	return p == f.part
}

// knows reports whether match can tell r: not a keyed PartitionAny record
// of a partition lane's topic while the partition count is unknown (a lane
// resumed at Open from an exactly-once checkpoint, before any metadata).
func (f laneFilter) knows(r *wal.Record) bool {
	return r.Topic != f.topic || r.Partition != wal.PartitionAny || f.kind.keyless(r.Key) ||
		f.part == wal.PartitionAny || f.count > 0
}

func (s *Sender) filterOf(l *lane) laneFilter {
	return laneFilter{topic: l.t.name, part: l.partition(), kind: s.rt.kind, count: l.t.count}
}

// laneReader reads a lane's records on a goroutine of its own: the owned
// records to produce again (again) and the records of its own from its
// read position on, from the WAL through a wal.Reader of its own
// (laneSeek). Like the prefetcher it circulates a few buffers, so a lane
// costs at most laneBuffers x laneReadBytes of memory however far behind
// it is; batches that hold none of its records still say how far it read
// (readBatch.end).
type laneReader struct {
	src   *wal.Reader
	out   chan readBatch
	free  chan chunk
	seek  chan laneSeek
	ready chan<- struct{} // the sender's: a batch is waiting in out
	done  chan struct{}
	exit  chan struct{}
}

type laneSeek struct {
	gen     uint64
	from    uint64   // where to read the WAL from
	readPos uint64   // its records from here on are wanted
	again   []uint64 // and these, sorted
	filter  laneFilter
	// With a park log: the park log first, from parkFrom, for its records
	// from readPos on and parkAgain; the WAL after it.
	park      *wal.ParkLog
	parkFrom  uint64
	parkAgain []uint64
}

const (
	laneBuffers   = 2
	laneReadBytes = 512 << 10
	// laneIdleReads: reads without a record of the lane before the reader
	// says how far it got.
	laneIdleReads = 16
)

func newLaneReader(l *wal.Log, ready chan<- struct{}) *laneReader {
	r := &laneReader{
		src:   l.NewReader(),
		out:   make(chan readBatch, laneBuffers),
		free:  make(chan chunk, laneBuffers),
		seek:  make(chan laneSeek, 1),
		ready: ready,
		done:  make(chan struct{}),
		exit:  make(chan struct{}),
	}
	for range laneBuffers {
		r.free <- chunk{ents: make([]wal.Entry, 0, prefetchEntries)}
	}
	go r.run()
	return r
}

func (r *laneReader) seekTo(q laneSeek) {
	for {
		select {
		case r.seek <- q:
			return
		default:
			select {
			case <-r.seek:
			default:
			}
		}
	}
}

func (r *laneReader) recycle(c chunk) {
	if cap(c.ents) > 0 {
		clear(c.ents)
		c.ents = c.ents[:0]
		r.free <- c
	}
}

func (r *laneReader) stop() {
	close(r.done)
	<-r.exit
	r.src.Close()
}

func (r *laneReader) send(b readBatch) {
	r.out <- b // out has room for every buffer
	select {
	case r.ready <- struct{}{}:
	default:
	}
}

func (r *laneReader) run() {
	defer close(r.exit)
	var q laneSeek
	var pos uint64
	var pr *wal.ParkReader // in the park log's phase
	defer func() {
		if pr != nil {
			pr.Close()
		}
	}()
	seek := func(n laneSeek) {
		q, pos = n, n.from
		if pr != nil {
			pr.Close()
			pr = nil
		}
		if q.park != nil {
			pr = q.park.NewReader()
		}
	}
	for {
		if q.gen == 0 || pos == 0 {
			select {
			case n := <-r.seek:
				seek(n)
				continue
			case <-r.done:
				return
			}
		}
		var c chunk
		select {
		case c = <-r.free:
		case n := <-r.seek:
			seek(n)
			continue
		case <-r.done:
			return
		}
		if pr != nil {
			if r.readPark(&q, pr, &c) {
				continue // sent
			}
			pr.Close() // read to its end: the WAL from here
			pr = nil
		}
		again := q.again
		for i := 0; ; i++ {
			ents, data, err := r.src.ReadInto(pos, c.ents[:0], c.data, laneReadBytes)
			c = chunk{ents: ents, data: data}
			if err != nil && len(ents) > 0 {
				err = nil // send what was read; the next read fails on its own
			}
			if err != nil {
				c.ents = c.ents[:0]
				r.send(readBatch{gen: q.gen, chunk: c, err: err, end: pos})
				pos = 0
				break
			}
			if len(ents) == 0 {
				r.send(readBatch{gen: q.gen, chunk: c, end: pos, atEnd: true})
				pos = 0 // wait for the next seek
				break
			}
			kept := ents[:0]
			var unknown uint64 // the first record it cannot tell, 0 if none
			for _, e := range ents {
				for len(again) > 0 && again[0] < e.Seq {
					again = again[1:]
				}
				if e.Hole {
					continue
				}
				if len(again) > 0 && again[0] == e.Seq {
					kept = append(kept, e)
					continue
				}
				if e.Seq < q.readPos {
					continue
				}
				if !q.filter.knows(&e.Record) {
					unknown = e.Seq
					break
				}
				if q.filter.match(&e.Record) {
					kept = append(kept, e)
				}
			}
			c.ents = kept
			if unknown > 0 {
				// Passed over, the record would be taken for another
				// partition's: read no further until a seek with the
				// count.
				r.send(readBatch{gen: q.gen, chunk: c, end: unknown, needCount: true})
				pos = 0
				break
			}
			pos = ents[len(ents)-1].Seq + 1
			if len(kept) > 0 || i == laneIdleReads {
				r.send(readBatch{gen: q.gen, chunk: c, end: pos})
				break
			}
		}
		q.again = again
	}
}

// readPark reads the next records of the park log into c and sends them;
// false when the park log has none left.
func (r *laneReader) readPark(q *laneSeek, pr *wal.ParkReader, c *chunk) bool {
	ents, data, err := pr.ReadInto(q.parkFrom, c.ents[:0], c.data, laneReadBytes)
	*c = chunk{ents: ents, data: data}
	if err != nil && len(ents) == 0 {
		c.ents = c.ents[:0]
		r.send(readBatch{gen: q.gen, chunk: *c, err: err})
		q.gen = 0 // wait for a seek
		return true
	}
	if len(ents) == 0 {
		return false
	}
	again := q.parkAgain
	kept := ents[:0]
	for _, e := range ents {
		for len(again) > 0 && again[0] < e.Seq {
			again = again[1:]
		}
		if e.Seq >= q.readPos || (len(again) > 0 && again[0] == e.Seq) {
			kept = append(kept, e)
		}
	}
	q.parkAgain = again
	q.parkFrom = ents[len(ents)-1].Seq + 1
	c.ents = kept
	r.send(readBatch{gen: q.gen, chunk: *c}) // end 0: nothing said of the WAL
	return true
}

// seekLane (re)starts l's reader at the lowest record it wants: in its
// park log, if it has one, then in the WAL after it.
func (s *Sender) seekLane(l *lane) {
	if l.rd == nil {
		l.rd = newLaneReader(s.wal, s.laneReady)
	}
	var again, parkAgain []uint64
	for i := range l.owned {
		if o := &l.owned[i]; o.state == free && o.parked {
			parkAgain = append(parkAgain, o.seq)
		} else if o.state == free {
			again = append(again, o.seq)
		}
	}
	// After the reader reached the end of the log, it goes on from there;
	// but records it read that the lane has not produced yet (pending: its
	// partition had no room, or the main stream had not reached them) are
	// read again, from the read position.
	// Started at scanned, the reader would never hand them back, and the
	// lane's next record produced after them would move its read position,
	// and with it the watermark and the WAL cursor, past records never
	// delivered.
	from := max(l.readPos, l.scanned)
	if len(l.pending) > 0 {
		from = l.readPos
	}
	q := laneSeek{readPos: l.readPos, again: again, filter: s.filterOf(l)}
	if l.park != nil && (len(parkAgain) > 0 || l.readPos < l.park.to) {
		q.park, q.parkAgain, q.parkFrom = l.park.log, parkAgain, l.readPos
		if len(parkAgain) > 0 {
			q.parkFrom = min(q.parkFrom, parkAgain[0])
		}
		from = max(from, l.park.to)
	}
	if len(again) > 0 {
		from = min(from, again[0])
	}
	q.from = from
	l.seekParkTo = 0
	if q.park != nil {
		l.seekParkTo = l.park.to
	}
	l.gen++
	q.gen = l.gen
	l.rd.seekTo(q)
	l.rd.recycle(l.cur)
	l.cur, l.pending = chunk{}, nil
	l.scanned, l.atEnd, l.needCount = 0, false, false
	if q.park == nil {
		l.scanned = from
	}
	l.reseek = false
}

// stopReading stops l's reader and hands its buffers back.
func (s *Sender) stopReading(l *lane) {
	if l.rd == nil {
		return
	}
	l.rd.stop()
	l.rd, l.cur, l.pending, l.scanned, l.atEnd = nil, chunk{}, nil, 0, false
	l.reseek = true
}

// takeLane accepts a batch from l's reader.
func (s *Sender) takeLane(l *lane, b readBatch) {
	if b.gen != l.gen {
		l.rd.recycle(b.chunk)
		return
	}
	if b.err != nil {
		l.rd.recycle(b.chunk)
		s.lg.Error().Err(b.err).Str("topic", l.t.name).Int32("partition", l.partition()).Uint64("seq", b.end).
			Msg("sender: cannot read the WAL for a lagging partition; retrying")
		l.reseek = true
		s.retryLater()
		return
	}
	l.rd.recycle(l.cur)
	l.cur, l.pending = b.chunk, b.ents
	if b.end > 0 {
		l.scanned = b.end
		if l.seekParkTo > 0 {
			// The reader read the park log to its end and went on in the
			// WAL (only WAL batches say how far they read), and the park
			// log's records were all taken before this batch: every record
			// of the lane below the park log's end was produced. Without
			// this the read position stayed at the last parked record when
			// the partition had none after it, below park.to, and the lane
			// never caught up (caughtUp): its last records held the
			// watermark for good (TestPartialOutageDemo, once in a CI run).
			l.readPos = max(l.readPos, l.seekParkTo)
			l.seekParkTo = 0
		}
	}
	l.atEnd, l.needCount = b.atEnd, b.needCount
}

// wants reports whether l still has e to produce: a record of its own at
// or after its read position, or one it owns to produce again.
func (l *lane) wants(e *wal.Entry) bool {
	if e.Seq >= l.readPos {
		return true
	}
	i := l.find(e.Seq)
	return i >= 0 && l.owned[i].state == free
}

// lanePeek returns l's next record to produce, or nil while its reader has
// none ready.
func (s *Sender) lanePeek(l *lane) *wal.Entry {
	if l.reseek && l.rd != nil {
		// A rewind gave the lane records to produce again, below what it
		// read ahead: what it holds must not go first.
		s.seekLane(l)
	}
	for {
		for len(l.pending) > 0 && !l.wants(&l.pending[0]) {
			l.pending = l.pending[1:]
		}
		if len(l.pending) > 0 {
			return &l.pending[0]
		}
		if l.rd == nil || l.reseek || (l.atEnd && l.scanned < s.win.next) {
			s.seekLane(l)
		}
		select {
		case b := <-l.rd.out:
			s.takeLane(l, b)
			if len(b.ents) == 0 && b.gen == l.gen {
				continue // progress without records: look for more
			}
		default:
			return nil
		}
		if l.reseek {
			return nil // a read failed
		}
	}
}

// fillLanes produces the lanes' records while they and the window have
// room.
func (s *Sender) fillLanes() {
	for i := 0; i < len(s.lanes); i++ {
		l := s.lanes[i]
		s.fillLane(l)
		if i < len(s.lanes) && s.lanes[i] != l {
			i-- // l rejoined and was dropped
		}
	}
}

// fillLane produces l's records in order while its partition takes them.
// A lane whose partition has no room reads nothing.
func (s *Sender) fillLane(l *lane) {
	if !l.active && l.freeN == 0 {
		return
	}
	for s.hasBudget() && !s.globalSolo {
		p := l.p
		if p != nil && p.q.n > 0 && s.atShare(p) {
			return
		}
		e := s.lanePeek(l)
		if e == nil {
			if s.caughtUp(l) && l.scanned >= s.win.next {
				s.rejoin(l)
			} else if l.needCount {
				s.askMeta(l.t, true) // setMeta makes it read on
			}
			return
		}
		i := l.find(e.Seq)
		again := i >= 0 && l.owned[i].state == free
		if !again && e.Seq >= s.win.next {
			// Ahead of the main stream, which has not handed it over yet:
			// every record of its own below the main stream was produced.
			if s.caughtUp(l) {
				s.rejoin(l)
			}
			return
		}
		if p == nil {
			q, ok := s.rt.steer(l.t, s.accepts)
			if !ok {
				return // no partition of the topic accepts yet
			}
			p = l.t.part(q)
		}
		probing := s.tx != nil && l.p != nil && l.p.stalled
		if probing && !s.txnProbeNow(l.p) {
			return // stalled: its records stay out of the transactions (txnstall.go)
		}
		ok, alone := s.gate(p, e.Seq)
		if !ok {
			return // a record produced alone is out (isolate.go)
		}
		if !s.produceLane(l, p, e, i, alone) {
			return
		}
		l.pending = l.pending[1:]
		if probing {
			s.txnProbeSent(l.p)
			return
		}
	}
}

// caughtUp reports whether l may rejoin the main stream (given that all
// its records below the main stream's next were produced): nothing owned
// waits to be produced again, and its partition accepts records.
func (s *Sender) caughtUp(l *lane) bool {
	if !l.active || l.freeN > 0 || (l.park != nil && l.readPos < l.park.to) {
		return false
	}
	if l.p != nil {
		return !l.p.stalled
	}
	_, ok := s.rt.steer(l.t, s.accepts)
	return ok
}

// produceLane produces e, a record of l, to p. i is e's index in l.owned
// if l owns it (to produce again), else -1. It returns false if e was not
// produced and l should wait.
func (s *Sender) produceLane(l *lane, p *part, e *wal.Entry, i int, alone bool) bool {
	global := e.Seq < s.isolateUntil
	part, opaque := p.id, alone
	if global {
		part = e.Record.Partition
	}
	if s.tx != nil && !s.txnMayProduce() {
		return false // no transaction takes records now
	}
	m := s.message(e, part, opaque)
	if err := s.p.Produce(m, nil); err != nil {
		switch classify(err) {
		case permanent:
			if !s.deadLetter(e.Seq, e.Record.Clone(), -1, err) {
				s.retryLater()
				return false
			}
			// Under exactly-once a dead letter is done once a commit
			// covers it (txnlanes.go).
			st := done
			if s.tx != nil {
				st = dead
			}
			if i >= 0 {
				l.owned[i].state = st
				l.freeN--
				l.trim()
			} else {
				if st == dead {
					l.own(owned{seq: e.Seq, ts: e.Record.Timestamp.UnixNano(), size: int32(e.Size), state: dead})
				}
				l.readPos = e.Seq + 1
				l.pendN, l.pendB = max(0, l.pendN-1), max(0, l.pendB-int64(e.Size))
			}
			return true
		case fatal:
			s.fatalError(err)
		default:
			s.retryLater()
		}
		return false
	}
	now := s.rt.now.UnixNano()
	if i >= 0 {
		o := &l.owned[i]
		o.state = inFlight
		l.freeN--
		l.flightN++
		l.flightB += int64(o.size)
		s.stats.resent.Add(1)
	} else {
		if e.Seq < l.hi {
			s.stats.resent.Add(1)
		}
		// Below the park log's end, a record of its own not produced
		// before is in the park log (from where it was just read).
		inPark := l.park != nil && e.Seq < l.park.to
		l.own(owned{seq: e.Seq, ts: e.Record.Timestamp.UnixNano(), size: int32(e.Size), state: inFlight, parked: inPark})
		l.readPos = e.Seq + 1
		l.pendN, l.pendB = max(0, l.pendN-1), max(0, l.pendB-int64(e.Size))
	}
	l.hi = max(l.hi, e.Seq+1)
	if s.tx != nil {
		s.tx.records++
		s.tx.bytes += int64(e.Size)
	}
	s.laneFlightN++
	s.laneFlightB += int64(e.Size)
	switch {
	case alone && global:
		s.producedAlone(nil, e.Seq, l)
	case alone:
		s.producedAlone(p, e.Seq, l)
	default:
		s.pushFlight(p, flight{seq: e.Seq, at: now, size: int32(e.Size), lane: l})
	}
	return true
}

// rewindLanes is the lanes' part of a rewind (nothing is in flight): each
// produces its failed records again, then the rest of its own. A lane
// that had rejoined the main stream takes back its partition's failed
// records from the window too and becomes active again, so that none of
// them is produced before its own.
func (s *Sender) rewindLanes() {
	for _, l := range slices.Clone(s.lanes) {
		if l.freeN == 0 {
			s.maybeDropLane(l)
			continue
		}
		if !l.active && l.p != nil {
			for seq := s.win.low; seq < s.win.hi; seq++ {
				if sl := s.win.at(seq); sl.state == free && sl.p == l.p {
					l.own(owned{seq: seq, ts: sl.ts, size: sl.size, state: free})
					sl.state = done
				}
			}
			l.active = true
			l.readPos = max(l.readPos, s.win.hi)
		}
		l.reseek = true
	}
}

// wakeAt asks the run loop to come back at t at the latest.
func (s *Sender) wakeAt(t time.Time) {
	if s.wake.IsZero() || t.Before(s.wake) {
		s.wake = t
	}
}
