package kafkawal_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/wal"
)

// Regression tests for the findings of a review of the second wave (each
// failed on 12d6b79, before its fix).
// TestAppendAsyncObservedInLatencies passes since 01de3b8 (fixed
// meanwhile) and stays as a regression test.

// Latencies.Append (and kafkawal_append_duration_seconds, whose help says
// so too) documents "each successful AppendAsync call, from the call to
// its durable callback": AppendAsync never observes anything, so a
// service that appends only asynchronously exports an empty histogram.
func TestAppendAsyncObservedInLatencies(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "revlat", 1, nil)
	p := openT(t, baseConfig(t, b))
	ctx := testCtx(t, time.Minute)
	const calls = 10
	done := make(chan error, calls)
	for i := range calls {
		p.AppendAsync(ctx, idRecord("revlat", 0, uint64(i+1), []byte("v")), func(_ uint64, err error) { done <- err })
	}
	for range calls {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.Latencies().Append.Count; got != calls {
		t.Fatalf("Latencies().Append.Count = %d after %d successful AppendAsync calls; its doc promises one observation per call", got, calls)
	}
}

// contradictions() refuses MaxRecordBytes above Kafka[message.max.bytes]
// ("records in between would be accepted, then refused by librdkafka and
// dead-lettered"), but only when the application set message.max.bytes:
// left at librdkafka's default (1000000) the same contradiction passes,
// and a record between the two is accepted by Append (contract 8 says a
// record over the limit fails before it enters the WAL) and then
// dead-lettered by librdkafka's own size check.
func TestMaxRecordBytesAboveLibrdkafkaDefaultRefused(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "revbig", 1, nil)
	cfg := baseConfig(t, b)
	cfg.MaxRecordBytes = 1_040_000 // above librdkafka's message.max.bytes, 1000000
	p, err := kafkawal.Open(cfg)
	if err != nil {
		if strings.Contains(err.Error(), "MaxRecordBytes") {
			return // refused, naming the field: fine
		}
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { p.Close(testCtx(t, 5*time.Second)) })
	ctx := testCtx(t, time.Minute)
	if _, err := p.Append(ctx, kafkawal.Record{Topic: "revbig", Partition: 0, Value: make([]byte, 1_010_000)}); err != nil {
		if errors.Is(err, kafkawal.ErrTooLarge) {
			return // refused before it entered the WAL: fine
		}
		t.Fatalf("Append: %v", err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("a record Append accepted (MaxRecordBytes %d, Kafka[message.max.bytes] unset) was not delivered: %v", cfg.MaxRecordBytes, err)
	}
}

// With Kafka[queue.buffering.max.kbytes] set below the default
// MaxRecordBytes (1000000), derive() lowers MaxInFlightBytes to it but
// leaves MaxRecordBytes at its default: Append accepts a record larger
// than librdkafka's whole queue. librdkafka answers every Produce of it
// with ErrQueueFull, which the sender retries forever: delivery stops at
// that record and every later record waits behind it.
func TestQueueKbytesBoundsMaxRecordBytes(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "revq", 1, nil)
	cfg := baseConfig(t, b)
	cfg.Kafka["queue.buffering.max.kbytes"] = 256
	p, err := kafkawal.Open(cfg)
	if err != nil {
		if strings.Contains(err.Error(), "queue.buffering.max.kbytes") || strings.Contains(err.Error(), "MaxRecordBytes") {
			return // refused, naming a field the application set
		}
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { p.Close(testCtx(t, 5*time.Second)) })
	ctx := testCtx(t, time.Minute)
	if _, err := p.Append(ctx, kafkawal.Record{Topic: "revq", Partition: 0, Value: make([]byte, 600_000)}); err != nil {
		if errors.Is(err, kafkawal.ErrTooLarge) {
			return // refused before it entered the WAL: fine
		}
		t.Fatalf("Append: %v", err)
	}
	if _, err := p.Append(ctx, kafkawal.Record{Topic: "revq", Partition: 0, Value: []byte("small, behind it")}); err != nil {
		t.Fatal(err)
	}
	fctx := testCtx(t, 20*time.Second)
	if err := p.Flush(fctx); err != nil {
		st := p.Stats()
		t.Fatalf("Flush: %v; Stats: delivered %d, dead-lettered %d, backlog %d: a 600 KB record Append accepted can never enter librdkafka's 256 KiB queue", err, st.Delivered, st.DeadLettered, st.BacklogRecords)
	}
}

// The consequence of wal's sealed reader mislabelling entries after a
// checksum failure (wal: TestSealedDecodeErrorKeepsSequences),
// end to end: a record damaged in a sealed segment (FullScanOnOpen off,
// the default) is documented to stop delivery there ("it is never sent,
// delivery stops there, and the error is logged"). Instead the sender's
// retry reads the next record under the damaged one's sequence, delivery
// goes on, Flush returns nil, and the damaged record is gone without a
// trace: not in Kafka, not in Stats.Lost, not dead-lettered, and
// WaitDelivered reports it delivered.
func TestDamagedSealedRecordStopsDelivery(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "revdmg", 1, nil)
	dir := t.TempDir()
	l, _, err := wal.Open(dir, wal.Options{SegmentBytes: 64 << 10, Sync: wal.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	n := uint64(0)
	for l.Stats().Segments < 6 {
		n++
		if _, err := l.Append(testCtx(t, time.Minute), []wal.Record{idRecord("revdmg", 0, n, make([]byte, 1000))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := wal.ListSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Flip the last byte of the third entry of segs[1] (read from its file
	// by the sender, not from tidwall's memory).
	data, err := os.ReadFile(segs[1].Path)
	if err != nil {
		t.Fatal(err)
	}
	sr := wal.NewSegmentBytesReader(data)
	for range 3 {
		if !sr.Next() {
			t.Fatal(sr.Err())
		}
	}
	bad := segs[1].First + 2
	data[sr.End()-1] ^= 1
	if err := os.WriteFile(segs[1].Path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := baseConfig(t, b)
	cfg.Dir = dir
	cfg.SegmentBytes = 64 << 10
	p := openT(t, cfg)
	ctx := testCtx(t, 20*time.Second)
	if err := p.Flush(ctx); err != nil {
		t.Logf("Flush: %v (delivery stopped at the damaged record, as documented)", err)
		return
	}
	st := p.Stats()
	recs, err := kafkatest.ReadAll(testCtx(t, time.Minute), b.Bootstrap(), []string{"revdmg"}, int(n))
	if err != nil {
		t.Logf("read back: %v", err)
	}
	seen := map[uint64]int{}
	for _, r := range recs {
		if id, ok := recordID(r); ok {
			seen[id]++
		}
	}
	res, werr := p.WaitDelivered(ctx, bad)
	if seen[bad] == 0 && st.Lost == 0 && st.DeadLettered == 0 {
		t.Fatalf("Flush returned nil, yet record %d (damaged in %s) is not in Kafka, Stats.Lost %d, DeadLettered %d; WaitDelivered(%d) = offset %d, err %v; %d distinct ids of %d in Kafka, %d records",
			bad, filepath.Base(segs[1].Path), st.Lost, st.DeadLettered, bad, res.Offset, werr, len(seen), n, len(recs))
	}
}
