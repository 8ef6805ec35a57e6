package bench

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// Environment variables besides kafkatest's KAFKAWAL_BROKER.
const (
	// envFull=1 asks for the full-size figures (1 GiB backlogs, one-minute
	// write-amplification runs). Without it, and always under -short, the
	// scenario benchmarks shrink so that -benchtime=1x finishes in CI time.
	envFull = "KAFKAWAL_BENCH_FULL"
	// envChild makes the test binary a child process of a memory
	// benchmark instead of running tests (see outage_test.go).
	envChild = "KAFKAWAL_BENCH_CHILD"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		os.Exit(runChild())
	}
	flag.Parse()
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		printConfig()
	}
	code := m.Run()
	closeBrokers()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// full reports whether the full-size figures were asked for.
func full() bool { return os.Getenv(envFull) == "1" && !testing.Short() }

// pick returns fullSize under KAFKAWAL_BENCH_FULL=1, quick otherwise.
func pick[T any](fullSize, quick T) T {
	if full() {
		return fullSize
	}
	return quick
}

// valueSizes are the record value sizes every comparison is made at.
var valueSizes = []int{100, 1024}

// partitions is the partition count of every benchmark topic. Records go to
// PartitionAny with no key, so librdkafka's sticky partitioner spreads them
// the same way for kafkawal and for the plain producer.
const partitions = 4

// ---------------------------------------------------------------- brokers

// A broker is started once per test binary, on first use, and closed by
// TestMain: starting a real broker takes seconds, and sharing it keeps the
// comparisons on the same broker. The proxied one is separate so that its
// blackholes never touch the throughput benchmarks.
type lazyBroker struct {
	once sync.Once
	opts kafkatest.Options
	b    kafkatest.Broker
	err  error
}

var (
	directBroker  = &lazyBroker{opts: kafkatest.Options{Partitions: partitions, Ephemeral: true}}
	proxiedBroker = &lazyBroker{opts: kafkatest.Options{Partitions: partitions, Ephemeral: true, Proxy: true}}
)

// get starts the broker on first use. Ephemeral: an embedded broker then
// keeps no data directory, so the process's disk writes
// (/proc/self/io) are kafkawal's alone.
func (l *lazyBroker) get(b testing.TB) kafkatest.Broker {
	b.Helper()
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		l.b, l.err = kafkatest.Start(ctx, l.opts)
	})
	if l.err != nil {
		b.Fatalf("start %s broker (%s=%q): %v", kafkatest.Kind(), kafkatest.EnvBroker, os.Getenv(kafkatest.EnvBroker), l.err)
	}
	return l.b
}

func closeBrokers() {
	for _, l := range []*lazyBroker{directBroker, proxiedBroker, partialBroker} {
		if l.b != nil {
			if err := l.b.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "bench: close broker: %v\n", err)
			}
		}
	}
}

var topicSeq atomic.Int64

// newTopic creates a fresh topic on br and deletes it when b ends, so that
// an in-process broker does not keep every benchmark's records in memory.
func newTopic(b testing.TB, br kafkatest.Broker) string {
	b.Helper()
	name := fmt.Sprintf("bench-%d-%d", os.Getpid(), topicSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := br.CreateTopic(ctx, name, partitions, nil); err != nil {
		b.Fatalf("create topic %s: %v", name, err)
	}
	b.Cleanup(func() { deleteTopic(br.Bootstrap(), name) })
	return name
}

func deleteTopic(bootstrap, name string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkatest.Seeds(bootstrap)...))
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = kadm.NewClient(cl).DeleteTopics(ctx, name)
}

// deadBootstrap returns an address nothing listens on: a producer pointed
// at it appends to its WAL and never delivers (connection refused costs
// librdkafka almost nothing), so an append benchmark measures the append
// path alone.
func deadBootstrap(b testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// ---------------------------------------------------------------- records

// value returns n incompressible bytes, the same for every caller.
func value(n int) []byte {
	v := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range v {
		v[i] = byte(r.Uint32())
	}
	return v
}

// batchOf returns n records of valueSize bytes for topic. They share one
// value slice: kafkawal and librdkafka both copy it.
func batchOf(topic string, n, valueSize int) []kafkawal.Record {
	v := value(valueSize)
	rs := make([]kafkawal.Record, n)
	for i := range rs {
		rs[i] = kafkawal.Record{Topic: topic, Partition: kafkawal.PartitionAny, Value: v}
	}
	return rs
}

// openProducer opens a kafkawal producer; the caller closes it.
func openProducer(b testing.TB, cfg kafkawal.Config) *kafkawal.Producer {
	b.Helper()
	p, err := kafkawal.Open(cfg)
	if err != nil {
		b.Fatalf("kafkawal.Open: %v", err)
	}
	return p
}

// producerConfig is a kafkawal Config with nothing but the bootstrap set in
// Kafka: kafkawal's defaults are the settings the plain producer copies.
func producerConfig(dir, bootstrap string, mode kafkawal.Durability) kafkawal.Config {
	return kafkawal.Config{
		Dir:        dir,
		Kafka:      kafka.ConfigMap{"bootstrap.servers": bootstrap},
		Durability: mode,
	}
}

// closeProducer closes p, waiting at most d for deliveries. With
// undelivered records (a dead broker) Close reports how far it got; that
// is expected here and not an error of the benchmark.
func closeProducer(p *kafkawal.Producer, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_ = p.Close(ctx)
}

// ---------------------------------------------------------------- load shapes

// shape is how the application hands records over: many goroutines with
// one record each (request handlers), one goroutine with batches, or one
// goroutine with one record per AppendAsync (a pipeline).
type shape struct {
	name      string
	appenders int
	batch     int
	async     bool // kafkawal: AppendAsync; the plain producer: as batch 1
}

// shapes are the shapes every comparison is made in; kafkawalShapes adds
// async=1 where the peer has the same shape (the plain producer: one
// goroutine producing record after record).
var (
	shapes = []shape{
		{"appenders=64", 64, 1, false},
		{"batch=1000", 1, 1000, false},
	}
	asyncShape     = shape{"async=1", 1, 1, true}
	kafkawalShapes = append(shapes[:len(shapes):len(shapes)], asyncShape)
)

// asyncAppender appends with AppendAsync, one record per call, with one
// callback made once (so the loop allocates nothing of its own), and
// counts the answers.
type asyncAppender struct {
	p        *kafkawal.Producer
	ctx      context.Context
	want     int64 // answers to wait for
	answered atomic.Int64
	all      chan struct{} // closed at want answers
	failed   atomic.Pointer[error]
	cb       func(uint64, error)
}

func newAsyncAppender(ctx context.Context, p *kafkawal.Producer, want int64) *asyncAppender {
	a := &asyncAppender{p: p, ctx: ctx, want: want, all: make(chan struct{})}
	a.cb = func(_ uint64, err error) {
		if err != nil {
			e := err
			a.failed.CompareAndSwap(nil, &e)
		}
		if a.answered.Add(1) == a.want {
			close(a.all)
		}
	}
	return a
}

// put is drive's put for the async shape.
func (a *asyncAppender) put(rs []kafkawal.Record) error {
	for i := range rs {
		a.p.AppendAsync(a.ctx, rs[i], a.cb)
	}
	return nil
}

// wait waits for every answer and returns the first error among them.
func (a *asyncAppender) wait() error {
	select {
	case <-a.all:
	case <-a.ctx.Done():
		return fmt.Errorf("%d of %d AppendAsync callbacks: %w", a.answered.Load(), a.want, a.ctx.Err())
	}
	if e := a.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// drive calls put from s.appenders goroutines with batches of up to
// s.batch records (rs[:k]) until n records are put, and returns the first
// error. One record is the unit of n whatever the shape.
func drive[R any](s shape, n int64, rs []R, put func([]R) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var first atomic.Value
	for range s.appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				end := next.Add(int64(s.batch))
				start := end - int64(s.batch)
				if start >= n || first.Load() != nil {
					return
				}
				k := int(min(end, n) - start)
				if err := put(rs[:k]); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return nil
}

// ---------------------------------------------------------------- metrics

// reportRate reports records/s and MB/s of values for records put in
// elapsed, and hides ns/op: an "op" differs between benchmarks, the rates
// do not.
func reportRate(b *testing.B, records int64, valueSize int, elapsed time.Duration) (recPerSec float64) {
	secs := elapsed.Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	recPerSec = float64(records) / secs
	b.ReportMetric(recPerSec, "records/s")
	b.ReportMetric(recPerSec*float64(valueSize)/1e6, "MB/s")
	b.ReportMetric(0, "ns/op")
	return recPerSec
}

// cpuTime returns the CPU time (user + system) this process has used: every
// thread, the cgo ones of librdkafka included, and, with the embedded
// broker, the broker's.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuWithBroker is cpuTime plus the CPU of the broker's own processes,
// for the benchmarks that produce to directBroker: nothing more for the
// embedded broker, which runs in this process and is in cpuTime already,
// and the JVM's time for a real one. Their cpu-us/record then counts a
// record's whole cost on this machine with either broker, as the
// end-to-end bound (bench/table.sh: the cores over the plain producer's
// cpu-us/record plus the WAL's) assumes.
func cpuWithBroker(b testing.TB) time.Duration {
	b.Helper()
	return cpuTime() + brokerCPU(b)
}

// brokerCPU is the broker's share of cpuWithBroker: the JVM's CPU time on
// Apache Kafka, 0 on the embedded broker (its CPU is the process's).
func brokerCPU(b testing.TB) time.Duration {
	b.Helper()
	c, err := directBroker.get(b).CPU()
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// cpuSplit is this process's CPU time and the broker's own, each read
// once, so that the whole and the broker's part come from one reading.
type cpuSplit struct{ proc, broker time.Duration }

func cpuSplitNow(b testing.TB) cpuSplit {
	b.Helper()
	return cpuSplit{proc: cpuTime(), broker: brokerCPU(b)}
}

// reportCPUSplit reports cpu-us/record since from (the process's and the
// broker's) and, where the broker runs apart, broker-cpu-us/record: what
// a change in the requests (their number, their batches) costs Kafka,
// beside what it costs the producer.
func reportCPUSplit(b *testing.B, from cpuSplit, records int64) {
	b.Helper()
	now := cpuSplitNow(b)
	broker := now.broker - from.broker
	reportCPU(b, now.proc-from.proc+broker, records)
	if records > 0 && broker > 0 {
		b.ReportMetric(float64(broker.Microseconds())/float64(records), "broker-cpu-us/record")
	}
}

// reportCPU reports the CPU time used per record: unlike records/s it
// hardly depends on what else the machine runs, and on a CPU-bound machine
// the ratio of two sides' cpu-us/record is the ratio their throughput
// tends to.
func reportCPU(b *testing.B, cpu time.Duration, records int64) {
	if records > 0 && cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(records), "cpu-us/record")
	}
}

// Peers: a comparison's reference figure (the raw disk, bbolt, the plain
// producer) is measured by a sub-benchmark that runs just before the
// kafkawal one; the kafkawal one reports its figure divided by the
// reference as a metric of its own, so the ratio is in the output of every
// run. Of the reference's runs, the one with the largest b.N counts (the
// final one of the benchmark framework's ramp-up), the latest on ties.
var peers = struct {
	sync.Mutex
	m map[string]peerFigure
}{m: map[string]peerFigure{}}

type peerFigure struct {
	n int
	v float64
}

func recordPeer(b *testing.B, key string, v float64) {
	peers.Lock()
	defer peers.Unlock()
	if old, ok := peers.m[key]; !ok || b.N >= old.n {
		peers.m[key] = peerFigure{b.N, v}
	}
}

// reportRatio reports v divided by the peer figure key under unit, if
// that peer ran in this process.
func reportRatio(b *testing.B, key string, v float64, unit string) {
	peers.Lock()
	ref, ok := peers.m[key]
	peers.Unlock()
	if ok && ref.v > 0 {
		b.ReportMetric(v/ref.v, unit)
	}
}

// percentile returns the q-quantile (0 < q <= 1) of sorted.
func percentile(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
