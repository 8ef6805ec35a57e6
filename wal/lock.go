package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the name of the lock file in a log directory.
const LockFile = "LOCK"

// dirLock holds an exclusive flock(2) on DIR/LOCK for the life of a Log.
// flock locks belong to the open file description, so a second Open in the
// same process is refused too, and the kernel releases the lock when the
// process dies however it dies: no stale lock after SIGKILL.
type dirLock struct{ f *os.File }

func lockDir(dir string, perm os.FileMode) (*dirLock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, perm)
	if err != nil {
		return nil, fmt.Errorf("kafkawal: open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if pid := LockHolder(dir); pid > 0 {
				return nil, fmt.Errorf("%w: %s held by pid %d", ErrLocked, dir, pid)
			}
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("kafkawal: lock %s: %w", path, err)
	}
	// The pid is informational (for `kafkawal inspect`); the flock is the lock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

func (l *dirLock) unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}

// LockHolder returns the pid of the process holding dir's lock, or 0 when
// the directory is not locked. It never takes the lock for longer than the
// probe itself.
func LockHolder(dir string) int {
	path := filepath.Join(dir, LockFile)
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return 0
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return pid
}
