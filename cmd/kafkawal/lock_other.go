//go:build !linux

package main

import "github.com/kafkawal/kafkawal/wal"

// lockHolder reports whether a process holds dir's lock, and its pid (0
// when unknown), with wal.LockHolder's brief flock(2) probe.
func lockHolder(dir string) (held bool, pid int, err error) {
	pid = wal.LockHolder(dir)
	return pid != 0, max(pid, 0), nil
}
