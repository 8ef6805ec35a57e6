package sender

import "time"

// flight is a record produced to a known partition and not yet reported.
// Reports are attributed to flights by their order in the partition (see
// partition.go).
type flight struct {
	seq  uint64
	at   int64 // when it was produced, Unix nanos (the router's clock)
	size int32
	lane *lane // the lane that owns it; nil: the main stream's window
}

// fifo holds one partition's flights in produce order, in a ring.
type fifo struct {
	buf     []flight
	head, n int
}

func (f *fifo) push(x flight) {
	if f.n == len(f.buf) {
		nb := make([]flight, max(64, 2*len(f.buf)))
		for i := 0; i < f.n; i++ {
			nb[i] = *f.at(i)
		}
		f.buf, f.head = nb, 0
	}
	f.buf[(f.head+f.n)&(len(f.buf)-1)] = x
	f.n++
}

func (f *fifo) pop() (flight, bool) {
	if f.n == 0 {
		return flight{}, false
	}
	x := f.buf[f.head]
	f.buf[f.head] = flight{}
	f.head = (f.head + 1) & (len(f.buf) - 1)
	f.n--
	return x, true
}

// at returns the i-th flight, oldest first.
func (f *fifo) at(i int) *flight { return &f.buf[(f.head+i)&(len(f.buf)-1)] }

// front returns the oldest flight; the fifo must not be empty.
func (f *fifo) front() *flight { return &f.buf[f.head] }

func (f *fifo) reset() {
	clear(f.buf)
	f.head, f.n = 0, 0
}

// part is one partition as the sender sees it: its flights (attributed by
// position), the bytes they hold of the window, the lane that carries its
// records past the main stream when it falls behind (lane.go), and its
// stall (stall.go). The sender goroutine owns it.
type part struct {
	t          *topicRoute
	id         int32
	q          fifo
	bytes      int64 // encoded bytes of q's records
	lastOffset int64 // of the last success reported: the tripwire
	lastAt     int64 // when a record was last produced to it, Unix nanos
	lane       *lane
	// stalled is set when its oldest record in flight has waited
	// PartitionStallTimeout and none was delivered in that time (acked,
	// Unix nanos, is the last delivery), and cleared by the next one;
	// since is when that record was produced.
	stalled bool
	since   time.Time
	acked   int64
	// Turns (noteTurn, share.go): turnMark is Sender.turns at p's last
	// turn, or when its queue last went from empty to not, whichever came
	// last; turnAt is when its last turn began (Sender.now).
	turnMark uint64
	turnAt   int64
	// Isolation (isolate.go): its records below isolateUntil are produced
	// alone; soloSeq is one produced alone whose report is not in yet
	// (soloOut), and nothing else of the partition is produced meanwhile.
	isolateUntil uint64
	soloSeq      uint64
	soloAt       int64 // when it was produced, Unix nanos
	soloOut      bool
}

func newPart(t *topicRoute, id int32) *part { return &part{t: t, id: id, lastOffset: -1} }

// oldestAt returns when p's oldest record in flight was produced (Unix
// nanos; its flights, or its record produced alone), 0 if none.
func (p *part) oldestAt() int64 {
	at := int64(0)
	if p.q.n > 0 {
		at = p.q.front().at
	}
	if p.soloOut && (at == 0 || p.soloAt < at) {
		at = p.soloAt
	}
	return at
}

// age returns how long p's oldest record in flight has waited, 0 if none.
func (p *part) age(now time.Time) time.Duration {
	at := p.oldestAt()
	if at == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, at))
}

// pushFlight records a record produced to p.
func (s *Sender) pushFlight(p *part, f flight) {
	if p.q.n == 0 {
		s.active++
		p.turnMark = s.turns
	}
	p.q.push(f)
	p.bytes += int64(f.size)
	p.lastAt = f.at
}

// popFlight takes p's oldest flight, for its delivery report.
func (s *Sender) popFlight(p *part) (flight, bool) {
	f, ok := p.q.pop()
	if !ok {
		return f, false
	}
	p.bytes -= int64(f.size)
	if p.q.n == 0 {
		s.active--
	}
	return f, true
}
