package kafkawal

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// HistogramBuckets is the number of buckets of a Histogram: one for each
// upper bound HistogramBound(0..HistogramBuckets-2), 1µs doubling to about
// 72 minutes, and a last one for everything above.
const HistogramBuckets = 34

// HistogramBound returns the inclusive upper bound of bucket i:
// 1µs << i. The last bucket (HistogramBuckets-1) has none.
func HistogramBound(i int) time.Duration { return time.Microsecond << i }

// Histogram is a snapshot of a distribution of durations that the
// producer records as it works (see Latencies).
type Histogram struct {
	// Counts[i] counts the observations above HistogramBound(i-1) and at
	// most HistogramBound(i); the last bucket counts those above every
	// bound.
	Counts [HistogramBuckets]uint64
	// Count is the sum of Counts; Sum the sum of the observations.
	Count uint64
	Sum   time.Duration
}

// Quantile estimates the q-quantile (0 < q <= 1) as the upper bound of the
// bucket that holds it: an overestimate by at most a factor of 2. It is 0
// when there is no observation, and the largest bound when the quantile
// falls in the last bucket.
func (h Histogram) Quantile(q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	rank := uint64(q * float64(h.Count))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.Counts[:HistogramBuckets-1] {
		seen += c
		if seen >= rank {
			return HistogramBound(i)
		}
	}
	return HistogramBound(HistogramBuckets - 2)
}

// Latencies are the durations the producer records inside its append,
// write and delivery paths, since Open. Recording takes a few atomic
// additions: no lock, no allocation.
type Latencies struct {
	// Append: each successful Append or AppendBatch call, from the call to
	// its return (the records durable under Config.Durability; waiting for
	// room at the disk cap included), and each successful AppendAsync
	// call, from the call to its durable callback. One observation per
	// call.
	Append Histogram
	// Fsync: each fdatasync kafkawal runs on the WAL's tail segment (the
	// group commit's under SyncAlways, the periodic and sealing ones
	// otherwise). tidwall/wal's own fsync of a segment it seals is not
	// seen.
	Fsync Histogram
	// Delivery: each delivered record, from its timestamp to its delivery
	// report. The timestamp is the time of Append unless the application
	// set Record.Timestamp; replayed records count the time they waited
	// in the WAL, restarts included. Under ExactlyOnce, to the commit of
	// the record's transaction (when read_committed consumers see it).
	Delivery Histogram
	// Commit: each CommitTransaction under ExactlyOnce, from the call to
	// its return: the flush of what the transaction holds, then the
	// coordinator's commit.
	Commit Histogram
}

// Latencies returns snapshots of the producer's latency histograms. It is
// cheap (a few hundred atomic loads) and safe to call often.
func (p *Producer) Latencies() Latencies {
	return Latencies{
		Append:   p.lat.append.snapshot(),
		Fsync:    p.lat.fsync.snapshot(),
		Delivery: p.lat.delivery.snapshot(),
		Commit:   p.lat.commit.snapshot(),
	}
}

// latencies are the recorders behind Latencies.
type latencies struct {
	append, fsync, delivery, commit histogram
}

// histogram records durations in HistogramBuckets buckets of atomic
// counters. Observations from many goroutines contend only on the
// counters' cache lines.
type histogram struct {
	counts [HistogramBuckets]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

// observe records d (negative counts as 0).
func (h *histogram) observe(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(d)].Add(1)
	h.sum.Add(int64(d))
}

// bucketOf returns the smallest i with d <= HistogramBound(i), or the last
// bucket: for d in (1µs<<(i-1), 1µs<<i], (d-1)/1µs lies in
// [1<<(i-1), 1<<i), whose bit length is i.
func bucketOf(d time.Duration) int {
	if d <= time.Microsecond {
		return 0
	}
	return min(bits.Len64(uint64(d-1)/uint64(time.Microsecond)), HistogramBuckets-1)
}

func (h *histogram) snapshot() Histogram {
	var s Histogram
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
		s.Count += s.Counts[i]
	}
	s.Sum = time.Duration(h.sum.Load())
	return s
}
