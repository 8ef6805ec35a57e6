package sender

import (
	"slices"
	"sync"
	"time"
)

// latencies keeps the last latencyWindow durations (of commits) for their
// percentiles in Stats. Written by the sender goroutine once per commit,
// read by Stats.
type latencies struct {
	mu   sync.Mutex
	ring [latencyWindow]time.Duration
	n    int // recorded, up to len(ring)
	at   int // next slot
}

const latencyWindow = 1024

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.ring[l.at] = d
	l.at = (l.at + 1) % len(l.ring)
	l.n = min(l.n+1, len(l.ring))
	l.mu.Unlock()
}

// quantiles returns the 50th and 99th percentiles, zero if none.
func (l *latencies) quantiles() (p50, p99 time.Duration) {
	l.mu.Lock()
	v := slices.Clone(l.ring[:l.n])
	l.mu.Unlock()
	if len(v) == 0 {
		return 0, 0
	}
	slices.Sort(v)
	return v[(len(v)-1)/2], v[(len(v)-1)*99/100]
}
