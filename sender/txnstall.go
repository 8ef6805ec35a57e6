package sender

import (
	"errors"
	"time"
)

// A partition that stops taking records (partial outages, stall.go) would
// hold every transaction: CommitTransaction waits for every record in it.
// So under exactly-once:
//
//   - A commit is started only once every record of the transaction has
//     its report (CommitTransaction would wait for them anyway). If, while
//     it waits, a partition with records in flight is found stalled
//     (PartitionStallTimeout), the transaction is aborted instead: its
//     records are produced again, those of the stalled partition by its
//     lane.
//   - The lane of a stalled partition produces nothing into the
//     transactions, except, every so often, one record to see whether the
//     partition takes records again (a probe: from PartitionStallTimeout,
//     doubling to maxProbeEvery). A commit waits probeWait at most for the
//     probe's report; without it the transaction is aborted and the
//     partition stays stalled. With it the partition has recovered and its
//     lane delivers its backlog.
//
// The abort of a transaction that holds a stalled partition's records
// purges the producer first: AbortTransaction waits for every record in
// flight, and a broker that does not answer at all would keep it waiting
// until librdkafka's requests to it time out.
//
// Stalled partitions are not parked under exactly-once (ParkAfter is
// refused, and never by default): a park log drained under transactions
// was seen to leave a partition's records undelivered on Apache Kafka
// after the stall, so their records wait in the WAL, which then keeps
// every segment from the stalled partition's oldest record on.
//
// So a partition that stalls costs the others one PartitionStallTimeout
// and one aborted transaction when it is found stalled, and then up to
// probeWait and an aborted transaction per probe; meanwhile their records
// are committed as usual. The stalled partition's records wait in the WAL
// (or its park log), and the checkpoint defers the partition
// (txnlanes.go).

const (
	probeWait     = time.Second
	maxProbeEvery = time.Minute
)

var errStalledInTxn = errors.New("kafkawal: a partition stalled with records in the transaction")

// probe is what the sender knows of a stalled partition's probes.
type probe struct {
	next   time.Time     // the next probe, once no probe is out
	every  time.Duration // the pause before it
	sentAt time.Time     // the probe out, zero if none
}

// txnProbeNow reports whether the stalled partition p's lane may produce
// a probe now.
func (s *Sender) txnProbeNow(p *part) bool {
	t := s.tx
	pr := t.probes[p]
	now := time.Now()
	if pr == nil {
		pr = &probe{every: s.cfg.PartitionStallTimeout, next: now.Add(s.cfg.PartitionStallTimeout)}
		t.probes[p] = pr
	}
	return pr.sentAt.IsZero() && !now.Before(pr.next)
}

// txnProbeSent records that the probe of p was produced.
func (s *Sender) txnProbeSent(p *part) {
	if pr := s.tx.probes[p]; pr != nil {
		pr.sentAt = time.Now()
	}
}

// txnProbesFailed: the transaction holding the probes out was aborted;
// each stalled partition waits twice as long before its next.
func (s *Sender) txnProbesFailed() {
	now := time.Now()
	for _, pr := range s.tx.probes {
		if !pr.sentAt.IsZero() {
			pr.sentAt = time.Time{}
			pr.every = min(2*pr.every, max(maxProbeEvery, s.cfg.PartitionStallTimeout))
			pr.next = now.Add(pr.every)
		}
	}
}

// txnStalledInFlight reports whether a stalled partition has records in
// flight (other than a probe within probeWait): the transaction cannot
// commit until it recovers. It runs on every turn of the loop while a
// commit waits for its reports, so it walks the partitions only when
// some are stalled.
func (s *Sender) txnStalledInFlight(now time.Time) bool {
	if s.stalledN == 0 {
		return false
	}
	for _, t := range s.rt.topics {
		for _, p := range t.parts {
			if !p.stalled || p.q.n == 0 {
				continue
			}
			if pr := s.tx.probes[p]; pr != nil && !pr.sentAt.IsZero() && now.Sub(pr.sentAt) < probeWait {
				continue
			}
			return true
		}
	}
	return false
}

// txnProbeWake is the earliest time a probe is due or overdue, zero if
// none.
func (s *Sender) txnProbeWake() time.Time {
	var at time.Time
	for p, pr := range s.tx.probes {
		if !p.stalled {
			continue
		}
		w := pr.next
		if !pr.sentAt.IsZero() {
			w = pr.sentAt.Add(probeWait)
		}
		if at.IsZero() || w.Before(at) {
			at = w
		}
	}
	return at
}
