package wal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

func TestGroupCommitConcurrentAppenders(t *testing.T) {
	checkNoLeak(t)
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

func TestBadInputChangesNothing(t *testing.T) {
	l := openT(t, t.TempDir(), Options{MaxRecordBytes: 1000, SegmentBytes: 64 << 10})
	defer l.Close()
	appendOne(t, l, rec("t", 0))
	cases := []struct {
		name string
		recs []Record
		is   error
	}{
		{"no records", nil, nil},
		{"empty topic", []Record{{Value: []byte("v")}}, nil},
		{"empty topic after good", []Record{rec("t", 1), {Value: []byte("v")}}, nil},
		{"too large", []Record{{Topic: "t", Value: make([]byte, 1000)}}, ErrTooLarge},
		{"bad partition", []Record{{Topic: "t", Partition: -2}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := l.Append(bg, c.recs)
			if err == nil {
				t.Fatal("Append accepted bad input")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("err %v, want %v", err, c.is)
			}
			if l.LastSeq() != 1 {
				t.Fatalf("LastSeq moved to %d", l.LastSeq())
			}
		})
	}
}

func TestAppendAfterClose(t *testing.T) {
	l := openT(t, t.TempDir(), Options{})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(bg, []Record{rec("t", 1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
}

func TestPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	l := openT(t, dir, Options{})
	appendOne(t, l, rec("t", 1))
	if err := l.SetCursor(1); err != nil {
		t.Fatal(err)
	}
	l.Close()
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

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

func TestCursorTornFallsBack(t *testing.T) {
	dir := t.TempDir()
	c, st, err := openCursor(dir, 0o600)
	if err != nil || st.Found {
		t.Fatalf("fresh cursor: %+v, %v", st, err)
	}
	if err := c.store(100); err != nil {
		t.Fatal(err)
	}
	if err := c.store(200); err != nil {
		t.Fatal(err)
	}
	// The next store goes to the slot holding 100; tear it at every length.
	victim := filepath.Join(dir, CursorFiles[c.next])
	full := encodeCursor(c.gen+1, 300)
	for n := 0; n < len(full); n++ {
		if err := os.WriteFile(victim, full[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		st, _, err := LoadCursor(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Found || st.Acked != 200 {
			t.Fatalf("torn at %d bytes: cursor %+v, want the previous value 200", n, st)
		}
		if n > 0 && st.Damaged != 1 {
			t.Fatalf("torn at %d bytes: Damaged %d, want 1", n, st.Damaged)
		}
	}
	os.WriteFile(victim, full, 0o600)
	if st, _, _ := LoadCursor(dir); st.Acked != 300 {
		t.Fatalf("whole write: cursor %d, want 300", st.Acked)
	}
	// A flipped bit anywhere is caught too.
	for i := 0; i < len(full); i++ {
		b := append([]byte(nil), full...)
		b[i] ^= 0x10
		os.WriteFile(victim, b, 0o600)
		if st, _, _ := LoadCursor(dir); st.Acked != 200 {
			t.Fatalf("bit flip at %d: cursor %d, want 200", i, st.Acked)
		}
	}
}

func TestCursorPersistsAndClamps(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	for i := 0; i < 10; i++ {
		appendOne(t, l, rec("t", i))
	}
	if err := l.SetCursor(11); err == nil {
		t.Fatal("SetCursor beyond LastSeq accepted")
	}
	if err := l.SetCursor(7); err != nil {
		t.Fatal(err)
	}
	l.SetCursor(5) // never goes back
	l.Close()
	l, info, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Cursor() != 7 || info.CursorClamped {
		t.Fatalf("cursor %d clamped=%v, want 7", l.Cursor(), info.CursorClamped)
	}
	l.Close()
	// A cursor beyond the log (records lost to an OS crash) is lowered.
	c, _, _ := openCursor(dir, 0o600)
	c.store(50)
	l, info, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Cursor() != 10 || !info.CursorClamped {
		t.Fatalf("cursor %d clamped=%v, want 10 true", l.Cursor(), info.CursorClamped)
	}
}

// fillSegments appends until the log has at least n segment files.
func fillSegments(t *testing.T, l *Log, n int, val []byte) {
	t.Helper()
	for i := 0; l.Stats().Segments < n; i++ {
		if _, err := l.Append(bg, []Record{{Topic: "t", Key: []byte(fmt.Sprint(l.LastSeq() + 1)), Value: val}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTruncationKeepsEverythingAtOrAboveCursor(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 10, MaxDiskBytes: 64 << 20}
	l := openT(t, dir, opts)
	val := make([]byte, 1000)
	fillSegments(t, l, 10, val)
	last := l.LastSeq()
	cursor := last / 2
	if err := l.SetCursor(cursor); err != nil {
		t.Fatal(err)
	}
	l.askTruncate()
	// FirstSeq rises before the files go (readers never ask below it) and
	// DiskBytes falls after: wait until the files, FirstSeq and DiskBytes
	// agree (a deadline, not a sleep: accounting that never agrees fails).
	var segs []SegmentFile
	var onDisk int64
	waitFor(t, 5*time.Second, "truncation, with FirstSeq and DiskBytes matching the files", func() bool {
		segs, _ = ListSegments(dir)
		onDisk = 0
		for _, s := range segs {
			onDisk += s.Bytes
		}
		return l.FirstSeq() > 1 && len(segs) > 0 && segs[0].First == l.FirstSeq() && l.Stats().DiskBytes == onDisk
	})
	if first := l.FirstSeq(); first > cursor+1 {
		t.Fatalf("FirstSeq %d deleted records above the cursor %d", first, cursor)
	}
	// Appends keep working after truncation.
	appendOne(t, l, rec("t", 1))
	l.Close()
	l = openT(t, dir, opts)
	defer l.Close()
	got := readAll(t, l, cursor+1)
	if uint64(len(got)) != last+1-cursor {
		t.Fatalf("after reopen read %d records from the cursor, want %d", len(got), last+1-cursor)
	}
	for i, e := range got {
		if e.Seq != cursor+1+uint64(i) {
			t.Fatalf("gap at %d", e.Seq)
		}
	}
}

func TestDiskCap(t *testing.T) {
	seg := int64(64 << 10)
	val := make([]byte, 2000)
	t.Run("reject", func(t *testing.T) {
		l := openT(t, t.TempDir(), Options{SegmentBytes: seg, MaxDiskBytes: 4 * seg, FullPolicy: Reject})
		defer l.Close()
		var err error
		n := 0
		for ; err == nil; n++ {
			_, err = l.Append(bg, []Record{{Topic: "t", Value: val}})
		}
		if !errors.Is(err, ErrFull) {
			t.Fatalf("err %v, want ErrFull", err)
		}
		if l.LastSeq() != uint64(n-1) {
			t.Fatalf("LastSeq %d after %d accepted appends", l.LastSeq(), n-1)
		}
		if d := l.Stats().DiskBytes; d > 4*seg {
			t.Fatalf("disk %d over cap %d", d, 4*seg)
		}
		// Acknowledging frees room: whole segments go and appends resume.
		if err := l.SetCursor(l.LastSeq()); err != nil {
			t.Fatal(err)
		}
		l.askTruncate()
		waitFor(t, 5*time.Second, "room after truncation", func() bool {
			_, err := l.Append(bg, []Record{{Topic: "t", Value: val}})
			return err == nil
		})
	})
	t.Run("block", func(t *testing.T) {
		l := openT(t, t.TempDir(), Options{SegmentBytes: seg, MaxDiskBytes: 4 * seg})
		defer l.Close()
		// Fill to the cap with a short deadline per append.
		for {
			ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
			_, err := l.Append(ctx, []Record{{Topic: "t", Value: val}})
			cancel()
			if err != nil {
				if !errors.Is(err, ErrFull) {
					t.Fatalf("err %v, want ErrFull", err)
				}
				break
			}
		}
		full := l.LastSeq()
		after := append([]byte("after"), val...)
		// A blocked append resumes once the cursor frees whole segments.
		done := make(chan error, 1)
		var seq uint64
		go func() {
			var err error
			seq, err = l.Append(ctxTimeout(t, 10*time.Second), []Record{{Topic: "t", Value: after}})
			done <- err
		}()
		waitFor(t, 5*time.Second, "the append to block at the cap", func() bool { return l.disk.waiters() == 1 })
		select {
		case err := <-done:
			t.Fatalf("append did not block at the cap: %v", err)
		default:
		}
		if err := l.SetCursor(full); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("blocked append: %v", err)
		}
		if seq != full+1 {
			t.Fatalf("blocked append got seq %d, want %d", seq, full+1)
		}
		e, _ := l.Read(seq, make([]Entry, 0, 1), 1)
		if len(e) != 1 || string(e[0].Record.Value) != string(after) {
			t.Fatalf("read back %+v", e)
		}
	})
	t.Run("close wakes blocked", func(t *testing.T) {
		l := openT(t, t.TempDir(), Options{SegmentBytes: seg, MaxDiskBytes: 4 * seg})
		for {
			ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
			_, err := l.Append(ctx, []Record{{Topic: "t", Value: val}})
			cancel()
			if err != nil {
				break
			}
		}
		done := make(chan error, 1)
		go func() { _, err := l.Append(bg, []Record{{Topic: "t", Value: val}}); done <- err }()
		waitFor(t, 5*time.Second, "the append to block at the cap", func() bool { return l.disk.waiters() == 1 })
		l.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked append after Close: %v, want ErrClosed", err)
		}
	})
}

func TestDeadLetters(t *testing.T) {
	dir := t.TempDir()
	d, cut, err := OpenDeadLetters(dir, 0o600)
	if err != nil || cut != 0 {
		t.Fatal(cut, err)
	}
	now := time.Unix(1700000000, 0)
	for i := 0; i < 3; i++ {
		if err := d.Add(DeadLetter{Seq: uint64(i + 1), Time: now, Err: "MSG_SIZE_TOO_LARGE", Record: rec("t", i)}); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
	// Tear the last frame: it is cut on open and the others remain.
	path := filepath.Join(dir, DeadLetterFile)
	fi, _ := os.Stat(path)
	os.Truncate(path, fi.Size()-3)
	d, cut, err = OpenDeadLetters(dir, 0o600)
	if err != nil || cut == 0 {
		t.Fatalf("reopen: cut %d err %v", cut, err)
	}
	d.Close()
	var got []DeadLetter
	if err := ReadDeadLetters(dir, func(dl DeadLetter) error { got = append(got, dl); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Seq != 2 || got[1].Err != "MSG_SIZE_TOO_LARGE" || !got[1].Time.Equal(now) {
		t.Fatalf("dead letters %+v", got)
	}
	assertRecordEqual(t, got[0].Record, rec("t", 0))
}

// A sealed segment cut short (damage Open does not look for: it checks the
// tail only) makes Read fail with ErrCorrupt instead of panicking.
func TestReadShortSealedSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 10}
	l := openT(t, dir, opts)
	fillSegments(t, l, 3, make([]byte, 1000))
	l.Close()
	segs, _ := ListSegments(dir)
	if err := os.Truncate(segs[0].Path, segs[0].Bytes/2); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, opts)
	defer l.Close()
	_, err := l.Read(segs[1].First-1, make([]Entry, 0, 1), 1)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of a record cut from a sealed segment: %v, want ErrCorrupt", err)
	}
}

// Truncation deletes files without telling tidwall and reopens it only
// every staleSegmentsMax segments. Across many deletions and reopens,
// appends and reads keep working, FirstSeq follows the cursor, and records
// read with ReadShared before a reopen keep their bytes after it.
func TestTruncationReopensLazilyAndSharedReadsStayValid(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 10, MaxDiskBytes: 64 << 20, Sync: SyncNever}
	l := openT(t, dir, opts)
	defer l.Close()
	val := make([]byte, 1000)
	batch := make([]Record, 64) // about one segment per batch
	var held []Entry            // shared reads from before any reopen
	rounds := 2*staleSegmentsMax + 10
	for i := 0; i < rounds; i++ {
		for j := range batch {
			v := append([]byte(nil), val...)
			binary.BigEndian.PutUint64(v, uint64(i*len(batch)+j))
			batch[j] = Record{Topic: "t", Value: v}
		}
		if _, err := l.Append(bg, batch); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			var err error
			held, err = l.ReadShared(1, make([]Entry, 0, 64), 1<<20)
			if err != nil || len(held) != 64 {
				t.Fatalf("shared read: %d entries, %v", len(held), err)
			}
		}
		// Keep the last batch; everything before it is delivered.
		cursor := l.LastSeq() - uint64(len(batch))
		if err := l.SetCursor(cursor); err != nil {
			t.Fatal(err)
		}
		l.askTruncate()
		waitFor(t, 5*time.Second, "truncation", func() bool {
			segs, _ := ListSegments(dir)
			return len(segs) > 0 && segs[0].First == l.FirstSeq() && l.Stats().Segments <= 3
		})
		if first := l.FirstSeq(); first > cursor+1 {
			t.Fatalf("round %d: FirstSeq %d beyond cursor+1 %d", i, first, cursor+1)
		}
		got, err := l.ReadShared(cursor+1, make([]Entry, 0, 64), 1<<20)
		if err != nil || len(got) != len(batch) {
			t.Fatalf("round %d: read %d entries from the cursor: %v", i, len(got), err)
		}
		if n := binary.BigEndian.Uint64(got[0].Record.Value); n != uint64(i*len(batch)) {
			t.Fatalf("round %d: first unacknowledged record holds %d", i, n)
		}
	}
	if _, err := l.Read(1, make([]Entry, 0, 1), 1); err == nil {
		t.Fatal("read below FirstSeq succeeded")
	}
	l.tlMu.RLock()
	tlFirst, _ := l.tl.FirstIndex()
	l.tlMu.RUnlock()
	if tlFirst < uint64(staleSegmentsMax*len(batch)) {
		t.Fatalf("tidwall's first index %d: it was not reopened after %d deleted segments", tlFirst, staleSegmentsMax)
	}
	for j, e := range held {
		if n := binary.BigEndian.Uint64(e.Record.Value); n != uint64(j) || e.Record.Topic != "t" {
			t.Fatalf("shared record %d changed after truncation and reopen: holds %d", j, n)
		}
	}
}

// AppendAt stores its time for records without a timestamp, keeps the
// others', and leaves the caller's records untouched.
func TestAppendAtStampsUnsetTimestamps(t *testing.T) {
	l := openT(t, t.TempDir(), Options{})
	defer l.Close()
	now := time.Unix(1700000000, 123456789)
	own := time.Unix(1600000000, 0)
	recs := []Record{{Topic: "t", Value: []byte("a")}, {Topic: "t", Value: []byte("b"), Timestamp: own}}
	first, err := l.AppendAt(bg, recs, now)
	if err != nil {
		t.Fatal(err)
	}
	if !recs[0].Timestamp.IsZero() {
		t.Fatal("AppendAt modified the caller's record")
	}
	got := readAll(t, l, first)
	if !got[0].Record.Timestamp.Equal(now) || !got[1].Record.Timestamp.Equal(own) {
		t.Fatalf("timestamps %v, %v; want %v, %v", got[0].Record.Timestamp, got[1].Record.Timestamp, now, own)
	}
	// Append (no time) leaves it unset.
	seq := appendOne(t, l, Record{Topic: "t", Value: []byte("c")})
	if ts := readAll(t, l, seq)[0].Record.Timestamp; !ts.IsZero() {
		t.Fatalf("Append stored timestamp %v, want unset", ts)
	}
}

// The writer proves that the file it fsyncs has the bytes it predicts. Here
// tidwall rotates earlier than the segment tracker expects (as a tidwall
// change of rule would make it): the divergence fails appends (under
// SyncAlways, the very append whose bytes went to the unexpected file)
// instead of acknowledging records in a file that was never fsync'd.
func TestTailDivergenceIsCaught(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncPeriodic} {
		t.Run(mode.String(), func(t *testing.T) {
			tidwallSegmentSkew = -32 << 10
			defer func() { tidwallSegmentSkew = 0 }()
			dir := t.TempDir()
			l := openT(t, dir, Options{Sync: mode, SegmentBytes: 64 << 10, SyncInterval: 5 * time.Millisecond, RetryAfterError: time.Hour})
			defer l.Close()
			val := make([]byte, 1000)
			var err error
			deadline := time.Now().Add(10 * time.Second)
			for err == nil && time.Now().Before(deadline) {
				_, err = l.Append(bg, []Record{{Topic: "t", Value: val}})
			}
			var werr *WriteError
			if !errors.As(err, &werr) || !strings.Contains(err.Error(), "diverged") {
				t.Fatalf("appends ended with %v, want a WriteError saying the tracking diverged", err)
			}
			if mode != SyncAlways {
				return
			}
			// Every acknowledged record is in the file the writer fsyncs.
			segs, _ := ListSegments(dir)
			if len(segs) < 2 {
				t.Fatalf("tidwall did not rotate: %d segments", len(segs))
			}
			if acked := l.LastSeq(); acked >= segs[1].First {
				t.Fatalf("acknowledged through %d, but seq %d on went to %s, which was not fsync'd", acked, segs[1].First, segs[1].Path)
			}
		})
	}
}

// The writer syncs the tail before a batch that makes tidwall rotate, so
// that tidwall's own fsync (under the lock readers take) finds little to
// write. rotates must predict exactly the batches apply rotates on.
func TestSegTrackerRotatesPredictsApply(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const limit = 4096
	tr := segTracker{dir: t.TempDir(), limit: limit}
	tr.add(1)
	first, rotations := uint64(1), 0
	for range 20000 {
		framed := make([]int64, 1+rng.IntN(8))
		for i := range framed {
			framed[i] = 1 + rng.Int64N(limit/2)
			if rng.IntN(50) == 0 {
				framed[i] = limit + rng.Int64N(limit) // one entry over a whole segment
			}
		}
		tail := tr.tail().Bytes
		want := tr.rotates(framed)
		created := tr.apply(first, framed)
		if want != (created > 0) {
			t.Fatalf("batch %v on a tail of %d bytes: rotates said %v, apply created %d segments", framed, tail, want, created)
		}
		rotations += created
		first += uint64(len(framed))
	}
	if rotations < 1000 {
		t.Fatalf("only %d rotations: the test did not exercise rotation", rotations)
	}
}

// Under SyncPeriodic and SyncNever the writer starts the tail's writeback
// every writebackChunk bytes, whole pages only, and starts over on each
// new segment.
func TestWritebackStartsEveryChunk(t *testing.T) {
	for _, mode := range []SyncMode{SyncPeriodic, SyncNever, SyncAlways} {
		t.Run(mode.String(), func(t *testing.T) {
			l := openT(t, t.TempDir(), Options{Sync: mode, SegmentBytes: 4 * writebackChunk, SyncInterval: time.Hour})
			val := make([]byte, 1000)
			batch := make([]Record, 100)
			for i := range batch {
				batch[i] = Record{Topic: "t", Value: val}
			}
			for range 6 * writebackChunk / (100 * 1000) { // 1.5 segments
				if _, err := l.Append(bg, batch); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			segs := len(l.w.segs.segs)
			tail := l.w.segs.tail().Bytes
			if segs != 2 {
				t.Fatalf("%d segments, want 2", segs)
			}
			if mode == SyncAlways {
				if l.w.kicked != 0 {
					t.Fatalf("SyncAlways started writeback up to %d; its fsyncs do that", l.w.kicked)
				}
				return
			}
			if k := l.w.kicked; k%(4<<10) != 0 || k > tail || tail-k >= writebackChunk+4<<10 || k == 0 {
				t.Fatalf("writeback started up to %d of the tail's %d bytes, want whole pages within %d of its end", k, tail, writebackChunk)
			}
		})
	}
}

// A tidwall upgrade that renames or retypes the fields presizeTail relies on
// turns presizing off (safely); this makes that loss visible. What tidwall
// does with the fields is not checked at run time: presizeTail was written
// against v1.2.1, so another version must be read again (does anything else
// alias ebuf or epos?) before this test is updated.
func TestTidwallLayoutFound(t *testing.T) {
	if twLayoutErr != nil {
		t.Fatalf("tail buffers are not presized: %v", twLayoutErr)
	}
	// Test binaries carry no module list: read go.mod.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var version string
	for _, line := range strings.Split(string(gomod), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "github.com/tidwall/wal" {
			version = f[1]
		}
		if strings.Contains(line, "github.com/tidwall/wal") && strings.Contains(line, "=>") {
			t.Fatalf("go.mod replaces tidwall/wal (%s): check presizeTail against it", strings.TrimSpace(line))
		}
	}
	if version != "v1.2.1" {
		t.Fatalf("go.mod requires tidwall/wal %q: check presizeTail against it", version)
	}
}

// tidwall's tail buffers get a whole segment's room when the segment starts
// (at a rotation and at open), so they are never reallocated while it fills,
// and every record reads back as written, including those the rotating
// batch put in the new tail before its buffers were replaced.
func TestTailBuffersPresized(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncPeriodic} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Sync: mode, SegmentBytes: 64 << 10, MaxRecordBytes: 4 << 10}
			l := openT(t, dir, opts)
			type bufs struct {
				seg        uint64
				ebuf, epos unsafe.Pointer
				ecap       int
			}
			look := func() bufs {
				l.tlMu.Lock()
				defer l.tlMu.Unlock()
				ebuf, epos := tidwallTail(l.tl)
				return bufs{l.w.segs.tail().First, unsafe.Pointer(unsafe.SliceData(*ebuf)), unsafe.Pointer(unsafe.SliceData(*epos)), cap(*ebuf)}
			}
			want := int(opts.SegmentBytes) + opts.MaxRecordBytes + 10 // under an eighth of a segment
			var seq uint64
			appendSome := func(n int) {
				batch := make([]Record, n)
				for i := range batch {
					v := make([]byte, 900)
					binary.BigEndian.PutUint64(v, seq+uint64(i))
					batch[i] = Record{Topic: "t", Value: v}
				}
				if _, err := l.Append(bg, batch); err != nil {
					t.Fatal(err)
				}
				seq += uint64(n)
			}
			prev := look()
			segsSeen := 0
			for i := 0; i < 200; i++ {
				appendSome(1 + i%13) // batches straddle rotations
				cur := look()
				if cur.ecap < want {
					t.Fatalf("tail segment %d: buffer capacity %d, want at least %d", cur.seg, cur.ecap, want)
				}
				// The first segment's positions have no sealed segment to be
				// sized by (the log opened empty); its bytes are presized.
				if cur.seg == prev.seg && (cur.ebuf != prev.ebuf || cur.epos != prev.epos && segsSeen > 0) {
					t.Fatalf("tail segment %d: buffers reallocated while it filled", cur.seg)
				}
				if cur.seg != prev.seg {
					segsSeen++
				}
				prev = cur
			}
			if segsSeen < 10 {
				t.Fatalf("only %d rotations", segsSeen)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openT(t, dir, opts)
			defer l.Close()
			reopened := look()
			appendSome(3)
			if after := look(); after.ebuf != reopened.ebuf || after.epos != reopened.epos || after.ecap < want {
				t.Fatal("tail buffers not presized at open")
			}
			got, err := l.Read(1, make([]Entry, 0, seq+1), 1<<30)
			if err != nil || uint64(len(got)) != seq {
				t.Fatalf("read %d of %d records: %v", len(got), seq, err)
			}
			for i, e := range got {
				if n := binary.BigEndian.Uint64(e.Record.Value); n != uint64(i) {
					t.Fatalf("record %d holds %d", i+1, n)
				}
			}
		})
	}
}

// holdFsyncs makes the syncer goroutine's fsyncs wait for release (or fail
// with fail, if set) and reports each one on started.
func holdFsyncs(t *testing.T, fail error) (started <-chan struct{}, release func()) {
	st := make(chan struct{}, 100)
	gate := make(chan struct{})
	orig := fdatasyncJob
	fdatasyncJob = func(f *os.File) error {
		select { // never block the syncer on a report nobody reads
		case st <- struct{}{}:
		default:
		}
		<-gate
		if fail != nil {
			return fail
		}
		return orig(f)
	}
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(func() { release(); fdatasyncJob = orig })
	return st, release
}

// Under SyncPeriodic the periodic fsync runs beside the writer: appends go
// on while it is held.
func TestPeriodicFsyncDoesNotHoldAppends(t *testing.T) {
	started, release := holdFsyncs(t, nil)
	l := openT(t, t.TempDir(), Options{Sync: SyncPeriodic, SyncInterval: time.Millisecond})
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

// Under SyncNever (no periodic fsync) the tail is still fsync'd in the
// background once three quarters full, before the fsyncs that seal it.
func TestTailFsyncedBeforeItIsSealed(t *testing.T) {
	started, release := holdFsyncs(t, nil)
	l := openT(t, t.TempDir(), Options{Sync: SyncNever, SegmentBytes: 64 << 10})
	defer l.Close()
	defer release()
	val := make([]byte, 1000)
	for l.w.segs.tail().Bytes < 48<<10 {
		if _, err := l.Append(bg, []Record{{Topic: "t", Value: val}}); err != nil {
			t.Fatal(err)
		}
	}
	if len(l.w.segs.segs) > 1 {
		t.Fatal("the first segment was sealed before three quarters of it were written")
	}
	select { // the writer starts it after answering the append
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("no background fsync at three quarters of a segment")
	}
}

// A failed background fsync under SyncPeriodic fails the log: appends get a
// WriteError until the tail is repaired, and what was written stays
// readable.
func TestPeriodicFsyncFailureFailsTheLog(t *testing.T) {
	started, release := holdFsyncs(t, syscall.EIO)
	l := openT(t, t.TempDir(), Options{Sync: SyncPeriodic, SyncInterval: time.Millisecond, RetryAfterError: time.Hour})
	defer l.Close()
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
}
