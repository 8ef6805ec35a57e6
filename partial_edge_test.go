package kafkawal_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

func partialBroker(t *testing.T) kafkatest.Broker {
	opts := kafkatest.Options{Brokers: 3}
	if kafkatest.Kind() == "real" {
		opts = kafkatest.Options{Brokers: 2, Proxy: true}
	}
	return kafkatest.StartT(t, opts)
}

// warmUp appends a record to each of topic's first partitions and waits
// until they are delivered, so that p has its producer id and metadata
// before a test cuts a broker off. librdkafka asks any broker for both,
// and one asked through the proxy about to be cut holds every partition,
// the healthy ones too, until its request times out (socket.timeout.ms);
// the stalls under test are ones that begin while records flow. The
// records carry no id (verify counts them as unidentified, outside the
// order and loss checks); it returns how many it appended.
func warmUp(ctx context.Context, t *testing.T, p *kafkawal.Producer, topic string, partitions int) int {
	t.Helper()
	warm := make([]kafkawal.Record, partitions)
	for i := range warm {
		warm[i] = kafkawal.Record{Topic: topic, Partition: int32(i), Value: []byte("warm-up")}
	}
	if _, err := p.AppendBatch(ctx, warm); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	return len(warm)
}

// A stall that never ends: the stalled partition's backlog is parked and
// the other partitions' records keep passing through the WAL, so ErrFull
// comes only when that backlog itself fills the disk, and Stats says
// which partition holds it.
func TestStallThatNeverEnds(t *testing.T) {
	b := partialBroker(t)
	const topic = "forever"
	createTopic(t, b, topic, 4, nil)
	cfg := baseConfig(t, b)
	cfg.PartitionStallTimeout = time.Second
	cfg.ParkAfter = time.Second
	cfg.SegmentBytes = 1 << 20
	cfg.MaxDiskBytes = 24 << 20
	cfg.FullPolicy = kafkawal.Reject
	p := openT(t, cfg)
	ctx := testCtx(t, 5*time.Minute)
	warmUp(ctx, t, p, topic, 4)
	stalled, heal, err := b.StallPartition(ctx, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer heal()
	var appended int64
	var full error
	for id := uint64(1); full == nil; id += 40 {
		recs := make([]kafkawal.Record, 40)
		for i := range recs {
			recs[i] = idRecord(topic, int32((id+uint64(i))%4), id+uint64(i), value(1024, id+uint64(i)))
		}
		if _, err := p.AppendBatch(ctx, recs); err != nil {
			// Under Reject an ErrFull changes nothing. Parking and
			// truncation may still be freeing segments (how far they lag
			// the appends depends on the machine's speed): try again
			// once there is room, and stop only when the disk holds
			// still without it.
			if errors.Is(err, kafkawal.ErrFull) && roomComes(t, p, 40*1100, cfg.MaxDiskBytes) {
				id -= 40 // the same records again
				continue
			}
			full = err
			break
		}
		appended += 40 * 1100
		time.Sleep(10 * time.Millisecond) // 4,000 records/s
		if appended > 40*cfg.MaxDiskBytes {
			t.Fatalf("no ErrFull after appending %d MiB to a WAL of %d MiB", appended>>20, cfg.MaxDiskBytes>>20)
		}
	}
	st := p.Stats()
	t.Logf("appended %d MiB until %v; stats %+v", appended>>20, full, st)
	if !errors.Is(full, kafkawal.ErrFull) {
		t.Fatalf("append: %v, want ErrFull", full)
	}
	// Without isolation the cap would be reached after about one cap of
	// appends; with it, after the stalled partitions' share of them fills
	// it.
	if min := cfg.MaxDiskBytes * int64(4) / int64(len(stalled)) * 3 / 4; appended < min {
		t.Fatalf("ErrFull after %d MiB appended, want at least %d MiB: the healthy partitions' records held the disk", appended>>20, min>>20)
	}
	var parked int64
	for _, s := range st.StalledPartitions {
		if slices.Contains(stalled, s.Partition) {
			parked += s.ParkedBytes
		}
	}
	if st.BacklogBytes > st.DiskBytes {
		t.Fatalf("backlog of %d bytes on a disk of %d", st.BacklogBytes, st.DiskBytes)
	}
	if parked < cfg.MaxDiskBytes/2 || parked > st.DiskBytes {
		t.Fatalf("stalled partitions hold %d MiB parked of %d MiB on disk: %+v", parked>>20, st.DiskBytes>>20, st.StalledPartitions)
	}
}

// roomComes waits until the WAL has room for need more bytes (true), or
// until the producer has stood still for two seconds without that room
// (false): no segment freed, no record delivered, none parked. Deliveries
// and parking count as moving because a segment is freed only once every
// record in it is delivered or parked, which on a slow machine can take
// longer than two seconds of them; with all three still, what is on the
// disk stays there.
func roomComes(t *testing.T, p *kafkawal.Producer, need, capBytes int64) bool {
	t.Helper()
	st := p.Stats()
	low, delivered, parked, since := st.DiskBytes, st.Delivered, st.ParkedBytes, time.Now()
	for time.Since(since) < 2*time.Second {
		time.Sleep(50 * time.Millisecond)
		st = p.Stats()
		if st.DiskBytes+need <= capBytes {
			return true
		}
		if st.DiskBytes < low || st.Delivered != delivered || st.ParkedBytes != parked {
			low, delivered, parked, since = min(low, st.DiskBytes), st.Delivered, st.ParkedBytes, time.Now()
		}
	}
	return false
}

// The stalled topic is deleted during the stall: its records fail for good
// and are dead-lettered; the other topic's are delivered.
func TestStalledTopicDeleted(t *testing.T) {
	b := partialBroker(t)
	createTopic(t, b, "doomed", 2, nil)
	createTopic(t, b, "kept", 2, nil)
	cfg := baseConfig(t, b)
	cfg.PartitionStallTimeout = time.Second
	cfg.ParkAfter = -1
	var dead atomic.Int64
	cfg.OnDeadLetter = func(kafkawal.DeadLetter) { dead.Add(1) }
	p := openT(t, cfg)
	ctx := testCtx(t, 5*time.Minute)
	warm := uint64(warmUp(ctx, t, p, "kept", 2))
	var kept []uint64
	stalled, heal, err := b.StallPartition(ctx, "doomed", 0)
	if err != nil {
		t.Fatal(err)
	}
	doomed := 0
	for id := uint64(1); id <= 400; id++ {
		r := idRecord("kept", int32(id%2), id, value(100, id))
		if id%4 == 0 {
			r = idRecord("doomed", int32(id/4%2), id, value(100, id))
			doomed++
		} else {
			kept = append(kept, id)
		}
		if _, err := p.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "the stall", func() bool { return len(p.Stats().StalledPartitions) > 0 })
	if err := b.DeleteTopic(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	err = p.Flush(ctx)
	st := p.Stats()
	t.Logf("flush: %v; stalled %v; stats %+v", err, stalled, st)
	if err != nil && !errors.Is(err, kafkawal.ErrDeadLettered) {
		t.Fatalf("flush: %v", err)
	}
	// The deleted topic's records were delivered before its deletion or
	// dead-lettered, none lost, none waiting.
	if st.BacklogRecords != 0 || st.DeadLettered == 0 || st.DeadLettered+st.Delivered != warm+400 || dead.Load() != int64(st.DeadLettered) {
		t.Fatalf("stats %+v, %d dead letters told: want every record of the deleted topic delivered or dead-lettered", st, dead.Load())
	}
	closeT(t, p, time.Minute)
	verify(t, b, []string{"kept"}, kept)
}

// The stalled topic grows during the stall: nothing is lost or reordered;
// keyed records keep the partition count they were sorted by until no
// partition of the topic is stalled, and then take the new one.
func TestPartitionsGrowDuringStall(t *testing.T) {
	b := partialBroker(t)
	const topic = "grows"
	createTopic(t, b, topic, 2, nil)
	cfg := baseConfig(t, b)
	cfg.PartitionStallTimeout = time.Second
	cfg.ParkAfter = 2 * time.Second
	p := openT(t, cfg)
	ctx := testCtx(t, 5*time.Minute)
	keyed := func(id uint64) kafkawal.Record {
		r := idRecord(topic, kafkawal.PartitionAny, id, value(200, id))
		r.Key = []byte{byte(id % 16)}
		return r
	}
	var stop atomic.Bool
	var ids []uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		ids, _ = appendPaced(ctx, t, p, 1000, 20, keyed, &stop)
	}()
	waitFor(t, time.Minute, "deliveries", func() bool { return p.Stats().Delivered > 500 })
	_, heal, err := b.StallPartition(ctx, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the stall to be parked", func() bool { return p.Stats().ParkedBytes > 0 })
	if err := b.AddPartitions(ctx, topic, 4); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the stall to end", func() bool { return len(p.Stats().StalledPartitions) == 0 })
	time.Sleep(time.Second)
	stop.Store(true)
	<-done
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stats %+v", p.Stats())
	closeT(t, p, time.Minute)
	verify(t, b, []string{topic}, ids)
}
