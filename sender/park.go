package sender

import (
	"fmt"
	"slices"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

// Parking. Once a partition has been stalled for ParkAfter, its lane copies
// the partition's unacknowledged records, with their sequences, into a park
// log (wal.ParkLog, in DIR/park/) and, only once they are synced there,
// stops holding the WAL cursor back for them: the WAL deletes its segments
// behind them as usual, and the disk holds the stalled partition's backlog
// (once in the park log) instead of everyone's. While the stall lasts,
// rounds copy the partition's records the main stream handed the lane
// since, so the WAL stays a few segments long. When the partition accepts
// again, the lane produces from its park log first, then from the WAL from
// where the park log ends; the park log is deleted once every record in it
// is delivered. See doc.go for what a crash at each step costs.

// parked is the part of a lane that lives in a park log.
type parked struct {
	log *wal.ParkLog
	// to: every record of the lane's own below it that was unacknowledged
	// when it was copied is in the park log.
	to uint64
	// last is the last sequence in the park log.
	last uint64
	// skipBelow: at Open, the records of its own below it that the main
	// stream meets are in the park log.
	skipBelow uint64
	round     bool      // a round is being copied
	retryAt   time.Time // after a failed round
	failures  int
}

// parkJob is one round: the lane's owned records not yet parked (again),
// and its records from from to to (exclusive), by filter.
type parkJob struct {
	l      *lane
	log    *wal.ParkLog
	again  []uint64
	from   uint64
	to     uint64
	filter laneFilter
}

type parkDone struct {
	parkJob
	records int
	bytes   int64
	err     error
}

// parker copies rounds on a goroutine of its own: reading the WAL and
// syncing a file must not hold the sender up. It reads the WAL through a
// wal.Reader of its own, a MiB at a time.
type parker struct {
	rd   *wal.Reader
	jobs chan parkJob
	out  chan parkDone
	stop chan struct{}
	exit chan struct{}
}

// parkEvery spaces a stalled lane's rounds: each syncs its park log once.
const parkEvery = time.Second

func newParker(l *wal.Log) *parker {
	p := &parker{
		rd:   l.NewReader(),
		jobs: make(chan parkJob, 1),
		out:  make(chan parkDone, 1),
		stop: make(chan struct{}),
		exit: make(chan struct{}),
	}
	go p.run()
	return p
}

func (p *parker) close() {
	close(p.stop)
	<-p.exit
	p.rd.Close()
}

func (p *parker) run() {
	defer close(p.exit)
	ents := make([]wal.Entry, 0, prefetchEntries)
	var buf []byte
	for {
		var job parkJob
		select {
		case job = <-p.jobs:
		case <-p.stop:
			return
		}
		d := parkDone{parkJob: job}
		d.err = p.copy(&d, ents, &buf)
		if d.err == nil {
			d.err = job.log.Sync()
		}
		if d.err != nil {
			job.log.Abort()
		}
		select {
		case p.out <- d:
		case <-p.stop:
			return
		}
	}
}

func (p *parker) copy(d *parkDone, ents []wal.Entry, buf *[]byte) error {
	again := d.again
	pos := d.from
	if len(again) > 0 {
		pos = min(pos, again[0])
	}
	for pos < d.to {
		select {
		case <-p.stop:
			return fmt.Errorf("kafkawal: parking stopped")
		default:
		}
		var err error
		ents, *buf, err = p.rd.ReadInto(pos, ents[:0], *buf, readBytes)
		if err != nil {
			return err
		}
		if len(ents) == 0 {
			return fmt.Errorf("kafkawal: park: the WAL ends at %d, before %d", pos, d.to)
		}
		for i := range ents {
			e := &ents[i]
			if e.Seq >= d.to {
				return nil
			}
			for len(again) > 0 && again[0] < e.Seq {
				again = again[1:]
			}
			if e.Hole {
				continue
			}
			if (len(again) > 0 && again[0] == e.Seq) || (e.Seq >= d.from && d.filter.match(&e.Record)) {
				if err := d.log.Append(e.Seq, &e.Record); err != nil {
					return err
				}
				d.records++
				d.bytes += int64(e.Size)
			}
		}
		pos = ents[len(ents)-1].Seq + 1
	}
	return nil
}

// parkLanes starts a round for each lane whose partition has been stalled
// for ParkAfter and has records not yet parked. It runs on the cursor
// tick.
func (s *Sender) parkLanes(now time.Time) {
	if s.cfg.ParkAfter < 0 || s.mode != normal {
		return
	}
	var held map[*part]bool // the window's, once a lane has a round to start
	for _, l := range s.lanes {
		if len(s.park.jobs) == cap(s.park.jobs) {
			return
		}
		if !s.stalledFor(l, now, s.cfg.ParkAfter) || (l.park != nil && (l.park.round || now.Before(l.park.retryAt))) {
			continue
		}
		if l.t.anyHigh >= s.win.low {
			// A record of the topic that librdkafka partitioned may be
			// this partition's and still unacknowledged, in the window,
			// not the lane: a park round would leave it out, and after a
			// crash the park log would stand for it (take: skipBelow)
			// while it was never delivered. Found by the crash drill on
			// two real brokers, where metadata came late after a restart
			// and keyed records went out with PartitionAny.
			continue
		}
		var last, to uint64
		if l.park != nil {
			last, to = l.park.last, l.park.to
		}
		job := parkJob{l: l, from: max(l.readPos, to), to: s.win.next, filter: s.filterOf(l)}
		for i := range l.owned {
			if o := &l.owned[i]; o.state != done && !o.parked && o.seq > last {
				job.again = append(job.again, o.seq)
			}
		}
		if !l.active {
			job.from = job.to
		}
		if len(job.again) == 0 && job.from >= job.to {
			continue
		}
		if l.p != nil {
			if held == nil {
				held = s.win.heldParts()
			}
			if held[l.p] {
				// As for a record of the topic that librdkafka
				// partitioned (above), so for one of this partition
				// that the window produced before the lane took over
				// and kept (sent with Opaque, so not among the
				// partition's flights: global isolation): after a crash
				// the park log would stand for it.
				continue
			}
		}
		if l.park == nil {
			pl, err := s.wal.CreatePark(wal.ParkMeta{Topic: l.t.name, Partition: l.partition(), Count: l.t.count, Partitioner: s.partitioner})
			if err != nil {
				s.lg.Error().Err(err).Str("topic", l.t.name).Int32("partition", l.partition()).
					Msg("sender: cannot create a park log; the stalled partition's records stay in the WAL")
				continue
			}
			l.park = &parked{log: pl}
			n, b := l.waiting()
			s.lg.Info().Str("topic", l.t.name).Int32("partition", l.partition()).Int("records", n).Int64("bytes", b).
				Str("dir", pl.Dir()).Msg("sender: parking a stalled partition's records; the WAL behind them will be deleted")
		}
		if l.park.log.Meta().Count <= 0 && l.t.count > 0 {
			if err := l.park.log.SetCount(l.t.count); err != nil {
				s.lg.Error().Err(err).Str("dir", l.park.log.Dir()).Msg("sender: cannot update a park log")
				continue
			}
		}
		job.log = l.park.log
		l.park.round = true
		s.park.jobs <- job
	}
}

// stalledFor reports whether l's partition (for a keyless lane: every
// partition of its topic) has been stalled for d at least.
func (s *Sender) stalledFor(l *lane, now time.Time, d time.Duration) bool {
	if l.p != nil {
		return l.p.stalled && now.Sub(l.p.since) >= d
	}
	if !l.active || now.Sub(l.since) < d {
		return false
	}
	_, ok := s.rt.steer(l.t, s.open)
	return !ok
}

// parkedRound takes a round's outcome: the records it copied are in the
// park log, synced, and no longer hold the WAL cursor.
func (s *Sender) parkedRound(d parkDone) {
	l := d.l
	if l.park == nil || l.park.log != d.log {
		return // the lane let go of that park log meanwhile
	}
	l.park.round = false
	if d.err != nil {
		l.park.failures++
		l.park.retryAt = time.Now().Add(min(maxBackoff, parkEvery<<min(l.park.failures, 5)))
		if l.park.failures == 1 {
			s.lg.Error().Err(d.err).Str("topic", l.t.name).Int32("partition", l.partition()).
				Msg("sender: cannot park a stalled partition's records; retrying (they stay in the WAL)")
		}
		return
	}
	if l.park.failures > 0 {
		s.lg.Info().Str("topic", l.t.name).Int32("partition", l.partition()).Msg("sender: parking again")
	}
	l.park.failures = 0
	l.park.retryAt = time.Now().Add(parkEvery)
	for i := range l.owned {
		o := &l.owned[i]
		if (o.seq >= d.from && o.seq < d.to) || slices.Contains(d.again, o.seq) {
			o.parked = true
		}
	}
	l.park.to = max(l.park.to, d.to)
	_, _, _, last, _ := d.log.Stats()
	l.park.last = max(l.park.last, last)
	// A reader in the WAL below the new end would find its segments gone.
	l.reseek = true
}

// unpark persists each park log's cursor and deletes the park logs whose
// records are all delivered. It runs before the WAL cursor is persisted.
func (s *Sender) unpark() {
	for _, l := range slices.Clone(s.lanes) {
		if l.park == nil || l.park.round {
			continue
		}
		need := l.need()
		if need < l.park.to {
			if need > 1 {
				if err := l.park.log.SetAcked(need - 1); err != nil {
					s.lg.Error().Err(err).Str("dir", l.park.log.Dir()).Msg("sender: cannot persist a park log's cursor")
				}
			}
			continue
		}
		if s.stalledFor(l, time.Now(), 0) {
			continue // more to park soon
		}
		dir := l.park.log.Dir()
		if err := l.park.log.Remove(); err != nil {
			s.lg.Error().Err(err).Str("dir", dir).Msg("sender: cannot remove a delivered park log")
			continue
		}
		s.lg.Info().Str("topic", l.t.name).Int32("partition", l.partition()).
			Msg("sender: a parked partition's records are all delivered; park log removed")
		l.park = nil
		s.maybeDropLane(l)
	}
}

// parkedBytes returns the size of l's park log, 0 without one (or l).
func (l *lane) parkedBytes() int64 {
	if l == nil || l.park == nil {
		return 0
	}
	return l.park.log.Bytes()
}

// resumeParked makes a lane of each park log found at Open: it produces
// the park log's records first, then its partition's records in the WAL
// after them, which the main stream hands it. Records in a park log that
// the main stream meets are skipped.
func (s *Sender) resumeParked() error {
	cursor := s.wal.Cursor()
	for _, pl := range s.wal.Parks() {
		m := pl.Meta()
		if m.Partitioner != s.partitioner {
			return fmt.Errorf("kafkawal: config: Kafka[partitioner]: records of %s/%d are parked in %s, sorted with partitioner %q; set it back until they are delivered",
				m.Topic, m.Partition, pl.Dir(), m.Partitioner)
		}
		t := s.rt.topic(m.Topic)
		if m.Count > 0 {
			t.count = m.Count
		}
		var l *lane
		if m.Partition == wal.PartitionAny {
			if t.keyless != nil {
				return fmt.Errorf("kafkawal: %s: a second park log of %s's keyless records", pl.Dir(), m.Topic)
			}
			l = s.newLane(t, nil)
			t.keyless = l
		} else {
			p := t.part(m.Partition)
			if p.lane != nil {
				return fmt.Errorf("kafkawal: %s: a second park log of %s/%d", pl.Dir(), m.Topic, m.Partition)
			}
			l = s.newLane(t, p)
			p.lane = l
		}
		l.active, l.since, l.start = true, time.Now(), 1
		_, _, _, last, acked := pl.Stats()
		l.park = &parked{log: pl, to: last + 1, last: last, skipBelow: last + 1}
		l.readPos = last + 1
		f := s.filterOf(l)
		r := pl.NewReader()
		var buf []byte
		for seq := acked + 1; ; {
			ents, b, err := r.ReadInto(seq, make([]wal.Entry, 0, prefetchEntries), buf, readBytes)
			buf = b
			if err != nil {
				r.Close()
				return err
			}
			if len(ents) == 0 {
				break
			}
			for i := range ents {
				e := &ents[i]
				l.readPos = min(l.readPos, e.Seq)
				l.pendN++
				l.pendB += int64(e.Size)
				if e.Seq > cursor && !f.match(&e.Record) {
					s.parkSkip = append(s.parkSkip, e.Seq) // its own once: produced from here only
				}
			}
			seq = ents[len(ents)-1].Seq + 1
		}
		r.Close()
		s.lg.Info().Str("topic", m.Topic).Int32("partition", m.Partition).Int("records", l.pendN).Int64("bytes", l.pendB).
			Str("dir", pl.Dir()).Msg("sender: resuming a parked partition: its park log goes first")
	}
	slices.Sort(s.parkSkip)
	return nil
}

// Parked returns the number of records found in park logs at New, not yet
// delivered. Call it before Start.
func (s *Sender) Parked() int {
	n := 0
	for _, l := range s.lanes {
		if l.park != nil {
			n += l.pendN
		}
	}
	return n
}

// skipParked reports whether the main stream's record seq is in a park log
// found at Open without being its lane's by filter (a keyless record its
// stalled partition had in flight).
func (s *Sender) skipParked(seq uint64) bool {
	for len(s.parkSkip) > 0 && s.parkSkip[0] < seq {
		s.parkSkip = s.parkSkip[1:]
	}
	return len(s.parkSkip) > 0 && s.parkSkip[0] == seq
}
