package sender

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestWindowAdaptsToPartitions: left to its defaults, the window grows by
// InFlightPerPartition records and InFlightBytesPerPartition bytes for
// each partition produced to, between its minimum and its maximum, and the
// fair share divides the window as it is now; a window set stays as set.
func TestWindowAdaptsToPartitions(t *testing.T) {
	open := func(c Config, topics, parts int) *Sender {
		c = c.withDefaults()
		s := &Sender{cfg: c, rt: newRouter(consistent, 0), win: newWindow(1, c.initialRing())}
		for i := range topics {
			tr := s.rt.topic(string(rune('a' + i)))
			for p := range parts {
				tr.part(int32(p))
			}
		}
		s.sizeWindow()
		return s
	}
	cases := []struct {
		name          string
		cfg           Config
		topics, parts int
		n             int
		b             int64
	}{
		{"4 partitions: the minimum", Config{}, 1, 4, DefaultMinInFlight, DefaultMinInFlightBytes},
		{"1 topic x 1,000", Config{}, 1, 1000, 1000 * InFlightPerPartition, 1000 * InFlightBytesPerPartition},
		{"100 topics x 10", Config{}, 100, 10, 1000 * InFlightPerPartition, 1000 * InFlightBytesPerPartition},
		{"5,000 partitions: the maximum", Config{}, 5, 1000, DefaultMaxInFlight, DefaultMaxInFlightBytes},
		{"a window set", Config{MaxInFlight: 1000, MaxInFlightBytes: 1 << 20}, 1, 1000, 1000, 1 << 20},
		{"records set, bytes adapt", Config{MaxInFlight: 1000}, 1, 1000, 1000, 1000 * InFlightBytesPerPartition},
	}
	// A topic whose partition count metadata gave counts all of them,
	// produced to or not yet: the records for the others may wait behind a
	// window full of records for the first few.
	t.Run("1,000 partitions known, 4 produced to", func(t *testing.T) {
		s := open(Config{}, 1, 4)
		s.rt.topic("a").count = 1000
		s.sizeWindow()
		if want := 1000 * InFlightPerPartition; s.maxN != want || len(s.win.slots) < want {
			t.Fatalf("window %d records, ring %d; want %d", s.maxN, len(s.win.slots), want)
		}
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(c.cfg, c.topics, c.parts)
			if s.maxN != c.n || s.maxB != c.b {
				t.Fatalf("window %d records, %d bytes; want %d, %d", s.maxN, s.maxB, c.n, c.b)
			}
			// The ring holds the window, and no more than the larger of
			// twice the window and its size at Open.
			if r := len(s.win.slots); r < s.maxN || r > max(2*s.maxN, c.cfg.withDefaults().initialRing()) {
				t.Errorf("ring of %d slots for a window of %d", r, s.maxN)
			}
			// Every other partition has records in flight; p (none) counts too.
			all := c.topics * c.parts
			s.active = all - 1
			n, b := s.share(s.rt.topic("a").part(0))
			if want := max(1, c.n/all); n != want {
				t.Errorf("share %d records, want %d", n, want)
			}
			if want := max(1, c.b/int64(all)); b != want {
				t.Errorf("share %d bytes, want %d", b, want)
			}
		})
	}
}

// TestAtShareHotPartition: a partition past its share of the window may
// go on while it keeps up (flowing, or its oldest record in flight younger
// than the lag time over keepsUpMargin) and the window is less than half
// full, so that a hot key's partition is not held to an equal part; not
// once its oldest record has waited that long (it is then held, busy,
// before it lags and goes to a lane), nor once stalled, nor past half the
// window (records or bytes), so that partitions that stall hold at most
// half the window beyond their shares.
func TestAtShareHotPartition(t *testing.T) {
	c := Config{MaxInFlight: 1000, MaxInFlightBytes: 1 << 20}.withDefaults()
	s := &Sender{cfg: c, rt: newRouter(consistent, 0), win: newWindow(1, c.initialRing()), mode: normal}
	s.sizeWindow()
	tr := s.rt.topic("a")
	hot := tr.part(0)
	now := time.Now()
	s.rt.now = now
	fill := func(t *testing.T, n int, oldest time.Time) {
		t.Helper()
		hot.q.reset()
		hot.bytes = 0
		for i := range n {
			s.pushFlight(hot, flight{seq: uint64(i + 1), at: oldest.UnixNano(), size: 10})
		}
		s.win.produced, s.win.bytes = n, int64(10*n)
		// pushFlight counted hot as active again; the other 9 have records too.
		s.active, s.recent = 10, 10
		if sn, sb := s.share(hot); sn != 100 || sb != (1<<20)/10 {
			t.Fatalf("share %d records, %d bytes; want 100, %d", sn, sb, (1<<20)/10)
		}
	}
	cases := []struct {
		name     string
		n        int
		oldest   time.Duration // age of the oldest record in flight
		acked    time.Duration // since the last delivery
		winBytes int64         // the window's bytes, if not the hot partition's alone
		want     bool
	}{
		{"below its share", 50, 0, time.Hour, 0, false},
		{"at its share, keeping up, window a tenth full", 100, 10 * time.Millisecond, 5 * time.Millisecond, 0, false},
		{"past its share, keeping up, window below half", 499, 10 * time.Millisecond, 5 * time.Millisecond, 0, false},
		{"keeping up, window half full", 500, 10 * time.Millisecond, 5 * time.Millisecond, 0, true},
		{"keeping up, half the window's bytes", 200, 10 * time.Millisecond, 5 * time.Millisecond, 1 << 19, true},
		{"no delivery for a while, its records fresh", 200, 10 * time.Millisecond, time.Second, 0, false},
		{"no delivery for a while, its oldest record past the lag time", 200, 2 * deferAfter, time.Second, 0, true},
		{"oldest record past the lag time", 200, 2 * deferAfter, 5 * time.Millisecond, 0, true},
		// The lag time is deferAfter here (no waits seen yet). Held at
		// three quarters of it, the partition is held while its oldest
		// record is still inside the lag time, so busy, not lagging: with
		// keepsUpMargin 1 it would go on until it lagged.
		{"no delivery for a while, its oldest record a quarter of the lag time", 200, deferAfter / 4, time.Second, 0, false},
		{"no delivery for a while, its oldest record three quarters of the lag time", 200, deferAfter * 3 / 4, time.Second, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fill(t, tc.n, now.Add(-tc.oldest))
			if tc.winBytes > 0 {
				s.win.bytes = tc.winBytes
			}
			hot.acked = now.Add(-tc.acked).UnixNano()
			hot.stalled = false
			if got := s.atShare(hot); got != tc.want {
				t.Fatalf("atShare = %v with %d in flight; want %v", got, tc.n, tc.want)
			}
		})
	}
	t.Run("stalled", func(t *testing.T) {
		fill(t, 200, now.Add(-10*time.Millisecond))
		hot.acked = now.Add(-5 * time.Millisecond).UnixNano()
		hot.stalled = true
		if !s.atShare(hot) {
			t.Fatal("a stalled partition went past its share")
		}
	})
}

// TestLagAfterFollowsTheClusterWait: a partition lags once its oldest
// record in flight has waited lagFactor times the average wait, and at
// least deferAfter; the average follows a cluster that slows down within a
// few hundred reports, and a partition back from a stall, whose records
// all waited through it, cannot raise it far.
func TestLagAfterFollowsTheClusterWait(t *testing.T) {
	c := Config{MaxInFlight: 1000, MaxInFlightBytes: 1 << 20}.withDefaults()
	s := &Sender{cfg: c, rt: newRouter(consistent, 0), win: newWindow(1, c.initialRing()), mode: normal}
	p := s.rt.topic("a").part(0)
	now := time.Now()
	s.rt.now, s.now = now, now.UnixNano()
	lagging := func(age time.Duration) bool {
		p.q.reset()
		s.pushFlight(p, flight{seq: 1, at: now.Add(-age).UnixNano(), size: 10})
		return s.lagging(p)
	}
	// A fast cluster: deferAfter decides.
	if lagging(900*time.Millisecond) || !lagging(1100*time.Millisecond) {
		t.Fatalf("with no wait on record: lagging at 0.9 s %v, at 1.1 s %v; want false, true", lagging(900*time.Millisecond), lagging(1100*time.Millisecond))
	}
	// A cluster where records wait 1 s on average: a partition whose
	// oldest has waited 1.5 s is as busy as the rest.
	feed := func(wait time.Duration, n int) {
		for range n {
			s.noteWait(s.now - int64(wait))
		}
	}
	feed(time.Second, 2000)
	if w := time.Duration(s.flightWait); w < 900*time.Millisecond || w > time.Second {
		t.Fatalf("average wait %v after 2,000 reports of 1 s; want about 1 s", w)
	}
	if lagging(1500*time.Millisecond) || lagging(3500*time.Millisecond) || !lagging(4500*time.Millisecond) {
		t.Fatalf("with 1 s waits: lagging at 1.5 s %v, 3.5 s %v, 4.5 s %v; want false, false, true",
			lagging(1500*time.Millisecond), lagging(3500*time.Millisecond), lagging(4500*time.Millisecond))
	}
	// Back to fast, then a partition back from a 30 s stall reports its
	// 256 records at once: the average stays well below a second.
	feed(10*time.Millisecond, 5000)
	feed(30*time.Second, 256)
	if w := time.Duration(s.flightWait); w > 600*time.Millisecond {
		t.Fatalf("average wait %v after 256 reports of 30 s behind fast ones; want under 600 ms", w)
	}
}

// TestAwaitingItsTurnIsNotLagging: on a cluster that serves its
// partitions in turn, slowly and unevenly, a partition whose oldest record
// has waited past lagAfter and PartitionStallTimeout while the others had
// at most passedOverRounds rounds of turns is only waiting its turn: it
// neither lags nor stalls. Passed over for more rounds, or with no turn
// for anyone since its own (nothing answers) or for lagAfter (the others
// have nothing left in flight), it does. The reports of one turn count
// once.
func TestAwaitingItsTurnIsNotLagging(t *testing.T) {
	c := Config{MaxInFlight: 1000, MaxInFlightBytes: 1 << 20}.withDefaults()
	lg := zerolog.Nop()
	const parts = 1000
	now := time.Now()
	age := c.PartitionStallTimeout + time.Second
	for _, tc := range []struct {
		name string
		// rounds of turns of partitions 1..parts-1 after p's record, then
		// extra turns of partition 1 alone (-extra: reports of partition
		// 1 within turnGap); the last lastAgo ago.
		rounds, extra int
		lastAgo       time.Duration
		want          [2]bool // lagging, stalled
	}{
		{"no turn for anyone since its own", 0, 0, 0, [2]bool{true, true}},
		{"a round of the others' turns, the last just now", 1, 0, 0, [2]bool{false, false}},
		{"passedOverRounds rounds", passedOverRounds, 0, 0, [2]bool{false, false}},
		{"passedOverRounds+1 rounds: passed over", passedOverRounds + 1, 0, 0, [2]bool{true, true}},
		// An uneven rotation: one partition served again and again.
		{"one partition had 10 turns", 0, 10, 0, [2]bool{false, false}},
		{"one partition had passedOverRounds+1 rounds of turns", 0, (passedOverRounds + 1) * parts, 0, [2]bool{true, true}},
		// A request's reports, over many rounds of the run loop.
		{"one partition reported 20,000 times within turnGap", 0, -20000, 0, [2]bool{false, false}},
		{"a round, but no turn for 2 s", 1, 0, 2 * time.Second, [2]bool{true, true}},
	} {
		s := &Sender{cfg: c, rt: newRouter(consistent, 0), win: newWindow(1, c.initialRing()), mode: normal, lg: &lg}
		tr := s.rt.topic("a")
		// Every partition had turns before p's record: the mark counts
		// from there.
		round := time.Duration(0)
		turn := func(q int32) {
			round += turnGap
			s.now = now.Add(-24*time.Hour + round).UnixNano()
			s.noteTurn(tr.part(q))
		}
		for range 2 {
			for q := range int32(parts) {
				turn(q)
			}
		}
		p := tr.part(0)
		s.rt.now = now.Add(-age)
		s.pushFlight(p, flight{seq: 1, at: now.Add(-age).UnixNano(), size: 10})
		for range tc.rounds {
			for q := int32(1); q < parts; q++ {
				turn(q)
			}
		}
		for range tc.extra {
			turn(1)
		}
		for range -tc.extra {
			round++
			s.now = now.Add(-24*time.Hour + round).UnixNano()
			s.noteTurn(tr.part(1))
		}
		s.lastTurn = now.Add(-tc.lastAgo).UnixNano()
		s.rt.now, s.now = now, now.UnixNano()
		s.active, s.served = parts, parts-1
		lagging := s.lagging(p)
		p.acked = now.Add(-time.Minute).UnixNano()
		s.mode = draining // checkStalls then only marks p
		s.checkStalls()
		if got := [2]bool{lagging, p.stalled}; got != tc.want {
			t.Errorf("%s: lagging, stalled %v; want %v", tc.name, got, tc.want)
		}
	}
}

// TestStuckPartitionsDoNotStretchTheRounds: a round of turns counts the
// partitions being served, not those stuck beside p. With 8 partitions in
// flight and 4 of them stuck (one broker cut off, as in the partition-stall
// drill), p is passed over after passedOverRounds rounds of the 4 served
// partitions' turns, not of 8: counting the stuck ones held off its stall
// past the drill's children's lifetime.
func TestStuckPartitionsDoNotStretchTheRounds(t *testing.T) {
	c := Config{MaxInFlight: 1000, MaxInFlightBytes: 1 << 20}.withDefaults()
	lg := zerolog.Nop()
	now := time.Now()
	age := c.PartitionStallTimeout + time.Second
	const inFlight, stuck = 8, 4
	for _, tc := range []struct {
		turns int
		want  bool // lagging and stalled
	}{
		{passedOverRounds * (inFlight - stuck), false},
		{passedOverRounds*(inFlight-stuck) + 1, true},
	} {
		s := &Sender{cfg: c, rt: newRouter(consistent, 0), win: newWindow(1, c.initialRing()), mode: normal, lg: &lg}
		tr := s.rt.topic("a")
		s.rt.now = now.Add(-age)
		for q := range int32(inFlight) {
			tr.part(q).acked = now.Add(-time.Minute).UnixNano()
			s.pushFlight(tr.part(q), flight{seq: uint64(q) + 1, at: now.Add(-age).UnixNano(), size: 10})
		}
		// The served partitions' turns, each turnGap after the last, the
		// latest a turnGap ago.
		start := now.Add(-time.Duration(tc.turns) * turnGap)
		for i := range tc.turns {
			p := tr.part(int32(stuck + i%(inFlight-stuck)))
			s.now = start.Add(time.Duration(i) * turnGap).UnixNano()
			p.acked = s.now
			s.noteTurn(p)
		}
		s.rt.now, s.now = now, now.UnixNano()
		s.countRecent(now)
		if s.served != inFlight-stuck {
			t.Fatalf("%d turns: served %d; want %d", tc.turns, s.served, inFlight-stuck)
		}
		p := tr.part(0)
		lagging := s.lagging(p)
		s.mode = draining // checkStalls then only marks p
		s.checkStalls()
		if lagging != tc.want || p.stalled != tc.want {
			t.Errorf("%d turns of %d served partitions, %d stuck: lagging %v, stalled %v; want %v",
				tc.turns, inFlight-stuck, stuck, lagging, p.stalled, tc.want)
		}
	}
}

// TestAwaitingItsTurnIsNotAtShare: a partition at its share of the window
// whose records only await their turn (the others' turns have not yet
// passed it over) does not hold the main stream back, even with the
// window more than half full; once passed over, stalled, or with no turn
// from anyone for the lag time, it is held to its share as before.
func TestAwaitingItsTurnIsNotAtShare(t *testing.T) {
	c := Config{MaxInFlight: 1000, MaxInFlightBytes: 1 << 20}.withDefaults()
	now := time.Now()
	const served = 4
	setup := func(othersTurns int, lastTurnAgo time.Duration) (*Sender, *part) {
		s := &Sender{cfg: c, rt: newRouter(consistent, 0), win: newWindow(1, c.initialRing()), mode: normal}
		s.sizeWindow()
		tr := s.rt.topic("a")
		p := tr.part(0)
		// p holds 600 records, past its share (100) and past half the
		// window (500), its oldest waiting a second; nothing it sent
		// was delivered lately, so it is not flowing either. Its turns
		// count from its first record in flight: then the others' turns.
		for i := range 600 {
			s.pushFlight(p, flight{seq: uint64(i + 1), at: now.Add(-time.Second).UnixNano(), size: 10})
		}
		s.win.produced, s.win.bytes = 600, 6000
		for i := range othersTurns {
			q := tr.part(int32(1 + i%served))
			s.now = now.Add(-lastTurnAgo - time.Duration(othersTurns-1-i)*turnGap).UnixNano()
			s.noteTurn(q)
		}
		s.active, s.recent, s.served = 10, 10, served
		s.rt.now, s.now = now, now.UnixNano()
		return s, p
	}
	cases := []struct {
		name        string
		turns       int
		lastTurnAgo time.Duration
		stalled     bool
		want        bool
	}{
		{"awaiting its turn: one round of the others'", served, 0, false, false},
		{"awaiting its turn: passedOverRounds rounds", passedOverRounds * served, 0, false, false},
		{"passed over", passedOverRounds*served + 1, 0, false, true},
		{"awaiting its turn but stalled", served, 0, true, true},
		{"no turn from anyone for the lag time", served, 2 * deferAfter, false, true},
		{"no turn of the others since its records went out", 0, 0, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, p := setup(tc.turns, tc.lastTurnAgo)
			p.stalled = tc.stalled
			if n, _ := s.share(p); p.q.n < n {
				t.Fatalf("%d in flight is not past the share %d", p.q.n, n)
			}
			if got := s.atShare(p); got != tc.want {
				t.Fatalf("atShare = %v after %d turns of the others; want %v", got, tc.turns, tc.want)
			}
		})
	}
}
