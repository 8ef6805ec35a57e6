package wal

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func openT(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, _, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func rec(topic string, i int) Record {
	return Record{Topic: topic, Partition: int32(i % 3), Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("value-%d", i))}
}

func appendOne(t testing.TB, l *Log, r Record) uint64 {
	t.Helper()
	seq, err := l.Append(context.Background(), []Record{r})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return seq
}

// readAll reads every record from seq to LastSeq.
func readAll(t testing.TB, l *Log, from uint64) []Entry {
	t.Helper()
	var out []Entry
	for seq := from; seq <= l.LastSeq(); {
		batch, err := l.Read(seq, make([]Entry, 0, 512), 1<<20)
		if err != nil {
			t.Fatalf("Read(%d): %v", seq, err)
		}
		if len(batch) == 0 {
			t.Fatalf("Read(%d) returned nothing below LastSeq %d", seq, l.LastSeq())
		}
		out = append(out, batch...)
		seq = batch[len(batch)-1].Seq + 1
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var bg = context.Background()

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(bg, d)
	t.Cleanup(cancel)
	return ctx
}
