package kafkawal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// idHeader carries each test record's ledger id, so that a record read back
// from Kafka can be matched with the Append that acknowledged it.
const idHeader = "kafkawal-test-id"

func idRecord(topic string, partition int32, id uint64, value []byte) kafkawal.Record {
	return kafkawal.Record{
		Topic:     topic,
		Partition: partition,
		Key:       []byte(strconv.FormatUint(id, 10)),
		Value:     value,
		Headers:   []kafkawal.Header{{Key: idHeader, Value: []byte(strconv.FormatUint(id, 10))}},
	}
}

func recordID(r *kgo.Record) (uint64, bool) {
	for _, h := range r.Headers {
		if h.Key == idHeader {
			id, err := strconv.ParseUint(string(h.Value), 10, 64)
			return id, err == nil
		}
	}
	return 0, false
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// debugLogger, when set (KWDEBUG=1), receives every test producer's log.
var debugLogger *zerolog.Logger

// baseConfig is a Config for broker b in a fresh temp dir.
func baseConfig(t testing.TB, b kafkatest.Broker) kafkawal.Config {
	return kafkawal.Config{
		Logger: debugLogger,
		Dir:    t.TempDir(),
		Kafka: kafka.ConfigMap{
			"bootstrap.servers": b.Bootstrap(),
			// Fail records for a missing topic after 2s, not 30s.
			"topic.metadata.propagation.max.ms": 2000,
			"reconnect.backoff.max.ms":          1000,
		},
	}
}

func openT(t testing.TB, cfg kafkawal.Config) *kafkawal.Producer {
	t.Helper()
	p, err := kafkawal.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	// A test that fails half-way still releases its producer (a second
	// Close is a no-op), so one failure does not leak into the next test.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

func createTopic(t testing.TB, b kafkatest.Broker, name string, partitions int32, configs map[string]string) {
	t.Helper()
	if err := b.CreateTopic(testCtx(t, 60*time.Second), name, partitions, configs); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// verify reads topics back with franz-go and compares them with the ledger
// of acknowledged ids: nothing lost, per-partition order kept.
func verify(t testing.TB, b kafkatest.Broker, topics []string, acked []uint64) kafkatest.Report {
	t.Helper()
	recs, err := kafkatest.ReadAll(testCtx(t, 3*time.Minute), b.Bootstrap(), topics, len(acked))
	if err != nil {
		t.Logf("read back: %v", err)
	}
	rep := kafkatest.Verify(acked, recs, recordID, nil)
	t.Logf("verify %s: %v", strings.Join(topics, ","), rep)
	if !rep.OK() {
		t.Fatalf("verify failed: %v", rep)
	}
	return rep
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func closeT(t testing.TB, p *kafkawal.Producer, d time.Duration) {
	t.Helper()
	if err := p.Close(testCtx(t, d)); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func value(n int, id uint64) []byte {
	v := make([]byte, n)
	copy(v, fmt.Sprint(id))
	return v
}

// logBuffer collects a producer's log lines (JSON, one per line) for a test
// to look at; safe for the goroutines that log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the logged events whose message is msg, decoded.
func (b *logBuffer) lines(msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(b.String(), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(l), &ev) == nil && ev["message"] == msg {
			out = append(out, ev)
		}
	}
	return out
}

// logTo makes cfg log into a new logBuffer at debug level (and to the
// debug logger's output too when KWDEBUG is set).
func logTo(cfg *kafkawal.Config) *logBuffer {
	b := &logBuffer{}
	var w io.Writer = b
	if debugLogger != nil {
		w = io.MultiWriter(b, zerolog.ConsoleWriter{Out: os.Stderr})
	}
	lg := zerolog.New(w).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	cfg.Logger = &lg
	return b
}
