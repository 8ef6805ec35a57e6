package wal

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// The writer proves that the file it fsyncs has the bytes it predicts. Here
// tidwall rotates earlier than the segment tracker expects (as a tidwall
// change of rule would make it): the divergence fails appends (under
// SyncAlways, the very append whose bytes went to the unexpected file)
// instead of acknowledging records in a file that was never fsync'd.
func TestTailDivergenceIsCaught(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncPeriodic} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Sync: mode, SegmentBytes: 64 << 10, SyncInterval: 5 * time.Millisecond, RetryAfterError: time.Hour}
			opts.hooks = &hooks{segmentSkew: -32 << 10}
			l := openT(t, dir, opts)
			defer l.Close()
			val := make([]byte, 1000)
			var err error
			deadline := time.Now().Add(10 * time.Second)
			for err == nil && time.Now().Before(deadline) {
				_, err = l.Append(bg, []Record{{Topic: "t", Value: val}})
			}
			var werr *WriteError
			if !errors.As(err, &werr) || !strings.Contains(err.Error(), "diverged") {
				t.Fatalf("appends ended with %v, want a WriteError saying the tracking diverged", err)
			}
			if mode != SyncAlways {
				return
			}
			// Every acknowledged record is in the file the writer fsyncs.
			segs, _ := ListSegments(dir)
			if len(segs) < 2 {
				t.Fatalf("tidwall did not rotate: %d segments", len(segs))
			}
			if acked := l.LastSeq(); acked >= segs[1].First {
				t.Fatalf("acknowledged through %d, but seq %d on went to %s, which was not fsync'd", acked, segs[1].First, segs[1].Path)
			}
		})
	}
}

// The writer syncs the tail before a batch that makes tidwall rotate, so
// that tidwall's own fsync (under the lock readers take) finds little to
// write. rotates must predict exactly the batches apply rotates on.
func TestSegTrackerRotatesPredictsApply(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const limit = 4096
	tr := segTracker{dir: t.TempDir(), limit: limit}
	tr.add(1)
	first, rotations := uint64(1), 0
	for range 20000 {
		framed := make([]int64, 1+rng.IntN(8))
		for i := range framed {
			framed[i] = 1 + rng.Int64N(limit/2)
			if rng.IntN(50) == 0 {
				framed[i] = limit + rng.Int64N(limit) // one entry over a whole segment
			}
		}
		tail := tr.tail().Bytes
		want := tr.rotates(framed)
		created := tr.apply(first, framed)
		if want != (created > 0) {
			t.Fatalf("batch %v on a tail of %d bytes: rotates said %v, apply created %d segments", framed, tail, want, created)
		}
		rotations += created
		first += uint64(len(framed))
	}
	if rotations < 1000 {
		t.Fatalf("only %d rotations: the test did not exercise rotation", rotations)
	}
}
