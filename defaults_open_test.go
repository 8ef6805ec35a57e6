package kafkawal_test

import (
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/wal"
)

// TestOpenSmallCap is the configuration a new user tries first: only a
// 16 MiB cap. It opens, spreads the WAL over segments that fit the cap,
// and delivers.
func TestOpenSmallCap(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "small", 1, nil)
	dir := t.TempDir()
	p := openT(t, kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": b.Bootstrap()}, MaxDiskBytes: 16 << 20})
	ctx := testCtx(t, time.Minute)
	rs := make([]kafkawal.Record, 1000)
	for i := range rs {
		rs[i] = idRecord("small", 0, uint64(i+1), make([]byte, 5000))
	}
	if _, err := p.AppendBatch(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.MaxDiskBytes != 16<<20 {
		t.Errorf("MaxDiskBytes %d", st.MaxDiskBytes)
	}
	segs, err := wal.ListSegments(dir)
	if err != nil || len(segs) < 3 {
		t.Fatalf("5 MB in %d segments (%v), want 2 MiB ones", len(segs), err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}
