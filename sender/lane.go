package sender

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

// A lane carries the records of one partition past the main stream while
// that partition does not keep up (see doc.go, "Partial outages"): the main
// stream hands it every record of the partition it meets and goes on with
// the others; the lane produces them, in order, from its own read position
// as the partition takes them, and rejoins the main stream once it has
// caught up with it. The keyless lane of a topic does the same for the
// topic's keyless PartitionAny records while none of its partitions
// accepts them; it produces them to whichever partition accepts again.
//
// What a lane remembers is bounded by the window, never by its backlog:
// the records it owns (produced or taken over and not yet acknowledged,
// at most what it had in flight), a read position, counters, and when its
// partition is parked (park.go) a park log on disk. Its records that the
// main stream handed it are found again by reading the WAL from the read
// position and keeping those of its partition (laneFilter).
type lane struct {
	t *topicRoute
	p *part // nil: the topic's keyless lane

	// active: the main stream hands the lane every record of its own. A
	// lane that has rejoined the main stream lives on, inactive, until the
	// records it owns are acknowledged.
	active bool
	// readPos: every record of its own below it was produced by the lane
	// (or, from start on, by the main stream before the lane took over:
	// then it is acknowledged or owned). Records of its own from readPos
	// on that the main stream handed it wait in the WAL (pendN, pendB).
	start, readPos uint64
	pendN          int
	pendB          int64
	since          time.Time // when it last became active
	// owned: the records the lane answers for that were produced and are
	// not yet acknowledged, by sequence: in flight, or reported failed
	// (free) and to be produced again. Acknowledged ones at the front are
	// dropped.
	owned   []owned
	flightN int
	flightB int64
	freeN   int
	hi      uint64 // past the highest sequence it produced: below it a record is re-sent

	// Reading (catchup.go).
	rd      *laneReader
	gen     uint64
	cur     chunk
	pending []wal.Entry
	// scanned: the reader has read every record below it; those of the
	// lane's own among them are produced, or still in pending.
	scanned uint64
	atEnd   bool // and stopped there, at the end of the log
	// needCount: the reader stopped at scanned, at a record it cannot
	// tell without the topic's partition count (setMeta seeks again).
	needCount bool
	reseek    bool // the reader must seek again before its batches count
	// seekParkTo is the park log's end (park.to) when the reader was last
	// sent to read it first, 0 otherwise: once the reader is past the
	// park log, every record of the lane below it was produced.
	seekParkTo uint64

	// Parking (park.go).
	park *parked
}

// owned is one record a lane answers for.
type owned struct {
	seq    uint64
	ts     int64 // record timestamp, Unix nanos
	size   int32
	state  slotState // inFlight, free (produce again) or done
	parked bool      // in the lane's park log
}

const noSeq = math.MaxUint64

func (l *lane) find(seq uint64) int {
	i, ok := slices.BinarySearchFunc(l.owned, seq, func(o owned, s uint64) int {
		switch {
		case o.seq < s:
			return -1
		case o.seq > s:
			return 1
		}
		return 0
	})
	if !ok {
		return -1
	}
	return i
}

// own adds o, keeping owned in sequence order (it nearly always comes
// last).
func (l *lane) own(o owned) {
	i := len(l.owned)
	for i > 0 && l.owned[i-1].seq > o.seq {
		i--
	}
	l.owned = slices.Insert(l.owned, i, o)
	switch o.state {
	case inFlight:
		l.flightN++
		l.flightB += int64(o.size)
	case free:
		l.freeN++
	}
}

// adopt takes records in flight from the window and other lanes
// (deferPart), in any order, with one sort where own would move the
// records behind each one it inserts.
func (l *lane) adopt(os []owned) {
	for _, o := range os {
		l.flightN++
		l.flightB += int64(o.size)
	}
	l.owned = append(l.owned, os...)
	slices.SortFunc(l.owned, func(a, b owned) int { return cmp.Compare(a.seq, b.seq) })
}

// moving marks, within deferPart only, a lane's record in flight that
// another lane takes over; dropMoving then removes them all at once.
const moving slotState = 255

// dropMoving removes the records marked moving.
func (l *lane) dropMoving() {
	l.owned = slices.DeleteFunc(l.owned, func(o owned) bool { return o.state == moving })
}

// take is the main stream handing the lane a record of its own.
func (l *lane) take(seq uint64, size int) {
	switch {
	case l.park != nil && seq < l.park.skipBelow:
		// In its park log since Open, and counted then.
	case seq < l.start:
		// A record produced by the main stream before the lane took
		// over, reported failed since: the lane produces it again.
		l.own(owned{seq: seq, size: int32(size), state: free})
	case seq < l.readPos:
		// The lane produced it already.
	default:
		l.pendN++
		l.pendB += int64(size)
	}
}

// resolve marks seq reported: acknowledged (ok) or to be produced again.
// It returns the record's size, or false for a record it does not own in
// flight.
func (l *lane) resolve(seq uint64, ok bool) (int32, bool) {
	i := l.find(seq)
	if i < 0 || l.owned[i].state != inFlight {
		return 0, false
	}
	o := &l.owned[i]
	l.flightN--
	l.flightB -= int64(o.size)
	if ok {
		o.state = done
		l.trim()
	} else {
		o.state = free
		l.freeN++
	}
	return o.size, true
}

// trim drops acknowledged records from the front. It reslices rather
// than moving the rest down: a lane of a busy partition owns as many
// records as the window lets it have in flight, and its acknowledgements
// come oldest first, so a copy per acknowledgement made a lane's
// deliveries quadratic in its records in flight (bench/HISTORY.md, "A
// lane's acknowledgements"). append reallocates once the slice reaches
// the end of its array, copying only the records still owned.
func (l *lane) trim() {
	n := 0
	for n < len(l.owned) && l.owned[n].state == done {
		n++
	}
	l.owned = l.owned[n:]
}

// need returns the lowest sequence of its own the lane has not seen
// acknowledged, noSeq if none: the watermark is below it.
func (l *lane) need() uint64 {
	n := uint64(noSeq)
	if len(l.owned) > 0 {
		n = l.owned[0].seq
	}
	if l.active {
		n = min(n, l.readPos)
	}
	return n
}

// hold returns the lowest sequence the lane may still read from the WAL,
// noSeq if none: the WAL cursor stays below it. Records in its park log
// are not read from the WAL.
func (l *lane) hold() uint64 {
	n := uint64(noSeq)
	for i := range l.owned {
		if o := &l.owned[i]; o.state != done && !o.parked {
			n = o.seq
			break
		}
	}
	if l.active {
		from := l.readPos
		if l.park != nil {
			from = max(from, l.park.to)
		}
		n = min(n, from)
	}
	return n
}

// waiting returns the records (and their bytes) of its own not yet
// acknowledged.
func (l *lane) waiting() (int, int64) {
	n, b := l.pendN, l.pendB
	for i := range l.owned {
		if o := &l.owned[i]; o.state != done {
			n++
			b += int64(o.size)
		}
	}
	return n, b
}

// oldest returns the timestamp of its oldest owned record, 0 if none.
func (l *lane) oldest() int64 {
	if len(l.owned) > 0 {
		return l.owned[0].ts
	}
	return 0
}

func (l *lane) partition() int32 {
	if l.p == nil {
		return wal.PartitionAny
	}
	return l.p.id
}

// lane returns the lane of p, made active: the main stream hands it p's
// records from now on, and it takes over p's records in flight (from the
// window and from any other lane), so that none of them holds the
// watermark back from outside it.
func (s *Sender) deferPart(p *part) *lane {
	l := p.lane
	if l == nil {
		l = s.newLane(p.t, p)
		p.lane = l
	}
	if !l.active {
		s.stats.deferred.Add(1)
	}
	s.activate(l)
	s.adoptSolo(p, l)
	// The records move in one pass: taken one at a time out of another
	// lane's owned, or inserted one at a time into l's, each would move
	// the records behind it, and both lanes may hold as many records as
	// the window.
	var moved []owned
	var from []*lane
	for i := 0; i < p.q.n; i++ {
		f := p.q.at(i)
		if f.lane == l {
			continue
		}
		if f.lane == nil {
			size, ts, ok := s.win.handOver(f.seq)
			if !ok {
				continue // not in the window: cannot be
			}
			moved = append(moved, owned{seq: f.seq, ts: ts, size: size, state: inFlight})
			s.laneFlightN++
			s.laneFlightB += int64(size)
		} else {
			src := f.lane
			j := src.find(f.seq)
			if j < 0 || src.owned[j].state != inFlight {
				continue
			}
			o := &src.owned[j]
			moved = append(moved, *o)
			o.state = moving
			src.flightN--
			src.flightB -= int64(o.size)
			if !slices.Contains(from, src) {
				from = append(from, src)
			}
		}
		f.lane = l
	}
	l.adopt(moved)
	for _, src := range from {
		src.dropMoving()
		s.maybeDropLane(src)
	}
	if s.tx != nil {
		s.txnHandOverSent(p, l)
	}
	return l
}

// keylessLane returns t's keyless lane, made active.
func (s *Sender) keylessLane(t *topicRoute) *lane {
	l := t.keyless
	if l == nil {
		l = s.newLane(t, nil)
		t.keyless = l
	}
	s.activate(l)
	return l
}

// activate makes the main stream hand l the records of its own from its
// next on. Those between l's read position and there were produced by the
// main stream: acknowledged, or in flight and taken over by l.
func (s *Sender) activate(l *lane) {
	if l.active {
		return
	}
	l.active = true
	l.since = time.Now()
	l.readPos = max(l.readPos, s.win.next)
	if l.start == 0 {
		l.start = l.readPos
	}
	l.reseek = true
}

func (s *Sender) newLane(t *topicRoute, p *part) *lane {
	l := &lane{t: t, p: p}
	t.lanes++
	s.lanes = append(s.lanes, l)
	return l
}

// setMeta takes a metadata answer. A topic's count can change under its
// lanes only from unknown to known: their readers then look again, with
// the count the main stream now hands them records by.
func (s *Sender) setMeta(a metaAnswer) {
	if !s.rt.setMeta(a.topic, a.md, a.err, s.stats.unreachable.Load()) {
		return
	}
	if t := s.rt.topic(a.topic); t.count > 0 && !t.countWait.IsZero() {
		if t.countWaitLogged {
			s.lg.Info().Str("topic", t.name).Int32("partitions", t.count).
				Msg("sender: the topic's partition count is known; its records go on")
		}
		t.countWait, t.countWaitLogged = time.Time{}, false
	}
	for _, l := range s.lanes {
		if l.t.name == a.topic {
			l.reseek = true
		}
	}
}

// handOver passes the record at the main stream's next to l.
func (s *Sender) handOver(l *lane, e *wal.Entry) {
	s.win.skip()
	l.take(e.Seq, e.Size)
}

// rejoin ends l's catching up: every record of its own below the main
// stream's next was produced, and the main stream produces the rest.
func (s *Sender) rejoin(l *lane) {
	l.active = false
	l.readPos = max(l.readPos, s.win.next)
	l.pendN, l.pendB = 0, 0
	s.stopReading(l)
	s.maybeDropLane(l)
}

// maybeDropLane forgets l once it answers for nothing.
func (s *Sender) maybeDropLane(l *lane) {
	if l.active || len(l.owned) > 0 || l.park != nil {
		return
	}
	s.stopReading(l)
	if l.p != nil {
		l.p.lane = nil
	} else {
		l.t.keyless = nil
	}
	if l.t.lanes--; l.t.lanes == 0 && l.t.nextCount > 0 {
		l.t.count = l.t.nextCount
	}
	s.lanes = slices.DeleteFunc(s.lanes, func(x *lane) bool { return x == l })
}

// resolve marks seq, owned by l (nil: the window), reported.
func (s *Sender) resolve(l *lane, seq uint64, ok bool) bool {
	if l == nil {
		return s.win.resolve(seq, ok)
	}
	size, found := l.resolve(seq, ok)
	if !found {
		return false
	}
	s.laneFlightN--
	s.laneFlightB -= int64(size)
	if ok {
		s.maybeDropLane(l)
	}
	return true
}

// inFlight returns the records (and bytes) handed to librdkafka and not
// yet reported: the window's and the lanes'.
func (s *Sender) inFlight() (int, int64) {
	return s.win.produced + s.laneFlightN, s.win.bytes + s.laneFlightB
}

// hasBudget reports whether one more record may be handed to librdkafka.
func (s *Sender) hasBudget() bool {
	n, b := s.inFlight()
	return n < s.maxN && (b < s.maxB || n == 0)
}

// watermark returns the highest sequence below which every record is
// delivered or dead-lettered.
func (s *Sender) watermark() uint64 {
	low := s.win.low
	for _, l := range s.lanes {
		low = min(low, l.need())
	}
	return low - 1
}

// cursorBound returns the highest sequence the WAL cursor may take: every
// record at or below it is delivered, dead-lettered or in a park log.
func (s *Sender) cursorBound() uint64 {
	low := s.win.low
	for _, l := range s.lanes {
		low = min(low, l.hold())
	}
	return low - 1
}
