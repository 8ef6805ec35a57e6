package wal

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// A failed background fsync under SyncPeriodic fails the log: appends get a
// WriteError until the tail is repaired, and what was written stays
// readable.
func TestPeriodicFsyncFailureFailsTheLog(t *testing.T) {
	opts := Options{Sync: SyncPeriodic, SyncInterval: time.Millisecond, RetryAfterError: time.Hour}
	started, release := holdFsyncs(t, &opts, syscall.EIO)
	l := openT(t, t.TempDir(), opts)
	if _, err := l.Append(bg, []Record{{Topic: "t", Value: []byte("a")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("no fsync started on the syncer")
	}
	release()
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		_, err = l.Append(bg, []Record{{Topic: "t", Value: []byte("b")}})
	}
	var werr *WriteError
	if !errors.As(err, &werr) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("append after a failed fsync: %v; want a WriteError matching EIO", err)
	}
	if got := readAll(t, l, 1); len(got) == 0 || string(got[0].Record.Value) != "a" {
		t.Fatalf("after the failure read %d records", len(got))
	}
	// "a" was answered before it was fsync'd, and the log is still failed:
	// Close cannot say it is durable.
	if err := l.Close(); !errors.As(err, &werr) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Close of a failed SyncPeriodic log: %v; want the WriteError", err)
	}
}
