package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// requireRealTier skips t unless KAFKAWAL_BROKER=real. This is the only skip
// allowed in the package: the embedded tier runs the same scenarios, and
// .ci/run always runs this tier too.
func requireRealTier(t *testing.T) {
	t.Helper()
	if Kind() != "real" {
		t.Skipf("real Apache Kafka tier not selected: set %s=real to run it (needs java 17+, and mvn on first use)", EnvBroker)
	}
}

// startRealT starts a real broker for t and closes it when t ends.
func startRealT(t *testing.T, ctx context.Context, opts Options) Broker {
	t.Helper()
	begin := time.Now()
	b, err := StartReal(ctx, opts)
	if err != nil {
		t.Fatalf("StartReal: %v", err)
	}
	t.Logf("real broker up in %v at %s", time.Since(begin).Round(time.Millisecond), b.Bootstrap())
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// TestRealKillRestartKeepsData: what the broker acknowledged (acks=all)
// before a SIGKILL is all there after a restart, in order per partition.
func TestRealKillRestartKeepsData(t *testing.T) {
	requireRealTier(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	b := startRealT(t, ctx, Options{})
	if got := b.Kind(); got != "real" {
		t.Fatalf("Kind() = %q, want real", got)
	}
	if b.Proxy() != nil {
		t.Fatalf("Proxy() = %v without Options.Proxy, want nil", b.Proxy())
	}

	const (
		topic      = "kafkatest-real-kill"
		partitions = 3
		n          = 100
	)
	if err := b.CreateTopic(ctx, topic, partitions, nil); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}

	cpu0, err := b.CPU()
	if err != nil || cpu0 <= 0 {
		t.Fatalf("CPU() = %v, %v after start; want the JVM's start-up time, above 0", cpu0, err)
	}
	produced := produceNumbered(t, ctx, b.Bootstrap(), topic, partitions, n)
	if cpu1, err := b.CPU(); err != nil || cpu1 < cpu0 {
		t.Fatalf("CPU() = %v, %v after producing; want at least %v", cpu1, err, cpu0)
	}

	if err := b.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if c, err := net.DialTimeout("tcp", b.Bootstrap(), time.Second); err == nil {
		c.Close()
		t.Fatalf("broker still accepts connections on %s after Kill", b.Bootstrap())
	}

	begin := time.Now()
	if err := b.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	t.Logf("restart after SIGKILL took %v", time.Since(begin).Round(time.Millisecond))

	got := consumeAll(t, ctx, b.Bootstrap(), topic, partitions, n)
	checkNumbered(t, produced, got, n)

	// A second Restart without Kill is refused; Close still works after it.
	if err := b.Restart(ctx); err == nil {
		t.Fatalf("Restart of a running broker succeeded, want an error")
	}
}

// TestRealProxyIsAdvertised: with Options.Proxy every client connection goes
// through the proxy, because the broker advertises the proxy's address, and
// the address survives Kill and Restart.
func TestRealProxyIsAdvertised(t *testing.T) {
	requireRealTier(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	b := startRealT(t, ctx, Options{Proxy: true})
	p := b.Proxy()
	if p == nil {
		t.Fatal("Proxy() = nil with Options.Proxy")
	}
	if b.Bootstrap() != p.Addr() {
		t.Fatalf("Bootstrap() = %s, want the proxy's address %s", b.Bootstrap(), p.Addr())
	}
	const topic = "kafkatest-real-proxy"
	if err := b.CreateTopic(ctx, topic, 1, nil); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	checkAdvertised(t, ctx, b.Bootstrap())
	produced := produceNumbered(t, ctx, b.Bootstrap(), topic, 1, 10)

	if err := b.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := b.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if b.Bootstrap() != p.Addr() || b.Proxy() != p {
		t.Fatalf("Restart changed the proxy: bootstrap %s proxy %p, want %s %p", b.Bootstrap(), b.Proxy(), p.Addr(), p)
	}
	checkAdvertised(t, ctx, b.Bootstrap())
	checkNumbered(t, produced, consumeAll(t, ctx, b.Bootstrap(), topic, 1, 10), 10)
}

// TestRealEphemeralRestartIsEmpty: with Options.Ephemeral the broker comes
// back from Kill without its data, as if its disk had been replaced.
func TestRealEphemeralRestartIsEmpty(t *testing.T) {
	requireRealTier(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	b := startRealT(t, ctx, Options{Ephemeral: true, AutoCreateTopics: false})
	const topic = "kafkatest-real-ephemeral"
	if err := b.CreateTopic(ctx, topic, 2, nil); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	produceNumbered(t, ctx, b.Bootstrap(), topic, 2, 10)
	if err := b.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := b.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Bootstrap()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatalf("ListTopics after restart: %v", err)
	}
	if topics.Has(topic) {
		t.Fatalf("topic %q survived the restart of an ephemeral broker", topic)
	}
	// The broker is usable again: the same topic can be created anew.
	if err := b.CreateTopic(ctx, topic, 2, nil); err != nil {
		t.Fatalf("CreateTopic after restart: %v", err)
	}
}

// produceNumbered produces n records valued "0".."n-1" to topic, record i to
// partition i%partitions, with acks=all, and returns them by partition in
// produce order.
func produceNumbered(t *testing.T, ctx context.Context, bootstrap, topic string, partitions int32, n int) map[int32][]string {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	want := make(map[int32][]string)
	for i := range recs {
		v := strconv.Itoa(i)
		p := int32(i) % partitions
		recs[i] = &kgo.Record{Topic: topic, Partition: p, Key: []byte("k" + v), Value: []byte(v)}
		want[p] = append(want[p], v)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records: %v", n, err)
	}
	return want
}

// consumeAll reads every partition of topic from the start until it holds
// n records, or fails t when ctx ends first.
func consumeAll(t *testing.T, ctx context.Context, bootstrap, topic string, partitions int32, n int) map[int32][]string {
	t.Helper()
	offs := make(map[int32]kgo.Offset, partitions)
	for p := range partitions {
		offs[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offs}),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := make(map[int32][]string)
	count := 0
	var lastErr error
	for count < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records before %v (last fetch error: %v)", count, n, ctx.Err(), lastErr)
		}
		fs.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				lastErr = fmt.Errorf("partition %d: %w", p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			got[r.Partition] = append(got[r.Partition], string(r.Value))
			count++
		})
	}
	return got
}

// checkNumbered compares what was read with what was produced: same records
// per partition, same order, n in all.
func checkNumbered(t *testing.T, want, got map[int32][]string, n int) {
	t.Helper()
	total := 0
	for p, w := range want {
		g := got[p]
		total += len(g)
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("partition %d: read %d records %v, want %d %v", p, len(g), g, len(w), w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("records read from partition %d, none produced there", p)
		}
	}
	if total != n {
		t.Errorf("read %d records, want %d", total, n)
	}
}

// checkAdvertised asserts that the metadata clients get names bootstrap as
// the only broker.
func checkAdvertised(t *testing.T, ctx context.Context, bootstrap string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	m, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		t.Fatalf("metadata through %s: %v", bootstrap, err)
	}
	if len(m.Brokers) != 1 {
		t.Fatalf("metadata lists %d brokers, want 1: %v", len(m.Brokers), m.Brokers)
	}
	br := m.Brokers[0]
	if got := net.JoinHostPort(br.Host, strconv.Itoa(int(br.Port))); got != bootstrap {
		t.Fatalf("broker advertises %s, want the proxy's %s", got, bootstrap)
	}
}

// TestRealStallPartition: a cluster of two Apache Kafka brokers, each
// behind its own proxy; cutting the leader of a partition off from clients
// stalls the partitions it leads, and only those, while the cluster stays
// healthy; healed, they take records again. A kill and restart brings both
// brokers back.
func TestRealStallPartition(t *testing.T) {
	requireRealTier(t)
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	b := startRealT(t, ctx, Options{Brokers: 2})
	if n := len(b.Proxies()); n != 2 || b.Proxy() != nil {
		t.Fatalf("%d proxies (Proxy %v), want one per broker", n, b.Proxy())
	}
	const topic = "kafkatest-real-stall"
	if err := b.CreateTopic(ctx, topic, 4, nil); err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]bool{}
	for _, p := range topicMetadata(t, b, topic).Partitions {
		leaders[p.Leader] = true
	}
	if len(leaders) != 2 {
		t.Fatalf("partitions led by %v, want both brokers", leaders)
	}
	// A client that knows the cluster already (a producer's connections
	// are up when its broker's switch fails).
	cl := newKgo(t, b.Bootstrap(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := int32(0); p < 4; p++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatalf("partition %d before the stall: %v", p, err)
		}
	}
	stalled, heal, err := b.StallPartition(ctx, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(stalled) == 0 || len(stalled) == 4 || stalled[0] != 0 {
		t.Fatalf("stalled %v: want partition 0 and not all four", stalled)
	}
	for p := int32(1); p < 4; p++ {
		if slices.Contains(stalled, p) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := cl.ProduceSync(pctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")}).FirstErr()
		cancel()
		if err != nil {
			t.Fatalf("healthy partition %d during the stall: %v", p, err)
		}
	}
	// A record to the stalled partition waits, and is delivered once the
	// broker can be reached again.
	done := make(chan error, 1)
	go func() {
		done <- cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("v")}).FirstErr()
	}()
	select {
	case err := <-done:
		t.Fatalf("a record to the stalled partition finished during the stall: %v", err)
	case <-time.After(5 * time.Second):
	}
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the stalled partition's record after healing: %v", err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("the stalled partition's record was not delivered within 3 minutes of healing")
	}
	ok := cl
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := b.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ok.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
}
