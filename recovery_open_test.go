package kafkawal_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/recovery"
	"github.com/kafkawal/kafkawal/wal"
)

// fillOffline appends n records with Kafka unreachable, so they all stay in
// the WAL, and closes.
func fillOffline(t *testing.T, dir string, seg int64, n int) []uint64 {
	t.Helper()
	p := openT(t, kafkawal.Config{Dir: dir, SegmentBytes: seg, Kafka: kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"}})
	var ids []uint64
	for id := uint64(1); id <= uint64(n); id++ {
		if _, err := p.Append(context.Background(), idRecord("rec", 0, id, value(1000, id))); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	p.Close(ctx) // undelivered: the records stay for the next Open
	return ids
}

func TestOpenRepairsTornTailThenDelivers(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "rec", 1, nil)
	cfg := baseConfig(t, b)
	ids := fillOffline(t, cfg.Dir, 0, 50)
	segs, err := wal.ListSegments(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	tail := segs[len(segs)-1].Path
	// A crash mid-write: the length prefix and half of a record.
	f, _ := os.OpenFile(tail, os.O_WRONLY|os.O_APPEND, 0)
	torn := append([]byte{0xe8, 0x07}, make([]byte, 400)...)
	f.Write(torn)
	f.Close()

	p := openT(t, cfg)
	rep := p.OpenReport()
	if rep.Recovery.TornTailRepairs != 1 || p.Stats().Repairs != 1 {
		t.Fatalf("open report %+v, want one torn-tail repair", rep.Recovery)
	}
	q, _ := os.ReadDir(filepath.Join(cfg.Dir, recovery.QuarantineDir))
	if len(q) != 1 {
		t.Fatalf("quarantine holds %d files, want 1", len(q))
	}
	if got, _ := os.ReadFile(filepath.Join(cfg.Dir, recovery.QuarantineDir, q[0].Name())); string(got) != string(torn) {
		t.Fatalf("quarantine holds %d bytes, want the %d torn bytes", len(got), len(torn))
	}
	if err := p.Flush(testCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	closeT(t, p, 10*time.Second)
	verify(t, b, []string{"rec"}, ids)
}

func TestOpenMidLogCorruption(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "rec", 1, nil)
	cfg := baseConfig(t, b)
	cfg.SegmentBytes = 64 << 10
	cfg.FullScanOnOpen = true
	ids := fillOffline(t, cfg.Dir, cfg.SegmentBytes, 300)
	segs, _ := wal.ListSegments(cfg.Dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want >= 3", len(segs))
	}
	// Flip a byte in the value of a record in the middle of the first segment.
	data, _ := os.ReadFile(segs[0].Path)
	off := int64(len(data) / 2)
	data[off] ^= 0x40
	os.WriteFile(segs[0].Path, data, 0o600)

	_, err := kafkawal.Open(cfg)
	var ce *recovery.CorruptionError
	if !errors.Is(err, kafkawal.ErrCorrupt) || !errors.As(err, &ce) {
		t.Fatalf("Open on a corrupt log: %v; want ErrCorrupt and a *recovery.CorruptionError", err)
	}
	if ce.Segment != segs[0].Path || ce.Offset > off || ce.Offset+ce.Bytes <= off {
		t.Fatalf("corruption reported at %s offset %d (+%d), flipped %s offset %d", ce.Segment, ce.Offset, ce.Bytes, segs[0].Path, off)
	}
	after, _ := os.ReadFile(segs[0].Path)
	if string(after) != string(data) {
		t.Fatal("FailOnCorruption changed the segment")
	}

	cfg.CorruptionPolicy = kafkawal.QuarantineCorruption
	p := openT(t, cfg)
	if lost := p.OpenReport().Recovery.LostRecords; lost != 1 {
		t.Fatalf("recovery reports %d records lost, want 1", lost)
	}
	// The same figure at once, before the sender reaches the hole.
	if st := p.Stats(); st.Lost != 1 {
		t.Fatalf("Stats.Lost %d right after Open, want recovery's 1", st.Lost)
	}
	if err := p.Flush(testCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if st.Lost != 1 || st.Delivered != uint64(len(ids)-1) {
		t.Fatalf("stats %+v: want 1 lost, %d delivered", st, len(ids)-1)
	}
	closeT(t, p, 10*time.Second)
	recs, _ := kafkatest.ReadAll(testCtx(t, time.Minute), b.Bootstrap(), []string{"rec"}, len(ids)-1)
	rep := kafkatest.Verify(ids, recs, recordID, nil)
	if rep.Lost != 1 || rep.OrderViolations != 0 || rep.Duplicates != 0 {
		t.Fatalf("read back: %v; want exactly the damaged record missing", rep)
	}
}

// entryOffset returns where the entry for seq starts in its segment file
// (its length prefix), parsing tidwall/wal's framing independently.
func entryOffset(t *testing.T, dir string, seq uint64) (path string, off, framed int64) {
	t.Helper()
	segs, err := wal.ListSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range segs {
		if i+1 < len(segs) && segs[i+1].First <= seq {
			continue
		}
		b, err := os.ReadFile(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		at := 0
		for cur := s.First; at < len(b); cur++ {
			n, k := binary.Uvarint(b[at:])
			if k <= 0 {
				break
			}
			if cur == seq {
				return s.Path, int64(at), int64(k) + int64(n)
			}
			at += k + int(n)
		}
	}
	t.Fatalf("seq %d not found in %s", seq, dir)
	return "", 0, 0
}

// The triage of issue 24: a byte flipped in seq 457 of the (only, so
// checked at every Open) segment, with the cursor at 1000. The record is in
// Kafka already, so under the default policy Open quarantines it, warns,
// counts nothing lost and goes on delivering.
func TestOpenCorruptionAlreadyDelivered(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "rec", 1, nil)
	cfg := baseConfig(t, b)
	p := openT(t, cfg)
	var ids []uint64
	for id := uint64(1); id <= 1000; id++ {
		if _, err := p.Append(testCtx(t, time.Minute), idRecord("rec", 0, id, value(1000, id))); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := p.Flush(testCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	closeT(t, p, 10*time.Second)
	if cur, _, _ := wal.LoadCursor(cfg.Dir); cur.Acked != 1000 {
		t.Fatalf("cursor %d after a full flush, want 1000", cur.Acked)
	}
	path, off, framed := entryOffset(t, cfg.Dir, 457)
	data, _ := os.ReadFile(path)
	data[off+framed-1] ^= 0x40
	os.WriteFile(path, data, 0o600)

	logs := logTo(&cfg) // the default policy: FailOnCorruption
	p = openT(t, cfg)
	rep := p.OpenReport().Recovery
	if rep.LostRecords != 0 || rep.DeliveredRecords != 1 || rep.Cursor != 1000 || len(rep.Quarantined) != 1 {
		t.Fatalf("recovery %+v; want the damaged record quarantined as delivered, nothing lost", rep)
	}
	warn := logs.lines("recovery: damaged records already delivered (at or below the cursor) replaced by holes; nothing lost")
	if len(warn) != 1 || warn[0]["level"] != "warn" || warn[0]["seq"] != float64(457) || warn[0]["cursor"] != float64(1000) {
		t.Fatalf("log: %v; want one warning naming seq 457 and cursor 1000\n%s", warn, logs)
	}
	if st := p.Stats(); st.Lost != 0 {
		t.Fatalf("Stats.Lost %d, want 0", st.Lost)
	}
	// And the producer works: one more record goes out.
	if _, err := p.Append(testCtx(t, time.Minute), idRecord("rec", 0, 1001, value(1000, 1001))); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, 1001)
	if err := p.Flush(testCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Lost != 0 || st.Delivered != 1 {
		t.Fatalf("stats %+v; want 1 delivered, 0 lost", st)
	}
	closeT(t, p, 10*time.Second)
	verify(t, b, []string{"rec"}, ids)
}
