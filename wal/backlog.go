package wal

import "sort"

// segSizes is the segment list as BytesAfter needs it, published by the
// writer with segFirsts: before[i] is the total size of the segments
// ahead of segment i. Sealed segments never change size, so before is
// exact; the tail's size is what the disk account holds beyond them.
type segSizes struct {
	firsts []uint64
	before []int64
}

func (l *Log) publishSizes() {
	segs := l.w.segs.segs
	s := &segSizes{firsts: make([]uint64, len(segs)), before: make([]int64, len(segs))}
	var sum int64
	for i, seg := range segs {
		s.firsts[i], s.before[i] = seg.First, sum
		sum += seg.Bytes
	}
	l.sizes.Store(s)
}

// BytesAfter returns the size on disk of the records after seq, up to
// LastSeq: exact for whole segments, and for the segment holding seq+1 its
// size in proportion to the records of it that lie after seq (off by at
// most a part of that one segment when record sizes vary). It is cheap and
// safe from any goroutine.
func (l *Log) BytesAfter(seq uint64) int64 {
	s := l.sizes.Load()
	last := l.visible.Load()
	if s == nil || len(s.firsts) == 0 || seq >= last {
		return 0
	}
	n := len(s.firsts)
	used := l.disk.usedBytes() - l.ParkedBytes() // the segments' share
	// The segment holding seq+1; -1 when seq+1 lies before the first.
	k := sort.Search(n, func(i int) bool { return s.firsts[i] > seq+1 }) - 1
	if k < 0 {
		return used
	}
	end := last // last sequence of segment k
	if k < n-1 {
		end = s.firsts[k+1] - 1
	}
	size := used - s.before[k] // segment k itself when it is the tail
	if k < n-1 {
		size = s.before[k+1] - s.before[k]
	}
	var part int64
	if count := end - s.firsts[k] + 1; end >= seq+1 && count > 0 {
		part = int64(float64(size) * float64(end-seq) / float64(count))
	}
	rest := int64(0)
	if k < n-1 {
		rest = used - s.before[k+1]
	}
	return max(part+rest, 0)
}
