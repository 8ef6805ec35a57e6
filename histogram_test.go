package kafkawal

import (
	"sync"
	"testing"
	"time"
)

func TestBucketOf(t *testing.T) {
	last := HistogramBuckets - 1
	for _, c := range []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, 0},
		{0, 0},
		{time.Microsecond, 0},
		{time.Microsecond + 1, 1},
		{2 * time.Microsecond, 1},
		{2*time.Microsecond + 1, 2},
		{3 * time.Microsecond, 2},
		{4 * time.Microsecond, 2},
		{1000 * time.Microsecond, 10}, // 1 ms in (512µs, 1024µs]
		{HistogramBound(last - 1), last - 1},
		{HistogramBound(last-1) + 1, last},
		{100 * time.Hour, last},
	} {
		if got := bucketOf(c.d); got != c.want {
			t.Errorf("bucketOf(%v) = %d, want %d", c.d, got, c.want)
		}
		// The rule itself: the smallest bound at or above d.
		if c.want < last && (c.d > HistogramBound(c.want) || c.want > 0 && c.d <= HistogramBound(c.want-1)) {
			t.Errorf("case %v: bucket %d is not the smallest bound >= d", c.d, c.want)
		}
	}
}

// TestHistogramObserve: concurrent observations all counted, a snapshot's
// Count is the sum of its buckets, and observing allocates nothing.
func TestHistogramObserve(t *testing.T) {
	var h histogram
	const goroutines, each = 8, 1000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				h.observe(time.Duration(g*each+i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	s := h.snapshot()
	var sum uint64
	for _, c := range s.Counts {
		sum += c
	}
	if s.Count != goroutines*each || sum != s.Count {
		t.Errorf("Count %d, buckets add to %d, want %d", s.Count, sum, goroutines*each)
	}
	n := int64(goroutines * each)
	if want := time.Duration(n*(n-1)/2) * time.Microsecond; s.Sum != want {
		t.Errorf("Sum %v, want %v", s.Sum, want)
	}
	// 0..7999µs: the median is about 4ms, in the bucket up to 4096µs.
	if q := s.Quantile(0.5); q != 4096*time.Microsecond {
		t.Errorf("median bucket %v, want 4.096ms", q)
	}
	if allocs := testing.AllocsPerRun(1000, func() { h.observe(time.Millisecond) }); allocs != 0 {
		t.Errorf("observe allocates %v times", allocs)
	}
}

func TestHistogramQuantileEmptyAndOverflow(t *testing.T) {
	var h histogram
	if q := h.snapshot().Quantile(0.99); q != 0 {
		t.Errorf("empty: %v", q)
	}
	h.observe(200 * time.Hour)
	if q := h.snapshot().Quantile(1); q != HistogramBound(HistogramBuckets-2) {
		t.Errorf("overflow: %v", q)
	}
}

// BenchmarkHistogramObserve is the cost of one observation: alone, and
// from every P at once (appenders contend on the counters' cache lines).
func BenchmarkHistogramObserve(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		var h histogram
		for i := 0; b.Loop(); i++ {
			h.observe(time.Duration(i&0xffff) * time.Microsecond)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var h histogram
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				h.observe(time.Duration(i&0xff) * time.Microsecond)
			}
		})
	})
	b.Run("since+observe", func(b *testing.B) {
		var h histogram
		start := time.Now()
		for b.Loop() {
			h.observe(time.Since(start))
		}
	})
}
