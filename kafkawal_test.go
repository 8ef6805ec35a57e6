package kafkawal_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/wal"
)

// 100k records over 3 topics x 4 partitions: all delivered, per-partition
// order equal to append order, cursor equal to the last sequence.
func TestDeliveryAllInOrder(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	topics := []string{"orders", "payments", "events"}
	for _, tp := range topics {
		createTopic(t, b, tp, 4, nil)
	}
	cfg := baseConfig(t, b)
	p := openT(t, cfg)
	const total, batch = 100000, 1000
	ctx := testCtx(t, 5*time.Minute)
	var acked []uint64
	for id := uint64(1); id <= total; {
		recs := make([]kafkawal.Record, 0, batch)
		for i := 0; i < batch; i++ {
			recs = append(recs, idRecord(topics[id%3], int32(id/3%4), id, value(100, id)))
			acked = append(acked, id)
			id++
		}
		if _, err := p.AppendBatch(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if st.Cursor != total || st.LastSeq != total || st.Delivered != total || st.BacklogRecords != 0 {
		t.Fatalf("after Flush: %+v", st)
	}
	closeT(t, p, 30*time.Second)
	cur, _, err := wal.LoadCursor(cfg.Dir)
	if err != nil || cur.Acked != total {
		t.Fatalf("persisted cursor %d (%v), want %d", cur.Acked, err, total)
	}
	rep := verify(t, b, topics, acked)
	if rep.Duplicates != 0 {
		t.Fatalf("%d duplicates without any fault", rep.Duplicates)
	}
}

// Partition is explicit: 0 means partition 0; PartitionAny lets the
// partitioner hash the key.
func TestPartitionSemantics(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "p", 4, nil)
	p := openT(t, baseConfig(t, b))
	defer closeT(t, p, 30*time.Second)
	ctx := testCtx(t, time.Minute)
	var acked []uint64
	for id := uint64(1); id <= 40; id++ {
		part := int32(0)
		if id > 20 {
			part = kafkawal.PartitionAny
		}
		r := idRecord("p", part, id, []byte("v"))
		r.Key = []byte(fmt.Sprint("key-", id%5))
		if _, err := p.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, id)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := kafkatest.ReadAll(ctx, b.Bootstrap(), []string{"p"}, 40)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]int32{}
	spread := map[int32]bool{}
	for _, r := range recs {
		id, _ := recordID(r)
		if id <= 20 && r.Partition != 0 {
			t.Fatalf("record %d with Partition 0 landed in partition %d", id, r.Partition)
		}
		if id > 20 {
			if prev, ok := byKey[string(r.Key)]; ok && prev != r.Partition {
				t.Fatalf("key %s in partitions %d and %d", r.Key, prev, r.Partition)
			}
			byKey[string(r.Key)] = r.Partition
			spread[r.Partition] = true
		}
	}
	if len(spread) < 2 {
		t.Fatalf("PartitionAny with 5 keys used only partitions %v", spread)
	}
}

func TestTimestampSetAtAppend(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "ts", 1, nil)
	p := openT(t, baseConfig(t, b))
	defer closeT(t, p, 30*time.Second)
	ctx := testCtx(t, time.Minute)
	before := time.Now().Truncate(time.Millisecond)
	given := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	r1 := idRecord("ts", 0, 1, []byte("now"))
	r2 := idRecord("ts", 0, 2, []byte("given"))
	r2.Timestamp = given
	if _, err := p.AppendBatch(ctx, []kafkawal.Record{r1, r2}); err != nil {
		t.Fatal(err)
	}
	if !r1.Timestamp.IsZero() {
		t.Fatal("AppendBatch modified the caller's record")
	}
	// The same through AppendAsync.
	r3 := idRecord("ts", 0, 3, []byte("now"))
	r4 := idRecord("ts", 0, 4, []byte("given"))
	r4.Timestamp = given
	for _, r := range []kafkawal.Record{r3, r4} {
		p.AppendAsync(ctx, r, func(_ uint64, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := kafkatest.ReadAll(ctx, b.Bootstrap(), []string{"ts"}, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		id, _ := recordID(r)
		if (id == 1 || id == 3) && (r.Timestamp.Before(before) || r.Timestamp.After(time.Now())) {
			t.Fatalf("record %d: unset timestamp became %v, want the append time", id, r.Timestamp)
		}
		if (id == 2 || id == 4) && !r.Timestamp.Equal(given) {
			t.Fatalf("record %d: given timestamp became %v", id, r.Timestamp)
		}
	}
}

func TestBadInput(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	cfg := baseConfig(t, b)
	cfg.MaxRecordBytes = 1000
	p := openT(t, cfg)
	ctx := testCtx(t, time.Minute)
	if _, err := p.Append(ctx, kafkawal.Record{Topic: "", Value: []byte("v")}); !errors.Is(err, kafkawal.ErrInvalidRecord) || !strings.Contains(err.Error(), "empty topic") {
		t.Fatalf("empty topic: %v, want ErrInvalidRecord naming the topic", err)
	}
	if _, err := p.Append(ctx, kafkawal.Record{Topic: "t", Partition: -2}); !errors.Is(err, kafkawal.ErrInvalidRecord) || !strings.Contains(err.Error(), "partition -2") {
		t.Fatalf("bad partition: %v, want ErrInvalidRecord naming the partition", err)
	}
	_, err := p.Append(ctx, kafkawal.Record{Topic: "t", Value: make([]byte, 1000)})
	if !errors.Is(err, kafkawal.ErrTooLarge) || !errors.Is(err, kafkawal.ErrInvalidRecord) {
		t.Fatalf("oversize: %v, want ErrTooLarge and ErrInvalidRecord", err)
	}
	if _, err := p.AppendBatch(ctx, []kafkawal.Record{{Topic: "t"}, {Topic: ""}}); !errors.Is(err, kafkawal.ErrInvalidRecord) || !strings.Contains(err.Error(), "record 1") {
		t.Fatalf("batch with one bad record: %v, want ErrInvalidRecord naming record 1", err)
	}
	if _, err := p.AppendBatch(ctx, nil); !errors.Is(err, kafkawal.ErrInvalidRecord) {
		t.Fatalf("empty batch: %v, want ErrInvalidRecord", err)
	}
	if st := p.Stats(); st.LastSeq != 0 || st.Appended != 0 || st.DiskBytes != 0 {
		t.Fatalf("bad input changed the WAL: %+v", st)
	}
	closeT(t, p, 10*time.Second)
	if _, err := p.Append(ctx, kafkawal.Record{Topic: "t"}); !errors.Is(err, kafkawal.ErrClosed) || errors.Is(err, kafkawal.ErrInvalidRecord) {
		t.Fatalf("Append after Close: %v, want ErrClosed and not ErrInvalidRecord", err)
	}
	if err := p.Close(ctx); !errors.Is(err, kafkawal.ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
	var nilP *kafkawal.Producer
	if _, err := nilP.Append(ctx, kafkawal.Record{Topic: "t"}); !errors.Is(err, kafkawal.ErrClosed) {
		t.Fatalf("nil producer: %v", err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	good := kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"}
	cases := []struct {
		name  string
		cfg   kafkawal.Config
		field string
	}{
		{"no dir", kafkawal.Config{Kafka: good}, "Dir"},
		{"no bootstrap", kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{}}, "bootstrap.servers"},
		{"acks 1", kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": "x:1", "acks": "1"}}, "acks"},
		{"no idempotence", kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": "x:1", "enable.idempotence": false}}, "enable.idempotence"},
		{"transactional", kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": "x:1", "transactional.id": "x"}}, "transactional.id"},
		{"report fields", kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": "x:1", "go.delivery.report.fields": "all"}}, "go.delivery.report.fields"},
		{"cap below segments", kafkawal.Config{Dir: dir, Kafka: good, MaxDiskBytes: 1 << 20, SegmentBytes: 8 << 20}, "MaxDiskBytes"},
		{"cap below the smallest segments", kafkawal.Config{Dir: dir, Kafka: good, MaxDiskBytes: 128 << 10}, "MaxDiskBytes"},
		{"negative in flight", kafkawal.Config{Dir: dir, Kafka: good, MaxInFlight: -1}, "MaxInFlight"},
		{"bad durability", kafkawal.Config{Dir: dir, Kafka: good, Durability: 7}, "Durability"},
		{"bad librdkafka key", kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": "x:1", "no.such.setting": 1}}, "no.such.setting"},
		{"bad librdkafka value", kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": "x:1", "batch.num.messages": "many"}}, "batch.num.messages"},
		{"finite message timeout", kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": "x:1", "message.timeout.ms": 30000}}, "message.timeout.ms"},
		{"record over message.max.bytes", kafkawal.Config{Dir: dir, Kafka: good, MaxRecordBytes: 3 << 20, MaxDiskBytes: 64 << 20}, "MaxRecordBytes"},
		{"record over a lowered message.max.bytes", kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": "x:1", "message.max.bytes": 100000},
			MaxRecordBytes: 200000}, "MaxRecordBytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Validate says so too, before anything exists; and a failed
			// Open creates nothing.
			if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("Validate: %v, want an error naming %s", err, c.field)
			}
			if c.cfg.Dir != "" {
				c.cfg.Dir = filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
			}
			p, err := kafkawal.Open(c.cfg)
			if err == nil {
				p.Close(context.Background())
				t.Fatal("Open accepted an invalid config")
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error %q does not name %s", err, c.field)
			}
			if _, err := os.Stat(c.cfg.Dir); c.cfg.Dir != "" && !os.IsNotExist(err) {
				t.Fatalf("a failed Open left %s behind (%v)", c.cfg.Dir, err)
			}
		})
	}
	// The same settings made consistent are accepted.
	for name, cfg := range map[string]kafkawal.Config{
		"finite timeout, weaker delivery allowed": {Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": "x:1", "message.timeout.ms": 30000}, AllowWeakerDelivery: true},
		"record within a raised message.max.bytes": {Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": "x:1", "message.max.bytes": 4000000},
			MaxRecordBytes: 3 << 20, MaxDiskBytes: 64 << 20},
	} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", name, err)
		}
	}
	// A password never appears in an error.
	_, err := kafkawal.Open(kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": "x:1", "sasl.password": "hunter2", "acks": 0}})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password or accepts acks=0: %v", err)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	cfg := baseConfig(t, b)
	p := openT(t, cfg)
	defer closeT(t, p, 10*time.Second)
	if _, err := kafkawal.Open(cfg); !errors.Is(err, kafkawal.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

// Permanent errors: an oversize record at the broker and an unknown topic
// with auto-create off are dead-lettered; records behind them are delivered.
func TestPermanentErrorsAreDeadLettered(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "small", 1, map[string]string{"max.message.bytes": "50000"})
	cfg := baseConfig(t, b)
	cfg.Kafka["compression.type"] = "none"
	// librdkafka's batches stay under the topic's limit, so the oversize
	// record travels alone and only it is refused (see the README).
	cfg.Kafka["batch.size"] = 40000
	var mu sync.Mutex
	var told []kafkawal.DeadLetter
	cfg.OnDeadLetter = func(dl kafkawal.DeadLetter) { mu.Lock(); told = append(told, dl); mu.Unlock() }
	p := openT(t, cfg)
	ctx := testCtx(t, 2*time.Minute)
	var acked []uint64
	for id := uint64(1); id <= 30; id++ {
		r := idRecord("small", 0, id, value(100, id))
		switch id {
		case 10:
			r.Value = value(100000, id) // over the topic's max.message.bytes
		case 20:
			r.Topic = "missing-topic"
		default:
			acked = append(acked, id)
		}
		if _, err := p.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// Flush says that two of the records it waited for are not in Kafka.
	var dle *kafkawal.DeadLetterError
	if err := p.Flush(ctx); !errors.As(err, &dle) || dle.Count != 2 || dle.First.Seq != 10 {
		t.Fatalf("Flush: %v, want a *DeadLetterError for 2 records from seq 10", err)
	}
	st := p.Stats()
	mu.Lock()
	for _, d := range told {
		t.Logf("told: dead letter seq %d topic %s: %s", d.Seq, d.Record.Topic, d.Err)
	}
	mu.Unlock()
	if st.DeadLettered != 2 || st.Delivered != 28 || st.Cursor != 30 {
		t.Fatalf("stats %+v: want 2 dead-lettered, 28 delivered, cursor 30", st)
	}
	mu.Lock()
	if len(told) != 2 {
		t.Fatalf("OnDeadLetter called %d times, want 2", len(told))
	}
	mu.Unlock()
	closeT(t, p, 10*time.Second)
	var dls []wal.DeadLetter
	if err := wal.ReadDeadLetters(cfg.Dir, func(d wal.DeadLetter) error { dls = append(dls, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 {
		t.Fatalf("dead-letter log holds %d, want 2", len(dls))
	}
	for _, d := range dls {
		if d.Err == "" || d.Time.IsZero() || (d.Seq != 10 && d.Seq != 20) {
			t.Fatalf("dead letter %d: err %q time %v", d.Seq, d.Err, d.Time)
		}
		// The code is kept beside the text, for applications to act on.
		want := map[uint64][]kafka.ErrorCode{10: {kafka.ErrMsgSizeTooLarge}, 20: {kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic}}[d.Seq]
		if !slices.Contains(want, kafka.ErrorCode(d.Code)) {
			t.Fatalf("dead letter %d: code %d (%v), want one of %v", d.Seq, d.Code, kafka.ErrorCode(d.Code), want)
		}
		t.Logf("dead letter seq %d topic %s: %s", d.Seq, d.Record.Topic, d.Err)
	}
	verify(t, b, []string{"small"}, acked)
}

// Close with a backlog: what was not delivered stays in the WAL and the
// next Open delivers it; nothing lost, duplicates counted.
func TestCloseWithBacklogThenReopen(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{Proxy: true})
	createTopic(t, b, "backlog", 2, nil)
	cfg := baseConfig(t, b)
	logs := logTo(&cfg)
	p := openT(t, cfg)
	ctx := testCtx(t, 2*time.Minute)
	var acked []uint64
	id := uint64(1)
	appendN := func(p *kafkawal.Producer, n int) {
		for i := 0; i < n; i++ {
			if _, err := p.Append(ctx, idRecord("backlog", int32(id%2), id, value(200, id))); err != nil {
				t.Fatal(err)
			}
			acked = append(acked, id)
			id++
		}
	}
	appendN(p, 100)
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the cursor persisted at 100", func() bool { return p.Stats().PersistedCursor == 100 })
	b.Proxy().Blackhole()
	appendN(p, 500)
	shortCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := p.Close(shortCtx)
	cancel()
	if err == nil {
		t.Fatal("Close reported everything delivered during a blackhole")
	}
	t.Logf("Close during outage: %v", err)
	// The operator is told, at warn level, how many records wait.
	closed := logs.lines("kafkawal: closed with records undelivered; they stay in the WAL and the next Open sends them")
	if len(closed) != 1 || closed[0]["level"] != "warn" || closed[0]["undelivered_records"] != float64(500) {
		t.Fatalf("close log %v, want one warning counting 500 undelivered records", closed)
	}
	b.Proxy().Heal()
	p = openT(t, cfg)
	if rep := p.OpenReport(); rep.Replay != 500 {
		t.Fatalf("Open found %d records to replay, want 500", rep.Replay)
	}
	if st := p.Stats(); st.PersistedCursor < 100 {
		t.Fatalf("persisted cursor after reopen %d, want at least 100", st.PersistedCursor)
	}
	appendN(p, 100)
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	closeT(t, p, 30*time.Second)
	verify(t, b, []string{"backlog"}, acked)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// WAL files are 0600 and directories 0700 by default, including the ones
// made beside the segments (cursor, dead letters, lock).
func TestDefaultPermissions(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "perm", 1, nil)
	cfg := baseConfig(t, b)
	cfg.Dir = filepath.Join(cfg.Dir, "wal")
	p := openT(t, cfg)
	ctx := testCtx(t, time.Minute)
	if _, err := p.Append(ctx, idRecord("perm", 0, 1, []byte("v"))); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	closeT(t, p, 10*time.Second)
	n := 0
	err := filepath.Walk(cfg.Dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("walked only %d entries", n)
	}
}
