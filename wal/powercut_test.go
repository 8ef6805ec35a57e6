package wal

import (
	"testing"
	"time"

	"github.com/kafkawal/kafkawal/internal/powercut"
	"github.com/kafkawal/kafkawal/internal/powercut/powercuttest"
)

// Regression tests for what the power-cut drill found: each cuts the power
// on a filesystem that forgets what was not made durable (strict POSIX:
// a directory entry needs an fsync of its directory) and checks that what
// the log acknowledged is still there.

// TestPowerCutKeepsNewDirectories: Open creates the log's directories; an
// acknowledged record must not vanish with them because their parents
// were never fsync'd.
func TestPowerCutKeepsNewDirectories(t *testing.T) {
	m := powercuttest.New(t, powercut.StrictMetadata)
	dir := m.Path("a/b/wal")
	l := openT(t, dir, Options{})
	for i := range 10 {
		appendOne(t, l, rec("t", i))
	}
	m.Cut(powercut.Plain)
	l.Close() // fails after the cut, as the process would have died
	m.Remount()
	l = openT(t, dir, Options{})
	defer l.Close()
	if got := l.LastSeq(); got != 10 {
		t.Fatalf("after the power cut the log ends at %d, want the 10 acknowledged records", got)
	}
}

// TestPowerCutKeepsDeadLetters: a dead letter is acknowledged once Add
// returns; the dead-letter log's name must survive with it.
func TestPowerCutKeepsDeadLetters(t *testing.T) {
	m := powercuttest.New(t, powercut.StrictMetadata)
	dir := m.Path("wal")
	l := openT(t, dir, Options{}) // makes dir durable
	dl, _, err := OpenDeadLetters(dir, DefaultFileMode)
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.Add(DeadLetter{Seq: 1, Time: time.Now(), Err: "refused", Record: rec("t", 1)}); err != nil {
		t.Fatal(err)
	}
	m.Cut(powercut.Plain)
	dl.Close()
	l.Close()
	m.Remount()
	n := 0
	if err := ReadDeadLetters(dir, func(DeadLetter) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d dead letters after the power cut, want the 1 acknowledged", n)
	}
}

// TestCloseAfterFailedFsyncClosesFiles: after an I/O error (here: every
// operation after a power cut) Close still closes every file; tidwall's own
// Close leaves its tail segment open when its fsync fails.
func TestCloseAfterFailedFsyncClosesFiles(t *testing.T) {
	if twFileErr != nil {
		t.Fatalf("tidwall's tail file is not reachable: %v", twFileErr)
	}
	m := powercuttest.New(t, powercut.StrictMetadata)
	l := openT(t, m.Path("wal"), Options{Sync: SyncPeriodic})
	appendOne(t, l, rec("t", 1))
	m.Cut(powercut.Plain)
	if err := l.Close(); err == nil {
		t.Fatal("Close after the power cut reported no error")
	}
	if open := m.OpenFiles(); len(open) > 0 {
		t.Fatalf("files still open after Close: %v", open)
	}
}
