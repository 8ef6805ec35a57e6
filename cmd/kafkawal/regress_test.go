package main

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Regression test for a finding of a review of the second wave: failed on
// 12d6b79; passes since
// 42b2349 (ship serializes a stderr that is not a file) and stays as a
// regression test.

// overlapWriter counts Write calls that run while another is running.
type overlapWriter struct {
	active, overlaps atomic.Int32
	mu               sync.Mutex
	buf              bytes.Buffer
}

func (w *overlapWriter) Write(b []byte) (int, error) {
	if w.active.Add(1) > 1 {
		w.overlaps.Add(1)
	}
	// Writing to a terminal or a pipe takes time too; this makes the
	// window visible without the race detector.
	time.Sleep(2 * time.Millisecond)
	w.mu.Lock()
	w.buf.Write(b)
	w.mu.Unlock()
	w.active.Add(-1)
	return len(b), nil
}

// ship writes its progress and messages to stderr from its own goroutine
// while the library's goroutines log to the same stderr through
// switchWriter, whose mutex only orders the log lines among themselves:
// the two write at once (the data race `go test -race -run TestShip`
// reports on a bytes.Buffer; interleaved lines on a terminal).
func TestShipStderrWritesDoNotOverlap(t *testing.T) {
	dir := t.TempDir()
	writeShipBacklog(t, dir, 1<<20)
	stderr := &overlapWriter{}
	var stdout bytes.Buffer
	o := shipOptions{
		dir: dir,
		// Unreachable: librdkafka logs connection failures (warn and up)
		// while ship prints its progress every second.
		kafka:   kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1", "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 20},
		timeout: 4 * time.Second,
		verbose: true,
	}
	code := ship(context.Background(), o, &stdout, stderr, false)
	if code != exitProblem {
		t.Fatalf("exit %d, want %d\nstdout %s", code, exitProblem, stdout.String())
	}
	if n := stderr.overlaps.Load(); n > 0 {
		t.Fatalf("%d writes to stderr overlapped another (log lines and ship's own output from different goroutines, unsynchronized)", n)
	}
}
