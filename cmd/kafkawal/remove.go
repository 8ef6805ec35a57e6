package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/kafkawal/kafkawal/recovery"
	"github.com/kafkawal/kafkawal/wal"
)

// keptError says why ship --remove left DIR in place: it holds something
// that is nowhere else.
type keptError struct{ reason string }

func (e *keptError) Error() string { return e.reason }

// removeShipped deletes dir after ship delivered everything up to last.
// It holds dir's lock while it checks and deletes, so that no producer can
// open dir meanwhile, and it keeps dir when it holds dead letters, mid-log
// damage in quarantine/, or records past the cursor (someone appended
// after ship closed it).
func removeShipped(dir string, last uint64) error {
	lock, err := os.OpenFile(filepath.Join(dir, wal.LockFile), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return &keptError{"another process opened it after the delivery"}
		}
		return err
	}
	if err := checkShipped(dir, last); err != nil {
		return err
	}
	// Renamed away first, so that dir vanishes at once rather than file by
	// file: a half-deleted WAL is never left where a service could open
	// it. A volume mounted at dir cannot be renamed: then it is emptied.
	gone := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".shipped")
	if err := os.Rename(dir, gone); err == nil {
		if err := wal.SyncDir(filepath.Dir(dir)); err != nil {
			return err
		}
		return os.RemoveAll(gone)
	}
	return emptyDir(dir)
}

// checkShipped proves that dir holds nothing undelivered and nothing that
// is the only copy of a record.
func checkShipped(dir string, last uint64) error {
	cur, _, err := wal.LoadCursor(dir)
	if err != nil {
		return err
	}
	rep, err := recovery.Scan(dir, recovery.ScanOptions{TailOnly: true})
	if err != nil && !errors.Is(err, wal.ErrCorrupt) {
		return err
	}
	if end := max(last, rep.LastSeq); cur.Acked < end {
		return &keptError{fmt.Sprintf("its cursor (%d) is behind its last record (%d)", cur.Acked, end)}
	}
	parks, err := wal.VerifyParks(dir)
	if err != nil {
		return err
	}
	for _, p := range parks {
		if p.Undelivered > 0 || p.Err != nil {
			return &keptError{fmt.Sprintf("its park log %s holds %d undelivered %s of a partition that stalled", filepath.Base(p.Dir), p.Undelivered, plural(p.Undelivered, "record", "records"))}
		}
	}
	dead := 0
	if err := wal.ReadDeadLetters(dir, func(wal.DeadLetter) error { dead++; return nil }); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if dead > 0 {
		return &keptError{fmt.Sprintf("its dead-letter log holds %d %s Kafka refused, found nowhere else ('kafkawal dump --dead %s')", dead, plural(dead, "record", "records"), dir)}
	}
	des, err := os.ReadDir(filepath.Join(dir, recovery.QuarantineDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, de := range des {
		// A torn tail (.torn) was never acknowledged; mid-log damage
		// (.corrupt) may hold the remains of records that were.
		if strings.Contains(de.Name(), ".corrupt") {
			return &keptError{fmt.Sprintf("%s/%s holds bytes of damaged records", recovery.QuarantineDir, de.Name())}
		}
	}
	return nil
}

// emptyDir deletes what dir holds, segments first (a directory without
// them is an empty WAL, never a WAL with a hole), the lock file last.
func emptyDir(dir string) error {
	if err := os.RemoveAll(filepath.Join(dir, wal.SegmentsDir)); err != nil {
		return err
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if de.Name() == wal.LockFile {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
			return err
		}
	}
	return os.Remove(filepath.Join(dir, wal.LockFile))
}
