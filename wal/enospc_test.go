package wal

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// EnvRequireTmpfs makes the ENOSPC test fail instead of skip when it cannot
// mount a tmpfs. .ci/run sets it: CI runs as root and must run this test.
const EnvRequireTmpfs = "KAFKAWAL_REQUIRE_TMPFS"

// mountTmpfs mounts a tmpfs of size bytes under a temp dir.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		msg := "cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): " + err.Error()
		if os.Getenv(EnvRequireTmpfs) != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func TestENOSPC(t *testing.T) {
	mnt := mountTmpfs(t, "1m")
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 300<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mnt, "wal")
	opts := Options{SegmentBytes: 64 << 10, MaxDiskBytes: 64 << 20, RetryAfterError: 10 * time.Millisecond}
	l := openT(t, dir, opts)
	val := make([]byte, 1000)
	var err error
	for err == nil {
		_, err = l.Append(bg, []Record{{Topic: "t", Value: val}})
	}
	var werr *WriteError
	if !errors.As(err, &werr) || !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrFull) {
		t.Fatalf("append on a full disk: %v; want a *WriteError matching ENOSPC and ErrFull", err)
	}
	good := l.LastSeq()
	if good == 0 {
		t.Fatal("nothing fit before ENOSPC; the test needs a bigger tmpfs")
	}
	// Nothing reported durable was lost, and the failed record is not visible.
	if n := len(readAll(t, l, 1)); uint64(n) != good {
		t.Fatalf("read %d records, %d were acknowledged", n, good)
	}
	// Still no room: appends keep failing, LastSeq does not move.
	if _, err := l.Append(bg, []Record{{Topic: "t", Value: val}}); err == nil {
		t.Fatal("append succeeded on a full disk")
	}
	if l.LastSeq() != good {
		t.Fatalf("LastSeq moved to %d on failed appends", l.LastSeq())
	}
	// Free space: the log repairs its tail and accepts appends again.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	var seq uint64
	waitFor(t, 5*time.Second, "appends to work after space freed", func() bool {
		seq, err = l.Append(bg, []Record{{Topic: "t", Value: []byte("after")}})
		return err == nil
	})
	if seq != good+1 {
		t.Fatalf("first append after repair got seq %d, want %d", seq, good+1)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, opts)
	defer l.Close()
	got := readAll(t, l, 1)
	if uint64(len(got)) != good+1 || string(got[len(got)-1].Record.Value) != "after" {
		t.Fatalf("after reopen: %d records, want %d ending in \"after\"", len(got), good+1)
	}
}
