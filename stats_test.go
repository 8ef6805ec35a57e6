package kafkawal_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
)

// With Kafka unreachable and the WAL at its cap: the backlog's bytes and
// age, and every ErrFull answer, show in Stats; the log says once that the
// WAL is full, with the disk figures.
func TestStatsAtTheCap(t *testing.T) {
	cfg := kafkawal.Config{
		Dir:            t.TempDir(),
		Kafka:          kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"},
		SegmentBytes:   64 << 10,
		MaxDiskBytes:   256 << 10,
		MaxRecordBytes: 16 << 10,
		FullPolicy:     kafkawal.Reject,
	}
	logs := logTo(&cfg)
	p := openT(t, cfg)
	ctx := testCtx(t, time.Minute)
	start := time.Now()
	full := 0
	for range 1000 {
		_, err := p.Append(ctx, kafkawal.Record{Topic: "t", Partition: kafkawal.PartitionAny, Value: make([]byte, 1000)})
		switch {
		case errors.Is(err, kafkawal.ErrFull):
			full++
		case err != nil:
			t.Fatal(err)
		}
	}
	if full == 0 {
		t.Fatal("1 MB of appends fit in a 256 KiB WAL")
	}
	waitFor(t, 10*time.Second, "the sender to read the backlog", func() bool { return p.Stats().OldestBacklogAge > 0 })
	st := p.Stats()
	if st.FullErrors != uint64(full) {
		t.Fatalf("Stats.FullErrors %d, want the %d ErrFull answers", st.FullErrors, full)
	}
	if st.BacklogBytes <= 0 || st.BacklogBytes > st.DiskBytes {
		t.Fatalf("BacklogBytes %d with DiskBytes %d", st.BacklogBytes, st.DiskBytes)
	}
	if age := time.Since(start); st.OldestBacklogAge > age || st.OldestInFlightAge > st.OldestBacklogAge {
		t.Fatalf("OldestBacklogAge %v, OldestInFlightAge %v, appending began %v ago", st.OldestBacklogAge, st.OldestInFlightAge, age)
	}
	if st.OldestUnacknowledgedAge != st.OldestInFlightAge {
		t.Fatalf("the deprecated OldestUnacknowledgedAge %v differs from OldestInFlightAge %v", st.OldestUnacknowledgedAge, st.OldestInFlightAge)
	}
	lines := logs.lines("wal: full at MaxDiskBytes; appends are refused with ErrFull until delivery frees a segment")
	if len(lines) != 1 || lines[0]["level"] != "warn" || lines[0]["max_disk_bytes"] != float64(256<<10) {
		t.Fatalf("full lines %v, want one warning", lines)
	}
	closeCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_ = p.Close(closeCtx)
}
