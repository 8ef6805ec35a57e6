package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/wal"
)

const (
	shipTopic      = "shipped"
	shipPartitions = 4
	shipValueBytes = 1000
)

// shipBacklogBytes is the size of the backlog the ship tests deliver:
// KAFKAWAL_SHIP_BACKLOG_MIB (the report's 1 GiB runs set 1024), else
// def MiB.
func shipBacklogBytes(t testing.TB, def int) int64 {
	t.Helper()
	mib := def
	if s := os.Getenv("KAFKAWAL_SHIP_BACKLOG_MIB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("KAFKAWAL_SHIP_BACKLOG_MIB=%q: want a positive number", s)
		}
		mib = n
	}
	return int64(mib) << 20
}

// shipRecord is the record of id: its id in the first 8 bytes of the value
// and in the key, on partition id % shipPartitions, so that ids rise
// within each partition.
func shipRecord(id uint64) wal.Record {
	v := make([]byte, shipValueBytes)
	binary.BigEndian.PutUint64(v, id)
	for i := 8; i < len(v); i++ {
		v[i] = byte(id + uint64(i))
	}
	return wal.Record{Topic: shipTopic, Partition: int32(id % shipPartitions), Key: []byte(strconv.FormatUint(id, 10)), Value: v}
}

// writeShipBacklog writes records with ids 1..n (sequences 1..n) into a
// new WAL in dir, as a service whose Kafka was out would have left it,
// and returns n.
func writeShipBacklog(t testing.TB, dir string, size int64) int {
	t.Helper()
	r := shipRecord(1)
	n := int(size / int64(len(wal.Encode(&r))+2))
	// Several segments even for a small backlog; a service's 8 MiB for a
	// large one.
	seg := max(64<<10, min(8<<20, size/8))
	l, _, err := wal.Open(dir, wal.Options{Sync: wal.SyncNever, SegmentBytes: seg, MaxDiskBytes: 2*size + 64<<20})
	if err != nil {
		t.Fatal(err)
	}
	batch := make([]wal.Record, 0, 1000)
	for id := 1; id <= n; {
		batch = batch[:0]
		for ; id <= n && len(batch) < cap(batch); id++ {
			batch = append(batch, shipRecord(uint64(id)))
		}
		if _, err := l.Append(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

// startShipBroker starts the broker of the tier (embedded, or Apache Kafka
// with KAFKAWAL_BROKER=real) with the test topic.
func startShipBroker(t *testing.T, proxy bool) kafkatest.Broker {
	t.Helper()
	b := kafkatest.StartT(t, kafkatest.Options{Proxy: proxy})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := b.CreateTopic(ctx, shipTopic, shipPartitions, nil); err != nil {
		t.Fatal(err)
	}
	return b
}

// readBack is what an independent client (kgo) read from the test topic.
type readBack struct {
	records, distinct int
	lost              []uint64 // ids in 1..n never read (the first 20)
	lostCount         int
	duplicates        int
	disorder          int // first occurrences whose id is below an earlier one of their partition
	foreign           int // records whose value carries no id in 1..n
}

func (r readBack) String() string {
	return fmt.Sprintf("%d records, %d distinct ids, %d lost %v, %d duplicates, %d out of order, %d foreign",
		r.records, r.distinct, r.lostCount, r.lost, r.duplicates, r.disorder, r.foreign)
}

// readShipTopic reads the whole test topic, to its end offsets, checking
// ids 1..n without keeping the records (a 1 GiB backlog would not fit
// comfortably in the test's memory otherwise).
func readShipTopic(t *testing.T, bootstrap string, n int) readBack {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ConsumeTopics(shipTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends := shipEndOffsets(t, ctx, cl)
	next := map[int32]int64{}
	seen := make([]bool, n+1)
	last := map[int32]uint64{}
	var rb readBack
	caughtUp := func() bool {
		for p, end := range ends {
			if next[p] < end {
				return false
			}
		}
		return true
	}
	for !caughtUp() {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read back: %v after %v", ctx.Err(), rb)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			next[r.Partition] = r.Offset + 1
			rb.records++
			if len(r.Value) < 8 || !bytes.Equal(r.Key, []byte(strconv.FormatUint(binary.BigEndian.Uint64(r.Value), 10))) {
				rb.foreign++
				return
			}
			id := binary.BigEndian.Uint64(r.Value)
			if id == 0 || id > uint64(n) {
				rb.foreign++
				return
			}
			if seen[id] {
				rb.duplicates++
				return
			}
			seen[id] = true
			rb.distinct++
			if id < last[r.Partition] {
				rb.disorder++
			}
			last[r.Partition] = max(last[r.Partition], id)
		})
	}
	for id := 1; id <= n; id++ {
		if !seen[id] {
			rb.lostCount++
			if len(rb.lost) < 20 {
				rb.lost = append(rb.lost, uint64(id))
			}
		}
	}
	return rb
}

// shipEndOffsets lists the test topic's end offsets.
func shipEndOffsets(t *testing.T, ctx context.Context, cl *kgo.Client) map[int32]int64 {
	t.Helper()
	offs, err := kadm.NewClient(cl).ListEndOffsets(ctx, shipTopic)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	ends := map[int32]int64{}
	offs.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	return ends
}

// topicRecords counts the records in the test topic (no transactions:
// the end offsets are the count).
func topicRecords(t *testing.T, bootstrap string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var n int64
	for _, end := range shipEndOffsets(t, ctx, cl) {
		n += end
	}
	return n
}

// persistedCursor reads dir's durable cursor.
func persistedCursor(t testing.TB, dir string) uint64 {
	t.Helper()
	st, _, err := wal.LoadCursor(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return st.Acked
}
