package kafkawal_test

import (
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// TestLatencies: the producer records one append observation per
// successful call (none for a failed one), the WAL's fsyncs, and one
// delivery observation per delivered record, measured from the record's
// timestamp.
func TestLatencies(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "lat", 2, nil)
	p := openT(t, baseConfig(t, b))
	ctx := testCtx(t, time.Minute)

	const calls, batch = 20, 5
	for i := range calls {
		rs := make([]kafkawal.Record, batch)
		for j := range rs {
			rs[j] = idRecord("lat", int32(j%2), uint64(i*batch+j+1), []byte("v"))
		}
		if _, err := p.AppendBatch(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Append(ctx, kafkawal.Record{Value: []byte("no topic")}); err == nil {
		t.Fatal("append without a topic succeeded")
	}
	// AppendAsync calls count from the call to their callback, failed ones
	// not at all.
	const async = 7
	done := make(chan error, async+1)
	for i := range async {
		p.AppendAsync(ctx, idRecord("lat", 0, uint64(500+i), []byte("a")), func(_ uint64, err error) { done <- err })
	}
	p.AppendAsync(ctx, kafkawal.Record{Value: []byte("no topic")}, func(_ uint64, err error) { done <- err })
	failed := 0
	for range async + 1 {
		if err := <-done; err != nil {
			failed++
		}
	}
	if failed != 1 {
		t.Fatalf("%d AppendAsync calls failed, want the one without a topic", failed)
	}
	// A record whose timestamp says it was created 90 minutes ago: its
	// delivery latency is above the largest bound (about 72 minutes).
	old := idRecord("lat", 0, 1000, []byte("old"))
	old.Timestamp = time.Now().Add(-90 * time.Minute)
	if _, err := p.Append(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The last reports' observations are made before the watermark that
	// Flush waits for moves.
	lat := p.Latencies()
	if want := uint64(calls + async + 1); lat.Append.Count != want {
		t.Errorf("append observations %d, want %d (one per successful call)", lat.Append.Count, want)
	}
	if lat.Fsync.Count == 0 || lat.Fsync.Sum <= 0 {
		t.Errorf("no fsync observed: %+v", lat.Fsync)
	}
	if n := uint64(calls*batch + async + 1); lat.Delivery.Count != n {
		t.Errorf("delivery observations %d, want %d", lat.Delivery.Count, n)
	}
	if c := lat.Delivery.Counts[kafkawal.HistogramBuckets-1]; c != 1 {
		t.Errorf("%d delivery observations above %v, want the old record's", c, kafkawal.HistogramBound(kafkawal.HistogramBuckets-2))
	}
	if lat.Delivery.Sum < 90*time.Minute {
		t.Errorf("delivery sum %v does not include the old record's 90 minutes", lat.Delivery.Sum)
	}
}

// TestBacklogBytes: behind an unreachable broker every byte of the WAL is
// backlog; once delivered, none is.
func TestBacklogBytes(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{Proxy: true})
	createTopic(t, b, "bb", 1, nil)
	b.Proxy().Blackhole()
	cfg := baseConfig(t, b)
	cfg.SegmentBytes = 64 << 10
	p := openT(t, cfg)
	ctx := testCtx(t, time.Minute)
	const n = 500
	for i := range n / 50 {
		rs := make([]kafkawal.Record, 50)
		for j := range rs {
			rs[j] = idRecord("bb", 0, uint64(i*50+j+1), make([]byte, 1000))
		}
		if _, err := p.AppendBatch(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	st := p.Stats()
	if st.BacklogRecords != n || st.BacklogBytes != st.DiskBytes || st.DiskBytes < n*1000 {
		t.Fatalf("behind a dead network: backlog %d records, %d bytes; disk %d bytes", st.BacklogRecords, st.BacklogBytes, st.DiskBytes)
	}
	b.Proxy().Heal()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.BacklogRecords != 0 || st.BacklogBytes != 0 {
		t.Fatalf("after Flush: backlog %d records, %d bytes", st.BacklogRecords, st.BacklogBytes)
	}
}
