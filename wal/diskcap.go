package wal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// diskCap accounts the bytes of segment files (used) plus bytes promised to
// appends that are queued but not yet written (reserved), against max.
// Appenders reserve before they queue, so the writer never has to refuse.
type diskCap struct {
	mu       sync.Mutex
	used     int64
	reserved int64
	max      int64
	waiting  int           // appenders blocked in reserve (Block policy)
	freed    chan struct{} // closed and replaced when bytes are freed while appenders wait
	// A full episode runs from the first append refused (or made to wait)
	// at the cap to the next one that fits; onFull and onRoom, if set,
	// are called at its start and end, outside the lock.
	full    episode
	onFull  func()
	onRoom  func(episode)
	answers uint64 // appends answered ErrFull by reserve, ever
}

// episode is one stretch of time the log was full.
type episode struct {
	since   time.Time // zero: not full
	refused uint64    // appends answered ErrFull in it
}

func newDiskCap(used, max int64) *diskCap {
	return &diskCap{used: used, max: max, freed: make(chan struct{})}
}

// reserve takes n bytes or, when they do not fit, fails (Reject) or waits
// until they fit, ctx ends or done closes (Block). pressure is called each
// time a Block waiter starts waiting, to ask for truncation.
func (d *diskCap) reserve(ctx context.Context, n int64, policy FullPolicy, done <-chan struct{}, pressure func()) error {
	for {
		d.mu.Lock()
		if d.used+d.reserved+n <= d.max {
			d.reserved += n
			ended := d.full
			d.full = episode{}
			d.mu.Unlock()
			if !ended.since.IsZero() && d.onRoom != nil {
				d.onRoom(ended)
			}
			return nil
		}
		used, ch := d.used+d.reserved, d.freed
		started := d.full.since.IsZero()
		if started {
			d.full.since = time.Now()
		}
		if policy == Reject {
			d.full.refused++
			d.answers++
			d.mu.Unlock()
			if started && d.onFull != nil {
				d.onFull()
			}
			return fmt.Errorf("%w: %d bytes in use, %d more do not fit under MaxDiskBytes %d", ErrFull, used, n, d.max)
		}
		d.waiting++
		d.mu.Unlock()
		if started && d.onFull != nil {
			d.onFull()
		}
		pressure()
		var err error
		select {
		case <-ch:
		case <-done:
			err = ErrClosed
		case <-ctx.Done():
			err = fmt.Errorf("%w: waited for %d bytes until the context ended: %w", ErrFull, n, context.Cause(ctx))
		}
		d.mu.Lock()
		d.waiting--
		if errors.Is(err, ErrFull) {
			d.full.refused++
			d.answers++
		}
		d.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// fullAnswers returns how many appends reserve answered ErrFull.
func (d *diskCap) fullAnswers() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.answers
}

// reserveParked takes n bytes for a park log, or fails with ErrFull when
// they do not fit under the cap plus slack. Parking frees more than it
// takes (the WAL's segments behind the parked records), so it may go over
// the cap by slack, or it could never start on a full disk.
func (d *diskCap) reserveParked(n, slack int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.used+d.reserved+n > d.max+slack {
		return fmt.Errorf("%w: parking %d bytes: %d in use of MaxDiskBytes %d", ErrFull, n, d.used+d.reserved, d.max)
	}
	d.reserved += n
	return nil
}

// waiters returns how many appenders are blocked at the cap.
func (d *diskCap) waiters() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiting
}

// commit turns a reservation of n bytes into written bytes.
func (d *diskCap) commit(n int64) {
	d.mu.Lock()
	d.reserved -= n
	d.used += n
	d.mu.Unlock()
}

// release returns a reservation that was not written (its append failed)
// and wakes waiters: the room is free again.
func (d *diskCap) release(n int64) {
	d.mu.Lock()
	d.reserved -= n
	d.wakeLocked()
	d.mu.Unlock()
}

// free records n bytes of deleted segment files and wakes waiters.
func (d *diskCap) free(n int64) {
	d.mu.Lock()
	d.used -= n
	d.wakeLocked()
	d.mu.Unlock()
}

// wakeLocked wakes every appender waiting for room; each checks again.
func (d *diskCap) wakeLocked() {
	if d.waiting > 0 {
		close(d.freed)
		d.freed = make(chan struct{})
	}
}

func (d *diskCap) usedBytes() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.used
}

// nearlyFull reports whether less than one segment of room is left, which makes
// truncation urgent.
func (d *diskCap) nearlyFull(segment int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.used+d.reserved+segment > d.max
}
