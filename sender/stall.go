package sender

import (
	"cmp"
	"slices"
	"time"
)

// checkStalls marks the partitions whose oldest record in flight has
// waited PartitionStallTimeout as stalled: one log line each, their lane
// takes their records, and keyless records go elsewhere. It runs on the
// cursor tick.
func (s *Sender) checkStalls() {
	now := time.Now()
	for _, t := range s.rt.topics {
		for _, p := range t.parts {
			if p.stalled || p.oldestAt() == 0 || p.age(now) < s.cfg.PartitionStallTimeout ||
				now.Sub(time.Unix(0, p.acked)) < s.cfg.PartitionStallTimeout || s.awaitsTurn(p, now) {
				continue // not stalled, or already; or slow but delivering, or waiting its turn
			}
			p.stalled = true
			s.stalledN++
			p.since = time.Unix(0, p.oldestAt())
			if s.mode == normal {
				s.deferPart(p)
			}
			n, b := p.lane.waitingOr(p)
			s.lg.Warn().Str("topic", t.name).Int32("partition", p.id).Time("since", p.since).
				Int("waiting_records", n).Int64("waiting_bytes", b).
				Msg("sender: partition stalled; its records wait, the other partitions go on")
		}
	}
}

// recovered is the first success of a stalled partition.
func (s *Sender) recovered(p *part) {
	p.stalled = false
	s.stalledN--
	n, b := p.lane.waitingOr(p)
	s.lg.Info().Str("topic", p.t.name).Int32("partition", p.id).Dur("stalled_for", time.Since(p.since)).
		Int("waiting_records", n).Int64("waiting_bytes", b).
		Msg("sender: partition accepting records again; delivering its backlog")
}

// waitingOr returns what l waits with, or what p has in flight without a
// lane.
func (l *lane) waitingOr(p *part) (int, int64) {
	if l == nil {
		return p.q.n, p.bytes
	}
	return l.waiting()
}

// PartitionStatus is a partition whose records wait while the others go
// on: stalled, or delivering what waited.
type PartitionStatus struct {
	Topic string `json:"topic"`
	// Partition is PartitionAny (-1) for a topic's keyless records while
	// none of its partitions accepts them.
	Partition int32 `json:"partition"`
	// Stalled: its oldest record in flight has waited
	// PartitionStallTimeout, and none was delivered since. False: it
	// accepts records again and delivers its backlog.
	Stalled bool `json:"stalled"`
	// Since is when the stall began: when its oldest record in flight was
	// produced.
	Since time.Time `json:"since"`
	// Records and Bytes wait: not yet delivered.
	Records int   `json:"records"`
	Bytes   int64 `json:"bytes"`
	// ParkedBytes is the size of its park log: of the disk, what it holds
	// beyond the WAL.
	ParkedBytes int64 `json:"parked_bytes"`
}

// publishPartitions makes the stalled and draining partitions visible to
// Stats.
func (s *Sender) publishPartitions() {
	var ps []PartitionStatus
	for _, t := range s.rt.topics {
		for _, p := range t.parts {
			if !p.stalled {
				continue
			}
			n, b := p.lane.waitingOr(p)
			ps = append(ps, PartitionStatus{Topic: t.name, Partition: p.id, Stalled: true, Since: p.since, Records: n, Bytes: b,
				ParkedBytes: p.lane.parkedBytes()})
		}
	}
	for _, l := range s.lanes {
		switch {
		case l.p != nil && (l.p.stalled || l.park == nil):
		case l.p == nil && !l.active:
		default:
			n, b := l.waiting()
			ps = append(ps, PartitionStatus{Topic: l.t.name, Partition: l.partition(), Stalled: l.p == nil, Since: l.since, Records: n, Bytes: b,
				ParkedBytes: l.parkedBytes()})
		}
	}
	slices.SortFunc(ps, func(a, b PartitionStatus) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	s.partsM.Lock()
	s.parts = ps
	s.partsM.Unlock()
}

// stalledPartitions returns what publishPartitions last published.
func (s *Sender) stalledPartitions() []PartitionStatus {
	s.partsM.Lock()
	defer s.partsM.Unlock()
	return slices.Clone(s.parts)
}
