package wal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// answer is one callback of AppendAsync as a test saw it.
type answer struct {
	call int // index of the call, in the order it was made
	seq  uint64
	err  error
}

// answers collects callbacks; it fails the test when a call is answered
// twice.
type answers struct {
	mu   sync.Mutex
	got  []answer
	seen map[int]bool
	dup  []int
}

func newAnswers() *answers { return &answers{seen: map[int]bool{}} }

func (a *answers) callback(call int) func(uint64, error) {
	return func(seq uint64, err error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.seen[call] {
			a.dup = append(a.dup, call)
		}
		a.seen[call] = true
		a.got = append(a.got, answer{call, seq, err})
	}
}

func (a *answers) snapshot() []answer {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]answer(nil), a.got...)
}

func (a *answers) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got)
}

func (a *answers) check(t *testing.T, calls int) []answer {
	t.Helper()
	got := a.snapshot()
	if len(a.dup) > 0 {
		t.Fatalf("calls answered twice: %v", a.dup)
	}
	if len(got) != calls {
		t.Fatalf("%d callbacks for %d calls", len(got), calls)
	}
	return got
}

// asyncCases are the calls TestAppendAsyncOrderAndErrors makes, in turn:
// valid records and each kind of input error.
func asyncCase(i int) (Record, error) {
	r := Record{Topic: "t", Partition: PartitionAny, Value: []byte(fmt.Sprintf("call-%d", i))}
	switch {
	case i%7 == 3:
		r.Topic = ""
		return r, errors.New("empty topic")
	case i%11 == 5:
		r.Value = make([]byte, 5000)
		return r, ErrTooLarge
	case i%13 == 6:
		r.Partition = -2
		return r, errors.New("partition -2")
	}
	return r, nil
}

// One goroutine's calls get increasing sequences and their callbacks in
// call order, each exactly once; bad input reaches the callback with its
// error, in turn, and writes nothing; every good record reads back at the
// sequence its callback got.
func TestAppendAsyncOrderAndErrors(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncPeriodic, SyncNever} {
		t.Run(mode.String(), func(t *testing.T) {
			// A small queue, so that calls also wait for room.
			l := openT(t, t.TempDir(), Options{Sync: mode, MaxRecordBytes: 4096, SegmentBytes: 64 << 10,
				AsyncQueue: 64, AsyncQueueBytes: 8192})
			defer l.Close()
			const calls = 3000
			a := newAnswers()
			for i := range calls {
				r, _ := asyncCase(i)
				l.AppendAsync(bg, &r, time.Time{}, a.callback(i))
			}
			if err := l.AsyncBarrier(ctxTimeout(t, time.Minute)); err != nil {
				t.Fatal(err)
			}
			got := a.check(t, calls)
			var prev uint64
			valid := 0
			for i, g := range got {
				if g.call != i {
					t.Fatalf("callback %d is for call %d: out of order", i, g.call)
				}
				_, want := asyncCase(i)
				switch {
				case want == nil && g.err != nil:
					t.Fatalf("call %d: %v", i, g.err)
				case want == nil:
					if g.seq <= prev {
						t.Fatalf("call %d got seq %d after %d", i, g.seq, prev)
					}
					prev = g.seq
					valid++
				case g.err == nil:
					t.Fatalf("call %d: no error, want %v", i, want)
				case errors.Is(want, ErrTooLarge) && !errors.Is(g.err, ErrTooLarge),
					!errors.Is(want, ErrTooLarge) && !strings.Contains(g.err.Error(), want.Error()):
					t.Fatalf("call %d: error %v, want %v", i, g.err, want)
				}
			}
			if got := l.LastSeq(); got != uint64(valid) {
				t.Fatalf("LastSeq %d, want %d (only good records written)", got, valid)
			}
			if got := l.Stats().Appended; got != uint64(valid) {
				t.Fatalf("Stats.Appended %d, want %d", got, valid)
			}
			entries := readAll(t, l, 1)
			bySeq := map[uint64]int{}
			for _, g := range got {
				if g.err == nil {
					bySeq[g.seq] = g.call
				}
			}
			for _, e := range entries {
				if want := fmt.Sprintf("call-%d", bySeq[e.Seq]); string(e.Record.Value) != want {
					t.Fatalf("seq %d holds %q, want %q", e.Seq, e.Record.Value, want)
				}
			}
		})
	}
}

// Many goroutines at once: every call answered exactly once, each
// goroutine's in its own order, every sequence given once and holding its
// record.
func TestAppendAsyncConcurrent(t *testing.T) {
	l := openT(t, t.TempDir(), Options{Sync: SyncAlways, SegmentBytes: 64 << 10, MaxDiskBytes: 64 << 20,
		MaxRecordBytes: 4096, AsyncQueue: 100, AsyncQueueBytes: 64 << 10})
	defer l.Close()
	const goroutines, each = 8, 500
	a := newAnswers()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := Record{Topic: "t", Partition: PartitionAny, Value: []byte(fmt.Sprintf("g%d-%d", g, i))}
				l.AppendAsync(bg, &r, time.Time{}, a.callback(g*each+i))
			}
		}()
	}
	wg.Wait()
	if err := l.AsyncBarrier(ctxTimeout(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	got := a.check(t, goroutines*each)
	last := make([]int, goroutines)
	lastSeq := make([]uint64, goroutines)
	for g := range last {
		last[g] = -1
	}
	owner := map[uint64]string{}
	for _, ans := range got {
		if ans.err != nil {
			t.Fatalf("call %d: %v", ans.call, ans.err)
		}
		g, i := ans.call/each, ans.call%each
		if i != last[g]+1 || ans.seq <= lastSeq[g] {
			t.Fatalf("goroutine %d: call %d (seq %d) answered after call %d (seq %d)", g, i, ans.seq, last[g], lastSeq[g])
		}
		last[g], lastSeq[g] = i, ans.seq
		if _, dup := owner[ans.seq]; dup {
			t.Fatalf("seq %d given twice", ans.seq)
		}
		owner[ans.seq] = fmt.Sprintf("g%d-%d", g, i)
	}
	for _, e := range readAll(t, l, 1) {
		if string(e.Record.Value) != owner[e.Seq] {
			t.Fatalf("seq %d holds %q, want %q", e.Seq, e.Record.Value, owner[e.Seq])
		}
	}
}

// An Append made after AppendAsync returned gets the higher sequence, and
// an AppendAsync made after Append returned too.
func TestAppendAsyncOrderedWithAppend(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncPeriodic} {
		t.Run(mode.String(), func(t *testing.T) {
			l := openT(t, t.TempDir(), Options{Sync: mode})
			defer l.Close()
			a := newAnswers()
			var syncSeqs []uint64
			for i := range 200 {
				r := rec("t", i)
				l.AppendAsync(bg, &r, time.Time{}, a.callback(i))
				syncSeqs = append(syncSeqs, appendOne(t, l, rec("t", i)))
			}
			if err := l.AsyncBarrier(bg); err != nil {
				t.Fatal(err)
			}
			for i, g := range a.check(t, 200) {
				if g.err != nil {
					t.Fatal(g.err)
				}
				if g.seq >= syncSeqs[i] || (i > 0 && g.seq <= syncSeqs[i-1]) {
					t.Fatalf("call %d: async seq %d, Appends around it %v", i, g.seq, syncSeqs[max(i-1, 0):i+1])
				}
			}
		})
	}
}

// A full queue blocks AppendAsync until room frees up; a context that ends
// while it waits makes it return, and its callback gets the context's
// error, after the callbacks of the calls before it.
func TestAppendAsyncBlocksWhenFull(t *testing.T) {
	opts := Options{Sync: SyncAlways, AsyncQueue: 4}
	started, release := holdFsyncs(t, &opts, nil)
	l := openT(t, t.TempDir(), opts)
	defer l.Close()
	defer release()
	a := newAnswers()
	call := func(ctx context.Context, i int) <-chan struct{} {
		returned := make(chan struct{})
		go func() {
			defer close(returned)
			r := rec("t", i)
			l.AppendAsync(ctx, &r, time.Time{}, a.callback(i))
		}()
		return returned
	}
	for i := range 4 {
		<-call(bg, i)
	}
	<-started // the first group's fsync is held: nothing is answered
	ctx, cancel := context.WithCancel(bg)
	cancelled := call(ctx, 4)
	waitFor(t, 10*time.Second, "call 4 to wait for room", func() bool { return l.asyncWaiting() == 1 })
	cancel()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("AppendAsync did not return when its context ended")
	}
	waiting := call(bg, 5)
	waitFor(t, 10*time.Second, "call 5 to wait for room", func() bool { return l.asyncWaiting() == 1 })
	if n := a.len(); n != 0 {
		t.Fatalf("%d callbacks ran while the first fsync was held", n)
	}
	release()
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("AppendAsync still blocked after room freed up")
	}
	if err := l.AsyncBarrier(ctxTimeout(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	got := a.check(t, 6)
	for i, g := range got {
		if g.call != i {
			t.Fatalf("callback %d is for call %d", i, g.call)
		}
		switch {
		case i == 4 && !errors.Is(g.err, context.Canceled):
			t.Fatalf("call 4: %v, want the context's error", g.err)
		case i != 4 && g.err != nil:
			t.Fatalf("call %d: %v", i, g.err)
		}
	}
	if got[5].seq != got[3].seq+1 {
		t.Fatalf("call 5 got seq %d after %d: the refused call took a sequence", got[5].seq, got[3].seq)
	}
}

// At the disk cap the callback gets ErrFull: at once under Reject, when
// the context ends under Block; nothing is written.
func TestAppendAsyncFull(t *testing.T) {
	for _, policy := range []FullPolicy{Reject, Block} {
		t.Run(policy.String(), func(t *testing.T) {
			l := openT(t, t.TempDir(), Options{Sync: SyncNever, SegmentBytes: 64 << 10, MaxDiskBytes: 256 << 10, FullPolicy: policy})
			defer l.Close()
			big := Record{Topic: "t", Value: make([]byte, 30<<10)}
			for {
				if _, err := l.Append(bg, []Record{big}); err != nil {
					if !errors.Is(err, ErrFull) {
						t.Fatal(err)
					}
					break
				}
				if policy == Block && l.disk.nearlyFull(64<<10) {
					break
				}
			}
			last := l.LastSeq()
			a := newAnswers()
			ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
			defer cancel()
			for i := range 20 {
				l.AppendAsync(ctx, &big, time.Time{}, a.callback(i))
			}
			if err := l.AsyncBarrier(ctxTimeout(t, time.Minute)); err != nil {
				t.Fatal(err)
			}
			got := a.check(t, 20)
			full := 0
			for _, g := range got {
				if g.err != nil {
					if !errors.Is(g.err, ErrFull) {
						t.Fatalf("call %d: %v, want ErrFull", g.call, g.err)
					}
					if policy == Block && !errors.Is(g.err, context.DeadlineExceeded) {
						t.Fatalf("call %d: %v, want it to wrap the context's error", g.call, g.err)
					}
					full++
				}
			}
			if full == 0 {
				t.Fatal("no call hit the cap")
			}
			if got := l.LastSeq() - last; got != uint64(20-full) {
				t.Fatalf("%d records written, %d answered without error", got, 20-full)
			}
		})
	}
}

// A failed fsync reaches every callback of the calls it covered.
func TestAppendAsyncWriteError(t *testing.T) {
	opts := Options{Sync: SyncAlways}
	_, release := holdFsyncs(t, &opts, syscall.EIO)
	l := openT(t, t.TempDir(), opts)
	defer l.Close()
	a := newAnswers()
	for i := range 10 {
		r := rec("t", i)
		l.AppendAsync(bg, &r, time.Time{}, a.callback(i))
	}
	release()
	if err := l.AsyncBarrier(ctxTimeout(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, g := range a.check(t, 10) {
		var werr *WriteError
		if !errors.As(g.err, &werr) {
			t.Fatalf("call %d: %v, want a *WriteError", g.call, g.err)
		}
	}
}

// Close returns only after every callback has run, including callbacks
// of calls still waiting for their fsync when it began; calls made once
// it has begun get ErrClosed (after Close, before AppendAsync returns);
// none is lost or answered twice.
func TestAppendAsyncClose(t *testing.T) {
	opts := Options{Sync: SyncAlways, AsyncQueue: 1000}
	started, release := holdFsyncs(t, &opts, nil)
	l := openT(t, t.TempDir(), opts)
	a := newAnswers()
	var events []string
	var evMu sync.Mutex
	event := func(s string) {
		evMu.Lock()
		events = append(events, s)
		evMu.Unlock()
	}
	const pending = 100
	for i := range pending {
		r := rec("t", i)
		cb := a.callback(i)
		l.AppendAsync(bg, &r, time.Time{}, func(seq uint64, err error) {
			cb(seq, err)
			if i == pending-1 {
				event("last callback")
			}
		})
	}
	<-started
	// Racing appenders: each call answered once, successfully or with
	// ErrClosed.
	var racing sync.WaitGroup
	var raced atomic.Int64
	stop := make(chan struct{})
	for g := range 4 {
		racing.Add(1)
		go func() {
			defer racing.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := rec("t", i)
				raced.Add(1)
				l.AppendAsync(bg, &r, time.Time{}, a.callback(1_000_000*(g+1)+i))
			}
		}()
	}
	closed := make(chan error, 1)
	go func() {
		err := l.Close()
		event("Close returned")
		closed <- err
	}()
	waitFor(t, 10*time.Second, "Close to begin", func() bool {
		select {
		case <-l.done:
			return true
		default:
			return false
		}
	})
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	close(stop)
	racing.Wait()
	evMu.Lock()
	if len(events) != 2 || events[0] != "last callback" {
		t.Fatalf("events %v: Close returned before the callbacks ran", events)
	}
	evMu.Unlock()
	got := a.check(t, pending+int(raced.Load()))
	for _, g := range got[:pending] {
		if g.call >= pending || g.err != nil {
			t.Fatalf("pending call %d: answered %v", g.call, g.err)
		}
	}
	for _, g := range got[pending:] {
		if g.err != nil && !errors.Is(g.err, ErrClosed) {
			t.Fatalf("racing call %d: %v", g.call, g.err)
		}
	}
	// After Close: ErrClosed, on the caller's goroutine, before AppendAsync
	// returns.
	var after error
	r := rec("t", 0)
	l.AppendAsync(bg, &r, time.Time{}, func(_ uint64, err error) { after = err })
	if !errors.Is(after, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed before AppendAsync returns", after)
	}
}

// A call waiting for room when Close begins gets ErrClosed.
func TestAppendAsyncCloseWakesWaiter(t *testing.T) {
	opts := Options{Sync: SyncAlways, AsyncQueue: 2}
	started, release := holdFsyncs(t, &opts, nil)
	l := openT(t, t.TempDir(), opts)
	a := newAnswers()
	for i := range 2 {
		r := rec("t", i)
		l.AppendAsync(bg, &r, time.Time{}, a.callback(i))
	}
	<-started
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		r := rec("t", 2)
		l.AppendAsync(bg, &r, time.Time{}, a.callback(2))
	}()
	waitFor(t, 10*time.Second, "the third call to wait", func() bool { return l.asyncWaiting() == 1 })
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	waitFor(t, 10*time.Second, "Close to begin", func() bool {
		l.async.mu.Lock()
		defer l.async.mu.Unlock()
		return l.async.closed
	})
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	<-returned
	got := a.check(t, 3)
	if got[0].err != nil || got[1].err != nil || !errors.Is(got[2].err, ErrClosed) {
		t.Fatalf("answers %+v, want two sequences then ErrClosed", got)
	}
}

// AppendAsync allocates nothing per call on the steady path, with a
// callback made once.
func TestAppendAsyncAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, mode := range []SyncMode{SyncAlways, SyncPeriodic, SyncNever} {
		t.Run(mode.String(), func(t *testing.T) {
			l := openT(t, t.TempDir(), Options{Sync: mode, SegmentBytes: 256 << 20, MaxDiskBytes: 2 << 30})
			defer l.Close()
			var failed atomic.Value
			cb := func(_ uint64, err error) {
				if err != nil {
					failed.Store(err)
				}
			}
			r := Record{Topic: "t", Partition: PartitionAny, Key: []byte("k"), Value: make([]byte, 100)}
			now := time.Now()
			const perRun = 10000
			run := func() {
				for range perRun {
					l.AppendAsync(bg, &r, now, cb)
				}
			}
			// The rings, the first requests, and the writer's and
			// tidwall's buffers growing to their size.
			for range 5 {
				run()
			}
			if err := l.AsyncBarrier(bg); err != nil {
				t.Fatal(err)
			}
			// Fewer than 1 allocation per run of 10,000 calls, whatever
			// goroutine of the log made it.
			if n := testing.AllocsPerRun(20, run); n > 0 {
				t.Fatalf("%v allocations per %d calls", n, perRun)
			}
			if err := l.AsyncBarrier(bg); err != nil {
				t.Fatal(err)
			}
			if err := failed.Load(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
