package sender

import "github.com/confluentinc/confluent-kafka-go/v2/kafka"

// Isolation. Kafka answers "record too large" (and other permanent
// errors) for librdkafka's whole batch, so a permanent error is believed
// only for a record sent alone: after one, the failed record's partition
// is isolated up to the highest sequence produced so far, everything is
// rewound (report.go), and the partition's records below that bound are
// produced one at a time, each waiting for the report of the one before;
// the one refused again is dead-lettered. Other partitions go on at full
// speed, so a refused record during a partial outage does not make the
// healthy partitions wait for the stalled one. A failure report without a
// partition isolates every record below the bound, each alone in the
// whole producer, as before partitions were known.

// solo is a record produced alone whose report is not in yet.
type solo struct {
	p    *part // nil: no known partition (nothing else in flight)
	lane *lane // its owner; nil: the window
}

// gate says whether seq, a record to p (nil: not known), may be produced
// now, and whether alone (attributed by Opaque).
func (s *Sender) gate(p *part, seq uint64) (ok, alone bool) {
	if s.globalSolo {
		return false, false
	}
	if seq < s.isolateUntil {
		n, _ := s.inFlight()
		return n == 0, true
	}
	if p == nil {
		return true, false
	}
	if p.soloOut {
		// Wait for the record produced alone, or librdkafka would put the
		// next one in its batch.
		return false, false
	}
	if seq < p.isolateUntil {
		return p.q.n == 0, true
	}
	return true, false
}

// producedAlone records that seq, owned by l (nil: the window), was
// produced alone to p (nil: not known).
func (s *Sender) producedAlone(p *part, seq uint64, l *lane) {
	s.solos[seq] = solo{p: p, lane: l}
	if p == nil {
		s.globalSolo = true
		return
	}
	p.soloSeq, p.soloOut, p.soloAt = seq, true, s.rt.now.UnixNano()
}

// soloReported takes the report of seq if it was produced alone: its
// owner, and true.
func (s *Sender) soloReported(seq uint64) (*lane, bool) {
	so, ok := s.solos[seq]
	if !ok {
		return nil, false
	}
	delete(s.solos, seq)
	if so.p == nil {
		s.globalSolo = false
	} else if so.p.soloSeq == seq {
		so.p.soloOut = false
	}
	return so.lane, true
}

// isolate isolates the partition of a failed record: p when its report
// was attributed by position, else the partition the report names, else
// every record.
func (s *Sender) isolate(p *part, m *kafka.Message) {
	if tp := m.TopicPartition; p == nil && tp.Topic != nil && tp.Partition >= 0 {
		p = s.rt.topic(*tp.Topic).part(tp.Partition)
	}
	if p == nil {
		s.isolateUntil = max(s.isolateUntil, s.win.hi)
		return
	}
	p.isolateUntil = max(p.isolateUntil, s.win.hi)
}

// resetSolos forgets the records produced alone: every report is in (a
// rewind), or will never come (a rebuild).
func (s *Sender) resetSolos() {
	for seq, so := range s.solos {
		if so.p != nil {
			so.p.soloOut = false
		}
		delete(s.solos, seq)
	}
	s.globalSolo = false
}

// adoptSolo gives lane l the record of p produced alone by the window.
func (s *Sender) adoptSolo(p *part, l *lane) {
	if !p.soloOut {
		return
	}
	so, ok := s.solos[p.soloSeq]
	if !ok || so.lane != nil {
		return
	}
	if size, ts, ok := s.win.handOver(p.soloSeq); ok {
		l.own(owned{seq: p.soloSeq, ts: ts, size: size, state: inFlight})
		s.laneFlightN++
		s.laneFlightB += int64(size)
		s.solos[p.soloSeq] = solo{p: p, lane: l}
	}
}
