package sender

import "testing"

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
