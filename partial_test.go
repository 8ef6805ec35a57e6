package kafkawal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/wal"
)

// logLines keeps a producer's log (JSON lines) for a test to count
// messages in.
type logLines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// contains reports whether some line holds s.
func (l *logLines) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.b.String(), s)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// perPartition counts the lines that carry message msg, by their
// partition field.
func (l *logLines) perPartition(msg string) map[int32]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := map[int32]int{}
	for _, line := range strings.Split(l.b.String(), "\n") {
		var e struct {
			Message   string `json:"message"`
			Partition int32  `json:"partition"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == msg {
			n[e.Partition]++
		}
	}
	return n
}

const (
	stallLine   = "sender: partition stalled; its records wait, the other partitions go on"
	recoverLine = "sender: partition accepting records again; delivering its backlog"
)

// checkStallLines: each stalled partition logged its stall, no partition
// logged one per retry (librdkafka retries many times during a stall; a
// healthy partition that delivered nothing for PartitionStallTimeout on a
// loaded machine may log one of its own), and after the stall every stall
// line has its recovery line.
func checkStallLines(t *testing.T, logs *logLines, stalled []int32, after bool) {
	t.Helper()
	stalls, recovers := logs.perPartition(stallLine), logs.perPartition(recoverLine)
	for _, q := range stalled {
		if stalls[q] == 0 {
			t.Errorf("no stall line for stalled partition %d", q)
		}
	}
	for q, n := range stalls {
		if n > 2 {
			t.Errorf("partition %d: %d stall lines", q, n)
		}
		if after && recovers[q] != n {
			t.Errorf("partition %d: %d stall lines, %d recovery lines", q, n, recovers[q])
		}
	}
	t.Logf("stall lines %v, recovery lines %v", stalls, recovers)
}

// capture makes cfg log into the returned lines (and, with KWDEBUG, to
// stderr too).
func capture(cfg *kafkawal.Config) *logLines {
	l := &logLines{}
	var w io.Writer = l
	if debugLogger != nil {
		w = io.MultiWriter(l, zerolog.ConsoleWriter{Out: os.Stderr})
	}
	lg := zerolog.New(w).Level(zerolog.InfoLevel)
	cfg.Logger = &lg
	return l
}

// partialLoad appends records of 1 KiB at a steady rate, round-robin over
// a topic's partitions, and keeps the ledger: each record's partition,
// sequence, and when it was appended and delivered.
type partialLoad struct {
	p          *kafkawal.Producer
	topic      string
	partitions int32
	rate       int // records per second
	batch      int
	from       uint64 // the first id

	mu       sync.Mutex
	ids      []uint64 // acknowledged ids, in append order
	part     map[uint64]int32
	seqOf    map[uint64]uint64
	appended map[uint64]time.Time
	failed   error

	delivered sync.Map // seq -> time.Time
	stop      atomic.Bool
	done      chan struct{}
}

func (l *partialLoad) onDelivered(seq uint64, _ string, _ int32, _ int64) {
	l.delivered.Store(seq, time.Now())
}

func (l *partialLoad) run(ctx context.Context) {
	defer close(l.done)
	every := time.Duration(l.batch) * time.Second / time.Duration(l.rate)
	next := time.Now()
	id := max(l.from, 1)
	for !l.stop.Load() {
		recs := make([]kafkawal.Record, l.batch)
		for i := range recs {
			recs[i] = idRecord(l.topic, int32((id+uint64(i))%uint64(l.partitions)), id+uint64(i), value(1024, id+uint64(i)))
		}
		first, err := l.p.AppendBatch(ctx, recs)
		now := time.Now()
		l.mu.Lock()
		if err != nil {
			l.failed = err
			l.mu.Unlock()
			return
		}
		for i := range recs {
			l.ids = append(l.ids, id)
			l.part[id] = recs[i].Partition
			l.seqOf[id] = first + uint64(i)
			l.appended[id] = now
			id++
		}
		l.mu.Unlock()
		next = next.Add(every)
		time.Sleep(time.Until(next))
	}
}

// undelivered returns the bytes, as a park log stores them (the record's
// encoding, its sequence, a frame), of the records appended to partitions
// for which in is true and not delivered yet.
func (l *partialLoad) undelivered(in func(int32) bool) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, id := range l.ids {
		if !in(l.part[id]) {
			continue
		}
		if _, ok := l.delivered.Load(l.seqOf[id]); ok {
			continue
		}
		r := idRecord(l.topic, l.part[id], id, value(1024, id))
		n += int64(wal.EncodedLen(&r)) + 8 + 3
	}
	return n
}

// since returns the ids appended in [from, to) to partitions for which in
// is true, and how many of them were delivered by at.
func (l *partialLoad) since(from, to time.Time, in func(int32) bool, at time.Time) (ids []uint64, delivered int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range l.ids {
		a := l.appended[id]
		if a.Before(from) || !a.Before(to) || !in(l.part[id]) {
			continue
		}
		ids = append(ids, id)
		if d, ok := l.delivered.Load(l.seqOf[id]); ok && !d.(time.Time).After(at) {
			delivered++
		}
	}
	return ids, delivered
}

// newLoad returns a load that has not started: made before Open, so that
// Config.OnDelivered can be its onDelivered. A callback that looked up a
// load assigned after Open would race with that assignment: the load
// appends on a goroutine of its own, so the first delivery reports can
// come before the call that started it has returned.
func newLoad(topic string, partitions int32, rate int) *partialLoad {
	return &partialLoad{topic: topic, partitions: partitions, rate: rate, batch: 40,
		part: map[uint64]int32{}, seqOf: map[uint64]uint64{}, appended: map[uint64]time.Time{}, done: make(chan struct{})}
}

// start appends through p until the test ends.
func (l *partialLoad) start(t *testing.T, p *kafkawal.Producer) {
	l.p = p
	go l.run(testCtx(t, 10*time.Minute))
	t.Cleanup(func() { l.stop.Store(true); <-l.done })
}

// One partition stops accepting records (its broker answers
// NOT_ENOUGH_REPLICAS; on a real cluster, its broker is cut off from
// clients) while the application appends to all of them at a steady rate:
// the other partitions' records keep being delivered while it is stalled,
// and after the stall everything arrives, in order per partition.
func TestPartialOutage(t *testing.T) {
	cases := []struct {
		name string
		// cfg adjusts the producer's configuration.
		cfg func(*kafkawal.Config)
		// stallFor is how long the stall lasts at least.
		stallFor time.Duration
		// detected: the stall outlasts PartitionStallTimeout.
		detected bool
		// timeout: librdkafka's message.timeout.ms, 0 for kafkawal's
		// (never). A finite one makes the stalled partition's records
		// fail, and everything rewind, over and over during the stall.
		timeout int
		// refuse: a record too large for the topic goes to a healthy
		// partition during the stall; it is dead-lettered after its
		// partition's records are sent one at a time.
		refuse bool
		// park: the stall outlasts ParkAfter; the disk then holds the
		// stalled partition's backlog and a few segments.
		park bool
	}{
		{
			// The stalled partition fills its share of a small window
			// within a second, long before it is found stalled.
			name: "share of the window",
			cfg: func(c *kafkawal.Config) {
				c.MaxInFlight = 2048
				c.PartitionStallTimeout = time.Hour
				c.ParkAfter = -1
			},
			stallFor: 5 * time.Second,
		},
		{
			name: "stall detected",
			cfg: func(c *kafkawal.Config) {
				c.PartitionStallTimeout = 2 * time.Second
				c.ParkAfter = -1
			},
			stallFor: 6 * time.Second,
			detected: true,
		},
		{
			name: "stall longer than message.timeout.ms",
			cfg: func(c *kafkawal.Config) {
				c.PartitionStallTimeout = 2 * time.Second
				c.ParkAfter = -1
				c.Kafka["message.timeout.ms"] = 1500
				c.AllowWeakerDelivery = true // a finite message.timeout.ms
			},
			stallFor: 6 * time.Second,
			timeout:  1500,
		},
		{
			name: "stall parked",
			cfg: func(c *kafkawal.Config) {
				c.PartitionStallTimeout = time.Second
				c.ParkAfter = 2 * time.Second
				c.SegmentBytes = 2 << 20
			},
			stallFor: 12 * time.Second,
			detected: true,
			park:     true,
		},
		{
			name: "a record refused for good during the stall",
			cfg: func(c *kafkawal.Config) {
				c.PartitionStallTimeout = 2 * time.Second
				c.ParkAfter = -1
				// Batches fit the topic's max.message.bytes (see README,
				// Guarantees 5): only the large record is refused.
				c.Kafka["batch.size"] = 200000
				// The refusal purges librdkafka, whose idempotent producer
				// then waits for the requests in flight to a broker that
				// does not answer (a real one cut off) to time out before
				// it produces again: after socket.timeout.ms (see README,
				// Partial outages).
				c.Kafka["socket.timeout.ms"] = 10000
			},
			stallFor: 6 * time.Second,
			detected: true,
			refuse:   true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := kafkatest.Options{Brokers: 3}
			if kafkatest.Kind() == "real" {
				opts = kafkatest.Options{Brokers: 2, Proxy: true}
			}
			b := kafkatest.StartT(t, opts)
			const topic, partitions = "partial", 4
			var topicConfig map[string]string
			if c.refuse {
				topicConfig = map[string]string{"max.message.bytes": "300000"}
			}
			createTopic(t, b, topic, partitions, topicConfig)
			cfg := baseConfig(t, b)
			c.cfg(&cfg)
			rate := 2000
			if raceEnabled {
				rate = 500
			}
			logs := capture(&cfg)
			load := newLoad(topic, partitions, rate)
			cfg.OnDelivered = load.onDelivered
			p := openT(t, cfg)
			ctx := testCtx(t, 10*time.Minute)
			load.start(t, p)
			waitFor(t, time.Minute, "deliveries before the stall", func() bool { return p.Stats().Delivered > uint64(rate) })
			heap0 := heapInUse()

			stalledParts, heal, err := b.StallPartition(ctx, topic, 0)
			if err != nil {
				t.Fatal(err)
			}
			isStalled := func(q int32) bool { return slices.Contains(stalledParts, q) }
			healthy := func(q int32) bool { return !isStalled(q) }
			start := time.Now()
			if c.refuse {
				time.Sleep(c.stallFor / 2)
				const tooLarge = 1 << 40 // an id no other record has
				healthyPart := int32(slices.IndexFunc([]int32{0, 1, 2, 3}, healthy))
				if _, err := p.Append(ctx, idRecord(topic, healthyPart, tooLarge, value(400000, tooLarge))); err != nil {
					t.Fatal(err)
				}
				time.Sleep(c.stallFor / 2)
			} else {
				time.Sleep(c.stallFor)
			}
			cutoff := time.Now()
			ids, delivered := load.since(start, cutoff, healthy, cutoff)
			t.Logf("stall %v: %d of %d records of the healthy partitions delivered by then (%.3f); stats %+v",
				c.stallFor, delivered, len(ids), float64(delivered)/float64(max(1, len(ids))), p.Stats())
			// While the partition is still stalled, every record the
			// healthy ones got during the stall is delivered.
			waitFor(t, time.Minute, "the healthy partitions' stall-time records, while one partition is stalled", func() bool {
				_, d := load.since(start, cutoff, healthy, time.Now())
				return d == len(ids)
			})
			if len(ids) == 0 {
				t.Fatal("no record appended to a healthy partition during the stall")
			}
			if c.detected {
				// Stats lists the stalled partitions, each with its
				// backlog, and only them. On a loaded machine a healthy
				// partition can be listed for a moment (its reports late
				// past PartitionStallTimeout) until it delivers again, and
				// after a refused record's purge librdkafka holds every
				// partition until its requests to the cut-off broker time
				// out (socket.timeout.ms): hence the wait. The purge also
				// starts the stalled partition's detection over, so its
				// Since may then come after the cutoff.
				waitFor(t, 30*time.Second, "the stalled partitions in Stats", func() bool {
					ps := p.Stats().StalledPartitions
					if len(ps) != len(stalledParts) {
						return false
					}
					for _, s := range ps {
						if s.Topic != topic || !isStalled(s.Partition) || !s.Stalled || s.Records == 0 || s.Bytes < int64(s.Records)*1024 ||
							s.Since.Before(start.Add(-time.Second)) || (s.Since.After(cutoff) && !c.refuse) {
							return false
						}
					}
					return true
				})
				checkStallLines(t, logs, stalledParts, false)
			}
			if c.park {
				// The WAL's segments behind the parked records are
				// deleted: the disk holds the stalled partitions' backlog
				// (once, in their park logs, with a sequence and a frame
				// each) and a few segments of the WAL.
				var disk, bound int64
				waitFor(t, time.Minute, "the disk to hold no more than the stalled backlog and 4 segments", func() bool {
					st := p.Stats()
					disk, bound = st.DiskBytes, load.undelivered(isStalled)+4*cfg.SegmentBytes
					return disk <= bound && st.ParkedBytes > 0
				})
				t.Logf("parked: disk %d KiB, bound %d KiB; stats %+v", disk>>10, bound>>10, p.Stats())
				for _, q := range stalledParts {
					if _, err := os.Stat(filepath.Join(cfg.Dir, "park", fmt.Sprintf("%s.%d", topic, q))); err != nil {
						t.Fatalf("park log of partition %d: %v", q, err)
					}
				}
			}
			peak := heapInUse()
			if err := heal(); err != nil {
				t.Fatal(err)
			}
			load.stop.Store(true)
			<-load.done
			if load.failed != nil {
				t.Fatalf("an append failed: %v", load.failed)
			}
			if err := p.Flush(ctx); err != nil && !(c.refuse && errors.Is(err, kafkawal.ErrDeadLettered)) {
				t.Fatalf("flush after the stall: %v; stats %+v", err, p.Stats())
			}
			st := p.Stats()
			t.Logf("after the stall: heap %d -> %d MiB; stats %+v", heap0>>20, peak>>20, st)
			waitFor(t, 10*time.Second, "no stalled partition in Stats", func() bool { return len(p.Stats().StalledPartitions) == 0 })
			if c.park {
				waitFor(t, 10*time.Second, "the park logs, delivered, to be removed", func() bool {
					des, err := os.ReadDir(filepath.Join(cfg.Dir, "park"))
					return (err == nil && len(des) == 0) || os.IsNotExist(err)
				})
				if st := p.Stats(); st.ParkedBytes != 0 || st.DiskBytes > 4*cfg.SegmentBytes {
					t.Fatalf("after the stall: %d bytes parked, %d on disk", st.ParkedBytes, st.DiskBytes)
				}
			}
			if c.detected {
				checkStallLines(t, logs, stalledParts, true)
			}
			if growth := int64(peak) - int64(heap0); growth > 64<<20 {
				t.Fatalf("heap grew %d MiB during the stall; want < 64 MiB", growth>>20)
			}
			if c.refuse && st.DeadLettered != 1 {
				t.Fatalf("%d records dead-lettered, want the one too large", st.DeadLettered)
			}
			closeT(t, p, time.Minute)
			if c.timeout == 0 {
				verify(t, b, []string{topic}, load.ids)
				return
			}
			// With a finite message.timeout.ms librdkafka itself gives up
			// on records, after which a later one can be accepted ahead of
			// an earlier one; kafkawal re-sends, so nothing is lost (see
			// TestOutageBlackhole).
			recs, err := kafkatest.ReadAll(testCtx(t, 3*time.Minute), b.Bootstrap(), []string{topic}, len(load.ids))
			if err != nil {
				t.Logf("read back: %v", err)
			}
			rep := kafkatest.Verify(load.ids, recs, recordID, nil)
			t.Logf("verify with a finite message.timeout.ms: %v", rep)
			if rep.Lost != 0 || st.Resent == 0 {
				t.Fatalf("lost %d, resent %d: %v", rep.Lost, st.Resent, rep)
			}
		})
	}
}

func keylessRecord(topic string, id uint64) kafkawal.Record {
	r := idRecord(topic, kafkawal.PartitionAny, id, value(256, id))
	r.Key = nil
	return r
}

// appendPaced appends records made by rec, batch at a time, at rate
// records per second until stop, and returns the acknowledged ids with
// when each was appended.
func appendPaced(ctx context.Context, t *testing.T, p *kafkawal.Producer, rate, batch int, rec func(id uint64) kafkawal.Record, stop *atomic.Bool) (ids []uint64, at map[uint64]time.Time) {
	at = map[uint64]time.Time{}
	every := time.Duration(batch) * time.Second / time.Duration(rate)
	next := time.Now()
	for id := uint64(1); !stop.Load(); {
		recs := make([]kafkawal.Record, batch)
		for i := range recs {
			recs[i] = rec(id + uint64(i))
		}
		if _, err := p.AppendBatch(ctx, recs); err != nil {
			t.Errorf("append: %v", err)
			return
		}
		now := time.Now()
		for range recs {
			ids = append(ids, id)
			at[id] = now
			id++
		}
		next = next.Add(every)
		time.Sleep(time.Until(next))
	}
	return ids, at
}

// Keyless PartitionAny records avoid a stalled partition once it is found
// stalled: those appended afterwards are delivered during the stall, to
// the other partitions; none waits for the stalled one.
func TestKeylessAvoidStalledPartitions(t *testing.T) {
	opts := kafkatest.Options{Brokers: 3}
	if kafkatest.Kind() == "real" {
		opts = kafkatest.Options{Brokers: 2, Proxy: true}
	}
	b := kafkatest.StartT(t, opts)
	const topic = "keyless"
	createTopic(t, b, topic, 4, nil)
	cfg := baseConfig(t, b)
	cfg.PartitionStallTimeout = time.Second
	cfg.ParkAfter = -1
	delivered := sync.Map{} // seq -> time
	cfg.OnDelivered = func(seq uint64, _ string, _ int32, _ int64) { delivered.Store(seq, time.Now()) }
	p := openT(t, cfg)
	ctx := testCtx(t, 5*time.Minute)
	warm := warmUp(ctx, t, p, topic, 4)
	stalled, heal, err := b.StallPartition(ctx, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var ids []uint64
	var at map[uint64]time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		ids, at = appendPaced(ctx, t, p, 1000, 20, func(id uint64) kafkawal.Record { return keylessRecord(topic, id) }, &stop)
	}()
	waitFor(t, time.Minute, "the stall to be found", func() bool { return len(p.Stats().StalledPartitions) == len(stalled) })
	found := time.Now()
	time.Sleep(3 * time.Second)
	stop.Store(true)
	<-done
	if t.Failed() {
		return
	}
	// Every record appended after the stall was found is delivered while
	// the partition is still stalled. (Delivery reports come by sequence;
	// ids are appended in sequence order after the warm-up's records, so
	// id n is sequence n plus their count.)
	var after []uint64
	for _, id := range ids {
		if at[id].After(found) {
			after = append(after, id)
		}
	}
	if len(after) == 0 {
		t.Fatal("nothing appended after the stall was found")
	}
	waitFor(t, time.Minute, "the keyless records appended after the stall was found, while it lasts", func() bool {
		for _, id := range after {
			if _, ok := delivered.Load(id + uint64(warm)); !ok {
				return false
			}
		}
		return true
	})
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	closeT(t, p, time.Minute)
	rep := verify(t, b, []string{topic}, ids)
	recs, err := kafkatest.ReadAll(testCtx(t, time.Minute), b.Bootstrap(), []string{topic}, len(ids))
	if err != nil {
		t.Fatal(err)
	}
	inStalled := 0
	for _, r := range recs {
		if id, ok := recordID(r); ok && slices.Contains(stalled, r.Partition) && at[id].After(found) {
			inStalled++
		}
	}
	t.Logf("%v; %d keyless records appended after the stall was found went to a stalled partition", rep, inStalled)
	if inStalled > 0 {
		t.Fatalf("%d keyless records appended after the stall was found went to a stalled partition", inStalled)
	}
}

// A topic whose only partition stalls: its keyless records wait in the
// topic's keyless lane while the other topic's records are delivered, and
// arrive, all of them, once it accepts again.
func TestKeylessLaneOfAStalledTopic(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	bk, err := kafkatest.StartEmbedded(ctx, kafkatest.Options{Brokers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bk.Close() })
	createTopic(t, bk, "one", 1, nil)
	createTopic(t, bk, "other", 2, nil)
	cfg := baseConfig(t, bk)
	cfg.PartitionStallTimeout = time.Second
	cfg.ParkAfter = -1
	p := openT(t, cfg)
	_, heal, err := bk.StallPartition(ctx, "one", 0)
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var ids []uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		ids, _ = appendPaced(ctx, t, p, 1000, 10, func(id uint64) kafkawal.Record {
			if id%2 == 0 {
				return keylessRecord("one", id)
			}
			return idRecord("other", int32(id/2%2), id, value(256, id))
		}, &stop)
	}()
	waitFor(t, time.Minute, "the keyless lane of the stalled topic", func() bool {
		for _, s := range p.Stats().StalledPartitions {
			if s.Topic == "one" && s.Partition == kafkawal.PartitionAny && s.Records > 0 {
				return true
			}
		}
		return false
	})
	// The other topic's records keep being delivered meanwhile.
	d0 := p.Stats().Delivered
	waitFor(t, time.Minute, "deliveries to the other topic during the stall", func() bool { return p.Stats().Delivered > d0+1000 })
	stop.Store(true)
	<-done
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("flush: %v; stats %+v", err, p.Stats())
	}
	st := p.Stats()
	t.Logf("stats %+v", st)
	waitFor(t, 10*time.Second, "no stalled partition in Stats", func() bool { return len(p.Stats().StalledPartitions) == 0 })
	closeT(t, p, time.Minute)
	verify(t, bk, []string{"one", "other"}, ids)
}
