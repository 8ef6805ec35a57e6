package main

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/kafkawal/kafkawal/wal"
)

// procLocks is the kernel's table of file locks; a variable for tests.
var procLocks = "/proc/locks"

// lockHolder reports whether a process holds dir's lock, and its pid (0
// when unknown). It reads the kernel's lock table instead of probing with
// flock(2) as wal.LockHolder does: a probe holds the lock for an instant,
// and a producer starting in that instant would fail with ErrLocked. Where
// the table cannot be read it falls back to wal.LockHolder.
func lockHolder(dir string) (held bool, pid int, err error) {
	path := filepath.Join(dir, wal.LockFile)
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, 0, nil
		}
		return false, 0, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	f, err := os.Open(procLocks)
	if err != nil {
		pid := wal.LockHolder(dir)
		return pid != 0, max(pid, 0), nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: FLOCK  ADVISORY  WRITE 4065 fe:00:9978136 0 EOF
		// 1: -> FLOCK ... is a waiter, not a holder.
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || !sameFile(fields[5], uint64(st.Dev), st.Ino) {
			continue
		}
		pid, _ := strconv.Atoi(fields[4])
		if pid <= 0 {
			// The holder lives in a pid namespace we cannot see; the pid
			// it wrote into the file is the best we have.
			pid = pidInFile(path)
		}
		return true, pid, nil
	}
	if err := sc.Err(); err != nil {
		return false, 0, err
	}
	return false, 0, nil
}

// sameFile matches /proc/locks' "MAJOR:MINOR:INODE" (major and minor in
// hex) against a stat(2) result.
func sameFile(id string, dev, ino uint64) bool {
	parts := strings.Split(id, ":")
	if len(parts) != 3 {
		return false
	}
	maj, err1 := strconv.ParseUint(parts[0], 16, 32)
	mnr, err2 := strconv.ParseUint(parts[1], 16, 32)
	i, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return false
	}
	// glibc's gnu_dev_major and gnu_dev_minor.
	devMajor := (dev>>8)&0xfff | (dev>>32)&0xfffff000
	devMinor := dev&0xff | (dev>>12)&0xffffff00
	return i == ino && maj == devMajor && mnr == devMinor
}

func pidInFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid < 0 {
		return 0
	}
	return pid
}
