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

// TestParkedRecordsAfterACrash with keyed PartitionAny records: the park
// log holds the records whose key hashes to partition 0. At Open the
// topic's partition count is not known until metadata comes, so the
// parked partition's records must be told apart from the others by the
// park log's own count, not the sender's (found by the crash drill on two
// real brokers, where a stall takes the keyed topic's partitions too).
func TestParkedKeyedRecordsAfterACrash(t *testing.T) {
	const n, a, b = 400, 101, 301
	cases := []struct {
		name      string
		cursor    uint64
		parkTo    uint64
		parkAcked uint64
	}{
		{"copy synced, cursor not moved", a - 1, b, 0},
		{"cursor past the parked records", b - 1, b, 0},
		{"park log half delivered", b - 1, b, 200},
		{"last copy torn before its sync", a - 1, 201, 0},
	}
	var keys [4][]byte
	for q := range keys {
		keys[q] = keyFor(int32(q), 4)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bk := kafkatest.StartT(t, kafkatest.Options{})
			createTopic(t, bk, "t", 4, nil)
			cfg := baseConfig(t, bk)
			l, _, err := wal.Open(cfg.Dir, wal.Options{})
			if err != nil {
				t.Fatal(err)
			}
			recs := map[uint64]kafkawal.Record{}
			for id := uint64(1); id <= n; id++ {
				r := idRecord("t", kafkawal.PartitionAny, id, value(100, id))
				r.Key = keys[id%4]
				if seq, err := l.Append(context.Background(), []wal.Record{r}); err != nil || seq != id {
					t.Fatalf("append %d: seq %d, %v", id, seq, err)
				}
				recs[id] = r
			}
			pl, err := l.CreatePark(wal.ParkMeta{Topic: "t", Partition: 0, Count: 4, Partitioner: "consistent_random"})
			if err != nil {
				t.Fatal(err)
			}
			parked := map[uint64]bool{}
			for id := uint64(a); id < c.parkTo; id++ {
				if id%4 == 0 {
					r := recs[id]
					if err := pl.Append(id, &r); err != nil {
						t.Fatal(err)
					}
					parked[id] = true
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
			var want []uint64
			for id := uint64(1); id <= n; id++ {
				if id > c.cursor || (parked[id] && id > c.parkAcked) {
					want = append(want, id)
				}
			}
			p := openT(t, cfg)
			ctx := testCtx(t, 2*time.Minute)
			if err := p.Flush(ctx); err != nil {
				t.Fatalf("flush: %v; stats %+v", err, p.Stats())
			}
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
		})
	}
}
