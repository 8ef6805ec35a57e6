package recovery

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/kafkawal/kafkawal/wal"
)

// Regression tests for the findings of a review of the second wave (each
// failed on 12d6b79, before its fix).

// Damage "at or below the durable cursor" is repaired under every policy
// as already delivered. The cursor judged is the file's, and wal.Open
// lowers a cursor beyond the last record (CursorClamped: an OS crash under
// SyncPeriodic, or a quarantine cut of the last segment) only in memory.
// Records appended after such an Open reuse the sequences up to the old
// cursor; if none is delivered before the next Open (Kafka down), damage in
// them is judged Delivered: FailOnCorruption repairs it silently, counts
// nothing lost, and the records are never sent.
func TestClampedCursorNeverJudgesNewRecordsDelivered(t *testing.T) {
	dir := t.TempDir()
	opts := wal.Options{SegmentBytes: 64 << 10}
	l, _, err := wal.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 1; i <= 10; i++ {
		if _, err := l.Append(ctx, []wal.Record{testRecord(i)}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	writeCursor(t, dir, 5000) // persisted before the OS crash took records 11..5000

	l, info, err := wal.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !info.CursorClamped || l.Cursor() != 10 {
		t.Fatalf("Open: clamped %v, cursor %d", info.CursorClamped, l.Cursor())
	}
	// Kafka is down: new records, none delivered, over several segments.
	for i := 11; l.Stats().Segments < 4; i++ {
		r := testRecord(i)
		r.Value = make([]byte, 1000)
		if _, err := l.Append(ctx, []wal.Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	last := l.LastSeq()
	l.Close()
	if last >= 5000 {
		t.Fatalf("test setup: %d records, want fewer than the stale cursor", last)
	}

	// A bit flip in the third record of the second segment: never
	// delivered (the true cursor is 10).
	segs, err := wal.ListSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
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
	data[sr.End()-1] ^= 1
	writeFile(t, segs[1].Path, data)
	bad := segs[1].First + 2

	rep, err := Repair(dir, Options{Policy: FailOnCorruption, FullScan: true})
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("Repair (FailOnCorruption) of damage at seq %d, never delivered (cursor 10 since the clamp; LastSeq %d): err %v, LostRecords %d, DeliveredRecords %d, Cursor judged %d; want a *CorruptionError and nothing changed",
			bad, last, err, rep.LostRecords, rep.DeliveredRecords, rep.Cursor)
	}
}
