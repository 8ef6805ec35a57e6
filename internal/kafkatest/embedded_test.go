package kafkatest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// startEmbeddedT starts an embedded broker for t whatever KAFKAWAL_BROKER
// says, and closes it when t ends.
func startEmbeddedT(t *testing.T, opts Options) Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b, err := StartEmbedded(ctx, opts)
	if err != nil {
		t.Fatalf("StartEmbedded(%+v): %v", opts, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newKgo(t *testing.T, bootstrap string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(Seeds(bootstrap)...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// idRecord is a record whose value is its id, big endian.
func idRecord(topic string, id uint64) *kgo.Record {
	v := binary.BigEndian.AppendUint64(nil, id)
	return &kgo.Record{Topic: topic, Key: []byte(strconv.FormatUint(id, 10)), Value: v}
}

func recordID(r *kgo.Record) (uint64, bool) {
	if len(r.Value) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(r.Value), true
}

func ids(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// produceIDs produces one record per id with a fresh idempotent client and
// fails t unless every one is acknowledged.
func produceIDs(t *testing.T, ctx context.Context, bootstrap, topic string, ids []uint64) {
	t.Helper()
	cl := newKgo(t, bootstrap)
	recs := make([]*kgo.Record, len(ids))
	for i, id := range ids {
		recs[i] = idRecord(topic, id)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records to %s via %s: %v", len(ids), topic, bootstrap, err)
	}
	cl.Close()
}

// readVerify reads topic back and fails t unless it holds exactly acked,
// once each, in order per partition.
func readVerify(t *testing.T, ctx context.Context, bootstrap, topic string, acked []uint64) {
	t.Helper()
	got, err := ReadAll(ctx, bootstrap, []string{topic}, len(acked))
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	r := Verify(acked, got, recordID, nil)
	if !r.OK() || r.Duplicates != 0 || r.Delivered != len(acked) {
		t.Fatalf("read back %s: %v", topic, r)
	}
}

func TestEmbeddedKillRestartKeepsData(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"direct", Options{}},
		{"proxy", Options{Proxy: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			b := startEmbeddedT(t, tc.opts)
			if b.Kind() != "embedded" {
				t.Fatalf("Kind() = %q", b.Kind())
			}
			if (b.Proxy() != nil) != tc.opts.Proxy {
				t.Fatalf("Proxy() = %v with Options.Proxy %v", b.Proxy(), tc.opts.Proxy)
			}
			const topic = "kill-restart"
			if err := b.CreateTopic(ctx, topic, 3, nil); err != nil {
				t.Fatalf("CreateTopic: %v", err)
			}
			bootstrap := b.Bootstrap()
			produceIDs(t, ctx, bootstrap, topic, ids(1, 200))
			if p := b.Proxy(); p != nil {
				// A client's connections, while it lives, are the proxy's.
				if err := newKgo(t, bootstrap).Ping(ctx); err != nil || p.Conns() == 0 {
					t.Fatalf("ping through the proxy: %v, %d connections", err, p.Conns())
				}
			}

			if err := b.Kill(); err != nil {
				t.Fatalf("Kill: %v", err)
			}
			pingCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			err := newKgo(t, bootstrap).Ping(pingCtx)
			cancel()
			if err == nil {
				t.Fatal("a killed broker answers Ping")
			}

			if err := b.Restart(ctx); err != nil {
				t.Fatalf("Restart: %v", err)
			}
			if b.Bootstrap() != bootstrap {
				t.Fatalf("Restart moved the broker from %s to %s", bootstrap, b.Bootstrap())
			}
			if err := b.Restart(ctx); err == nil {
				t.Fatal("Restart of a running broker succeeded")
			}
			produceIDs(t, ctx, bootstrap, topic, ids(201, 300))
			readVerify(t, ctx, bootstrap, topic, ids(1, 300))
		})
	}
}

// TestEmbeddedAdvertisesProxy: a client that bootstraps from the broker's
// own port still reaches the broker through the proxy, because that is the
// address it learns from metadata.
func TestEmbeddedAdvertisesProxy(t *testing.T) {
	ctx := testCtx(t)
	b := startEmbeddedT(t, Options{Proxy: true})
	p := b.Proxy()
	if b.Bootstrap() != p.Addr() {
		t.Fatalf("Bootstrap() = %s, want the proxy's %s", b.Bootstrap(), p.Addr())
	}
	real := p.Target()
	if real == p.Addr() {
		t.Fatalf("proxy forwards to itself (%s)", real)
	}

	cl := newKgo(t, real) // tries to bypass the proxy
	meta, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		t.Fatalf("metadata from %s: %v", real, err)
	}
	if len(meta.Brokers) != 1 {
		t.Fatalf("brokers %v, want one", meta.Brokers)
	}
	if got := net.JoinHostPort(meta.Brokers[0].Host, strconv.Itoa(int(meta.Brokers[0].Port))); got != p.Addr() {
		t.Fatalf("broker advertises %s, want the proxy's %s", got, p.Addr())
	}

	apiVersions := func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		_, err := cl.Broker(int(meta.Brokers[0].NodeID)).Request(ctx, kmsg.NewPtrApiVersionsRequest())
		return err
	}
	if err := apiVersions(10 * time.Second); err != nil {
		t.Fatalf("request to the advertised broker: %v", err)
	}
	p.Blackhole()
	if err := apiVersions(500 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request during blackhole: %v, want it to time out", err)
	}
	// The package's own admin traffic bypasses the proxy's faults.
	if err := b.CreateTopic(ctx, "during-blackhole", 1, nil); err != nil {
		t.Fatalf("CreateTopic during blackhole: %v", err)
	}
	p.Heal()
	deadline := time.Now().Add(10 * time.Second)
	for err := apiVersions(time.Second); err != nil; err = apiVersions(time.Second) {
		if time.Now().After(deadline) {
			t.Fatalf("request after Heal: %v", err)
		}
	}
}

func TestEmbeddedEphemeralRestartIsEmpty(t *testing.T) {
	ctx := testCtx(t)
	b := startEmbeddedT(t, Options{Ephemeral: true})
	const topic = "ephemeral"
	if err := b.CreateTopic(ctx, topic, 2, nil); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	produceIDs(t, ctx, b.Bootstrap(), topic, ids(1, 10))
	if err := b.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := b.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}

	topics, err := kadm.NewClient(newKgo(t, b.Bootstrap())).ListTopics(ctx)
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	if names := topics.Names(); len(names) != 0 {
		t.Fatalf("topics after an ephemeral restart: %v, want none", names)
	}
	// Recreated, the topic starts over at offset 0 with nothing in it.
	if err := b.CreateTopic(ctx, topic, 2, nil); err != nil {
		t.Fatalf("CreateTopic after restart: %v", err)
	}
	readVerify(t, ctx, b.Bootstrap(), topic, nil)
}

func TestEmbeddedTopicCreation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      Options
		wantErr   error // from a produce to an unknown topic
		wantParts int
	}{
		{name: "explicit", opts: Options{}, wantErr: kerr.UnknownTopicOrPartition},
		{name: "auto", opts: Options{AutoCreateTopics: true, Partitions: 3}, wantParts: 3},
		{name: "auto_default_partitions", opts: Options{AutoCreateTopics: true}, wantParts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			b := startEmbeddedT(t, tc.opts)
			cl := newKgo(t, b.Bootstrap(), kgo.AllowAutoTopicCreation(), kgo.UnknownTopicRetries(2))
			err := cl.ProduceSync(ctx, idRecord("unknown", 1)).FirstErr()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("produce to an unknown topic: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				return
			}
			topics, err := kadm.NewClient(cl).ListTopics(ctx, "unknown")
			if err != nil {
				t.Fatalf("ListTopics: %v", err)
			}
			if n := len(topics["unknown"].Partitions); n != tc.wantParts {
				t.Fatalf("auto-created topic has %d partitions, want %d", n, tc.wantParts)
			}
		})
	}
}

func TestEmbeddedCreateTopic(t *testing.T) {
	ctx := testCtx(t)
	b := startEmbeddedT(t, Options{})
	const topic = "small"
	if err := b.CreateTopic(ctx, topic, 2, map[string]string{"max.message.bytes": "1024"}); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	if err := b.CreateTopic(ctx, topic, 2, nil); !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("CreateTopic of an existing topic: %v, want TopicAlreadyExists", err)
	}

	cl := newKgo(t, b.Bootstrap(), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()))
	cfgs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatalf("DescribeTopicConfigs: %v", err)
	}
	if c, err := cfgs.On(topic, nil); err != nil || c.Err != nil || maxMessageBytes(c) != "1024" {
		t.Fatalf("max.message.bytes of %s = %q (%v, %v), want 1024", topic, maxMessageBytes(c), err, c.Err)
	}

	// kfake enforces max.message.bytes on the record batch, as Kafka does.
	for _, tc := range []struct {
		size    int
		wantErr error
	}{
		{size: 100},
		{size: 2000, wantErr: kerr.MessageTooLarge},
	} {
		err := cl.ProduceSync(ctx, &kgo.Record{Value: make([]byte, tc.size)}).FirstErr()
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("produce %d bytes: %v, want %v", tc.size, err, tc.wantErr)
		}
	}
}

func maxMessageBytes(c kadm.ResourceConfig) string {
	for _, kv := range c.Configs {
		if kv.Key == "max.message.bytes" {
			return kv.MaybeValue()
		}
	}
	return ""
}

func TestReadAll(t *testing.T) {
	ctx := testCtx(t)
	b := startEmbeddedT(t, Options{})
	const topic = "readall"
	if err := b.CreateTopic(ctx, topic, 3, nil); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	produceIDs(t, ctx, b.Bootstrap(), topic, ids(1, 10))
	produceIDs(t, ctx, b.Bootstrap(), topic, ids(1, 5)) // duplicates

	t.Run("beyond_want", func(t *testing.T) {
		got, err := ReadAll(ctx, b.Bootstrap(), []string{topic}, 4)
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		r := Verify(ids(1, 10), got, recordID, nil)
		if r.Delivered != 15 || r.Duplicates != 5 || !r.OK() {
			t.Fatalf("ReadAll(want 4) = %v, want all 15 records", r)
		}
	})
	t.Run("ctx_ends", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		got, err := ReadAll(ctx, b.Bootstrap(), []string{topic}, 16)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "read 15 of 16") {
			t.Fatalf("ReadAll(want 16) error = %v, want a deadline after 15 records", err)
		}
		if len(got) != 15 {
			t.Fatalf("ReadAll(want 16) returned %d records, want the 15 it read", len(got))
		}
	})
	t.Run("unknown_topic", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := ReadAll(ctx, b.Bootstrap(), []string{"nope"}, 0)
		t.Logf("ReadAll of a missing topic: %v", err)
		if err == nil {
			t.Fatal("ReadAll of a missing topic succeeded")
		}
	})
}

// TestReadAllReadsToTheEnd: a partition holding more than one fetch returns
// is read to its end, even when want is reached after the first fetch.
func TestReadAllReadsToTheEnd(t *testing.T) {
	ctx := testCtx(t)
	b := startEmbeddedT(t, Options{})
	const topic = "big"
	if err := b.CreateTopic(ctx, topic, 1, nil); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	// 40 records of 100 KiB: four times kgo's 1 MiB per-partition fetch.
	const n = 40
	cl := newKgo(t, b.Bootstrap(), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for id := range uint64(n) {
		r := idRecord(topic, id)
		r.Value = append(r.Value, make([]byte, 100<<10)...)
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	got, err := ReadAll(ctx, b.Bootstrap(), []string{topic}, 1)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	prefixID := func(r *kgo.Record) (uint64, bool) { return recordID(&kgo.Record{Value: r.Value[:8]}) }
	if r := Verify(ids(0, n-1), got, prefixID, nil); !r.OK() || r.Delivered != n {
		t.Fatalf("ReadAll(want 1) of %d big records: %v", n, r)
	}
}

// fakeTB records how StartT ends a test.
type fakeTB struct {
	testing.TB
	fatal    string
	skipped  bool
	cleanups int
}

func (f *fakeTB) Helper()                   {}
func (f *fakeTB) Context() context.Context  { return context.Background() }
func (f *fakeTB) Cleanup(func())            { f.cleanups++ }
func (f *fakeTB) Skip(...any)               { f.skipped = true }
func (f *fakeTB) Skipf(string, ...any)      { f.skipped = true }
func (f *fakeTB) SkipNow()                  { f.skipped = true }
func (f *fakeTB) Fatalf(s string, a ...any) { f.fatal = fmt.Sprintf(s, a...); runtime.Goexit() }

func TestStartT(t *testing.T) {
	t.Run("starts_and_cleans_up", func(t *testing.T) {
		var b Broker
		t.Run("inner", func(t *testing.T) {
			b = StartT(t, Options{})
			if b.Kind() != Kind() {
				t.Fatalf("StartT started a %s broker, KAFKAWAL_BROKER selects %s", b.Kind(), Kind())
			}
		})
		if err := newKgo(t, b.Bootstrap()).Ping(shortCtx(t)); err == nil {
			t.Fatal("broker still answers after its test ended")
		}
	})
	t.Run("fails_not_skips", func(t *testing.T) {
		t.Setenv(EnvBroker, "real")
		t.Setenv(EnvKafkaScript, t.TempDir()+"/missing/kafka.sh")
		f := &fakeTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			StartT(f, Options{})
		}()
		<-done
		if f.fatal == "" || f.skipped || f.cleanups != 0 {
			t.Fatalf("StartT with no broker: fatal %q, skipped %v, cleanups %d; want a failure only", f.fatal, f.skipped, f.cleanups)
		}
	})
}

func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

func TestEmbeddedCloseLeavesNothing(t *testing.T) {
	base := runtime.NumGoroutine()
	ctx := testCtx(t)
	b, err := StartEmbedded(ctx, Options{Proxy: true})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	if err := b.CreateTopic(ctx, "leak", 2, nil); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Bootstrap()))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, idRecord("leak", 1)).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if err := b.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := b.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	cl.Close()
	dir := b.(*embedded).dir
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("data dir: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("data dir %s after Close: %v, want it removed", dir, err)
	}

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s",
				runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(pollInterval)
	}
}
