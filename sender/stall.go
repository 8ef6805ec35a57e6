package sender

import (
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
			if p.stalled || p.q.n == 0 || p.age(now) < s.cfg.PartitionStallTimeout {
				continue
			}
			p.stalled = true
			p.since = time.Unix(0, p.q.front().at)
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
