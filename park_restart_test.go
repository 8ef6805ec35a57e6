package kafkawal_test

import (
	"context"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/wal"
)

// A crash while a partition is parked leaves its park log and the WAL
// cursor at any point relative to each other: the copy synced and the
// cursor not moved yet, the cursor moved past the parked records, the
// park log half delivered, or the last copy torn before it was synced.
// Open resumes from what is on disk: every record not known delivered
// reaches Kafka exactly once here (nothing reached it before), and in
// order in its partition, the parked ones before the partition's records
// still in the WAL. Partition 0 of topic t is parked with its records
// from a to b (exclusive), and a keyless record it had in flight. Each
// case runs twice: records given their partition, and keyed
// PartitionAny records (the partition count is not known at Open until
// metadata comes, so the park log's records must be told apart by the
// park log's own count, not the sender's).
func TestParkedRecordsAfterACrash(t *testing.T) {
	const a, b = 101, 301
	cases := []parkCrashCase{
		{"copy synced, cursor not moved", a - 1, b, 0},
		{"cursor past the parked records", b - 1, b, 0},
		{"park log half delivered", b - 1, b, 200},
		{"last copy torn before its sync", a - 1, 201, 0},
	}
	var keys [4][]byte
	for q := range keys {
		keys[q] = keyFor(int32(q), 4)
	}
	for _, keyed := range []bool{false, true} {
		for _, c := range cases {
			name := c.name
			if keyed {
				name += ", keyed PartitionAny"
			}
			t.Run(name, func(t *testing.T) { parkedAfterACrash(t, c, keyed, keys) })
		}
	}
}

// keyFor returns a key that librdkafka's default partitioner
// (consistent_random: CRC-32 of the key) sends to partition q of n.
func keyFor(q, n int32) []byte {
	for i := 0; ; i++ {
		k := []byte("k" + strconv.Itoa(i))
		if int32(crc32.ChecksumIEEE(k)%uint32(n)) == q {
			return k
		}
	}
}

type parkCrashCase struct {
	name      string
	cursor    uint64 // the WAL's cursor
	parkTo    uint64 // the park log holds partition 0's records below it (and from a)
	parkAcked uint64 // its cursor
}

// parkedAfterACrash is one case of TestParkedRecordsAfterACrash; keyless
// is a keyless record, parked with partition 0.
func parkedAfterACrash(t *testing.T, c parkCrashCase, keyed bool, keys [4][]byte) {
	const n, a, keyless = 400, 101, 150
	bk := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, bk, "t", 4, nil)
	cfg := baseConfig(t, bk)
	l, _, err := wal.Open(cfg.Dir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs := map[uint64]kafkawal.Record{}
	for id := uint64(1); id <= n; id++ {
		r := idRecord("t", int32(id%4), id, value(100, id))
		if keyed {
			r.Partition, r.Key = kafkawal.PartitionAny, keys[id%4]
		}
		if id == keyless {
			r = keylessRecord("t", id)
		}
		if seq, err := l.Append(context.Background(), []wal.Record{r}); err != nil || seq != id {
			t.Fatalf("append %d: seq %d, %v", id, seq, err)
		}
		recs[id] = r
	}
	pl, err := l.CreatePark(wal.ParkMeta{Topic: "t", Partition: 0, Count: 4, Partitioner: "consistent_random"})
	if err != nil {
		t.Fatal(err)
	}
	var parked []uint64
	for id := uint64(a); id < c.parkTo; id++ {
		if id%4 == 0 || id == keyless {
			r := recs[id]
			if err := pl.Append(id, &r); err != nil {
				t.Fatal(err)
			}
			parked = append(parked, id)
		}
	}
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	if c.parkAcked > 0 {
		if err := pl.SetAcked(c.parkAcked); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SetCursor(c.cursor); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// What must arrive: every record after the cursor, and the
	// parked ones after the park log's cursor.
	var want []uint64
	for id := uint64(1); id <= n; id++ {
		isParked := false
		for _, p := range parked {
			isParked = isParked || p == id
		}
		if id > c.cursor || (isParked && id > c.parkAcked) {
			want = append(want, id)
		}
	}
	p := openT(t, cfg)
	ctx := testCtx(t, 2*time.Minute)
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("flush: %v; stats %+v", err, p.Stats())
	}
	t.Logf("stats %+v", p.Stats())
	waitFor(t, 10*time.Second, "the delivered park log to be removed", func() bool {
		_, err := os.Stat(filepath.Join(cfg.Dir, "park", "t.0"))
		return os.IsNotExist(err)
	})
	closeT(t, p, time.Minute)
	got, err := kafkatest.ReadAll(testCtx(t, time.Minute), bk.Bootstrap(), []string{"t"}, len(want))
	if err != nil {
		t.Logf("read back: %v", err)
	}
	rep := kafkatest.Verify(want, got, recordID, nil)
	t.Logf("want %d records: %v", len(want), rep)
	if !rep.OK() || rep.Duplicates != 0 || rep.Delivered != len(want) {
		t.Fatalf("verify: %v, %d delivered, want %d exactly once", rep, rep.Delivered, len(want))
	}
}

// Close while a partition is parked, Open again while it is still
// stalled (parking goes on into the same park log), then Close while it
// drains, and Open again: nothing is lost and each partition keeps its
// order.
func TestParkedAcrossRestarts(t *testing.T) {
	opts := kafkatest.Options{Brokers: 3}
	if kafkatest.Kind() == "real" {
		opts = kafkatest.Options{Brokers: 2, Proxy: true}
	}
	bk := kafkatest.StartT(t, opts)
	const topic = "restart"
	createTopic(t, bk, topic, 4, nil)
	cfg := baseConfig(t, bk)
	cfg.PartitionStallTimeout = time.Second
	cfg.ParkAfter = 2 * time.Second
	cfg.SegmentBytes = 1 << 20
	ctx := testCtx(t, 10*time.Minute)
	_, heal, err := bk.StallPartition(ctx, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	next := uint64(1)
	// run opens a producer, appends for d, waits for until, then closes it
	// within closeIn (undelivered records stay).
	run := func(phase string, d time.Duration, until func(*kafkawal.Producer) bool, closeIn time.Duration) kafkawal.Stats {
		p, err := kafkawal.Open(cfg)
		if err != nil {
			t.Fatalf("%s: Open: %v", phase, err)
		}
		load := &partialLoad{p: p, topic: topic, partitions: 4, rate: 1000, batch: 20, from: next,
			part: map[uint64]int32{}, seqOf: map[uint64]uint64{}, appended: map[uint64]time.Time{}, done: make(chan struct{})}
		if d > 0 {
			go load.run(ctx)
			time.Sleep(d)
			load.stop.Store(true)
			<-load.done
			if load.failed != nil {
				t.Fatalf("%s: append: %v", phase, load.failed)
			}
			ids = append(ids, load.ids...)
			next = load.ids[len(load.ids)-1] + 1
		}
		waitFor(t, time.Minute, phase, func() bool { return until(p) })
		st := p.Stats()
		cctx, cancel := context.WithTimeout(context.Background(), closeIn)
		defer cancel()
		err = p.Close(cctx)
		t.Logf("%s: open report %+v; stats %+v; close: %v", phase, p.OpenReport(), st, err)
		return st
	}
	parkedBytes := func(p *kafkawal.Producer) bool { return p.Stats().ParkedBytes > 0 }
	run("stalled, parked", 5*time.Second, parkedBytes, time.Second)
	st := run("open again while stalled", 4*time.Second, parkedBytes, time.Second)
	if len(st.StalledPartitions) == 0 {
		t.Fatal("the parked partition is not listed after Open")
	}
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	run("healed, closed while draining", 0, func(p *kafkawal.Producer) bool { return p.Stats().Delivered > 0 }, time.Millisecond)
	p := openT(t, cfg)
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("flush: %v; stats %+v", err, p.Stats())
	}
	waitFor(t, 10*time.Second, "the park log to be removed", func() bool {
		des, err := os.ReadDir(filepath.Join(cfg.Dir, "park"))
		return (err == nil && len(des) == 0) || os.IsNotExist(err)
	})
	t.Logf("last open: %+v; stats %+v", p.OpenReport(), p.Stats())
	closeT(t, p, time.Minute)
	verify(t, bk, []string{topic}, ids)
}
