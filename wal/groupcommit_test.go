package wal

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestGroupCommitConcurrentAppenders(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncPeriodic, SyncNever} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, Options{Sync: mode, SegmentBytes: 64 << 10, MaxDiskBytes: 64 << 20})
			const appenders, each = 64, 50
			var mu sync.Mutex
			owner := map[uint64]string{}
			var wg sync.WaitGroup
			errs := make(chan error, appenders)
			for a := 0; a < appenders; a++ {
				wg.Add(1)
				go func(a int) {
					defer wg.Done()
					for i := 0; i < each; i++ {
						want := fmt.Sprintf("a%d-%d", a, i)
						seq, err := l.Append(bg, []Record{{Topic: "t", Value: []byte(want)}})
						if err != nil {
							errs <- err
							return
						}
						mu.Lock()
						if prev, dup := owner[seq]; dup {
							errs <- fmt.Errorf("seq %d given to %s and %s", seq, prev, want)
						}
						owner[seq] = want
						mu.Unlock()
					}
				}(a)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if got := l.LastSeq(); got != appenders*each {
				t.Fatalf("LastSeq %d, want %d", got, appenders*each)
			}
			entries := readAll(t, l, 1)
			for i, e := range entries {
				if e.Seq != uint64(i+1) {
					t.Fatalf("entry %d has seq %d: gap", i, e.Seq)
				}
				if string(e.Record.Value) != owner[e.Seq] {
					t.Fatalf("seq %d holds %q, its appender wrote %q", e.Seq, e.Record.Value, owner[e.Seq])
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			// Everything survives a reopen and sequences continue.
			l = openT(t, dir, Options{Sync: mode, SegmentBytes: 64 << 10, MaxDiskBytes: 64 << 20})
			defer l.Close()
			if got := len(readAll(t, l, 1)); got != appenders*each {
				t.Fatalf("after reopen %d records, want %d", got, appenders*each)
			}
			if seq := appendOne(t, l, rec("t", 0)); seq != appenders*each+1 {
				t.Fatalf("next seq %d, want %d", seq, appenders*each+1)
			}
		})
	}
}

func TestAppendBatchKeepsOrder(t *testing.T) {
	l := openT(t, t.TempDir(), Options{SegmentBytes: 64 << 10})
	defer l.Close()
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = rec("t", i)
	}
	first, err := l.Append(bg, recs)
	if err != nil || first != 1 {
		t.Fatalf("Append = %d, %v", first, err)
	}
	for i, e := range readAll(t, l, 1) {
		assertRecordEqual(t, e.Record, recs[i])
	}
}

// holdFsyncs makes the fsyncs of the tail of a log opened with opts wait
// for release (or fail with fail, if set) and reports each one on started.
func holdFsyncs(t *testing.T, opts *Options, fail error) (started <-chan struct{}, release func()) {
	st := make(chan struct{}, 100)
	gate := make(chan struct{})
	opts.hooks = &hooks{fdatasync: func(f *os.File) error {
		select { // never block the syncer on a report nobody reads
		case st <- struct{}{}:
		default:
		}
		<-gate
		if fail != nil {
			return fail
		}
		return unix.Fdatasync(int(f.Fd()))
	}}
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return st, release
}

// Under SyncPeriodic the periodic fsync runs beside the writer: appends go
// on while it is held.
func TestPeriodicFsyncDoesNotHoldAppends(t *testing.T) {
	opts := Options{Sync: SyncPeriodic, SyncInterval: time.Millisecond}
	started, release := holdFsyncs(t, &opts, nil)
	l := openT(t, t.TempDir(), opts)
	defer l.Close()
	defer release()
	rec := []Record{{Topic: "t", Value: []byte("v")}}
	if _, err := l.Append(bg, rec); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("no fsync started on the syncer after SyncInterval")
	}
	done := make(chan error, 1)
	go func() {
		for range 100 {
			if _, err := l.Append(bg, rec); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("appends held while the periodic fsync runs")
	}
}

// Under SyncPeriodic and SyncNever, appends were answered before their
// records were fsync'd; Close fsyncs them last. When that fsync fails, the
// call that stopped appends (Close, or StopAppends before it) says so:
// records the caller was told about may not be durable.
func TestFailedFinalFsyncIsReported(t *testing.T) {
	for _, mode := range []SyncMode{SyncPeriodic, SyncNever} {
		for _, stop := range []string{"Close", "StopAppends"} {
			t.Run(mode.String()+"/"+stop, func(t *testing.T) {
				var failing atomic.Bool
				opts := Options{Sync: mode, SyncInterval: time.Hour}
				opts.hooks = &hooks{fdatasync: func(f *os.File) error {
					if failing.Load() {
						return syscall.EIO
					}
					return unix.Fdatasync(int(f.Fd()))
				}}
				l := openT(t, t.TempDir(), opts)
				appendOne(t, l, rec("t", 1))
				failing.Store(true)
				var err error
				if stop == "StopAppends" {
					err = l.StopAppends()
					if cerr := l.Close(); cerr != nil {
						t.Errorf("Close after StopAppends: %v; the failure is StopAppends' to report", cerr)
					}
				} else {
					err = l.Close()
				}
				var werr *WriteError
				if !errors.As(err, &werr) || werr.Op != "fsync" || !errors.Is(err, syscall.EIO) {
					t.Fatalf("%s after a failed final fsync: %v; want a WriteError (fsync) matching EIO", stop, err)
				}
				if err := l.Close(); !errors.Is(err, ErrClosed) {
					t.Fatalf("second Close: %v, want ErrClosed", err)
				}
			})
		}
	}
}
