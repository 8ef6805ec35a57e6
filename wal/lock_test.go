package wal

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

func TestLockSameProcess(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	_, _, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if pid := LockHolder(dir); pid != os.Getpid() {
		t.Fatalf("LockHolder = %d, want %d", pid, os.Getpid())
	}
	l.Close()
	if pid := LockHolder(dir); pid != 0 {
		t.Fatalf("LockHolder after Close = %d, want 0", pid)
	}
	l = openT(t, dir, Options{}) // released on Close
	l.Close()
}

const lockHelperEnv = "KAFKAWAL_TEST_LOCK_DIR"

func TestLockOtherProcess(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	run := func() int {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
		cmd.Env = append(os.Environ(), lockHelperEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("helper: %v\n%s", err, out)
		}
		return 0
	}
	if code := run(); code != 3 {
		t.Fatalf("helper exit %d while locked, want 3 (ErrLocked)", code)
	}
	l.Close()
	if code := run(); code != 0 {
		t.Fatalf("helper exit %d after Close, want 0 (opened)", code)
	}
}

// TestLockHelperProcess runs only as the child of TestLockOtherProcess.
func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv(lockHelperEnv)
	if dir == "" {
		return // not a child: nothing to do
	}
	l, _, err := Open(dir, Options{})
	if errors.Is(err, ErrLocked) {
		os.Exit(3)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	l.Close()
	os.Exit(0)
}
