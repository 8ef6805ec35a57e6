package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// BenchmarkOutageMemory: memory while a backlog (1 GiB of values under
// KAFKAWAL_BENCH_FULL=1, 16 MiB otherwise) builds up behind a blackholed
// broker. Each side runs in a child process of its own (the test binary
// again, see runChild), so that RSS is one producer's alone:
//
//   - kafkawal: default Config (SyncAlways), AppendBatch of 1000;
//   - plain: the same librdkafka settings, Produce until librdkafka's
//     queue is full (kafkawal's queue.buffering.max.messages): that is as much
//     of the outage as it can hold; the application must drop or block;
//   - plain-bigqueue: queue limits raised to librdkafka's maximum, so that
//     it holds the whole backlog in memory, as an application that wants
//     to ride out the outage without a WAL would configure it.
//
// The child delivers 1000 records (warm-up), the parent blackholes the
// fault proxy the broker advertises, the child fills the backlog sampling
// VmRSS (/proc/self/status) and the Go heap (HeapInuse) 64 times. Reported:
// RSS and heap before the outage (base) and at their peak (RSS: VmHWM),
// the growth, the growth during the second half of the backlog (0 when
// memory is flat), held-MB (values accepted during the outage) and RSS
// growth per GiB held. kafkawal's growth must be flat: the backlog is on
// disk. One op is one outage.
func BenchmarkOutageMemory(b *testing.B) {
	br := proxiedBroker.get(b)
	backlog := pick[int64](1<<30, 16<<20)
	for _, vs := range valueSizes {
		for _, side := range []string{"plain", "plain-bigqueue", "kafkawal"} {
			b.Run(fmt.Sprintf("value=%d/backlog=%dMiB/%s", vs, backlog>>20, side), func(b *testing.B) {
				var sum childResult
				for range b.N {
					r := runOutageChild(b, br, childSpec{Side: side, ValueSize: vs, Backlog: backlog})
					sum.add(r)
				}
				sum.report(b, b.N)
			})
		}
	}
}

// childSpec is what the parent asks a child to do, passed as JSON in
// envChild.
type childSpec struct {
	Side      string // "kafkawal", "plain", "plain-bigqueue"
	Bootstrap string
	Topic     string
	Dir       string
	ValueSize int
	Backlog   int64 // value bytes to append during the outage
}

// childResult is what a child measured, printed as one JSON line.
type childResult struct {
	BaseRSS, PeakRSS, BaseHeap, PeakHeap int64
	// HalfRSS is the peak RSS until half the backlog was held: flat
	// memory has PeakRSS = HalfRSS.
	HalfRSS                int64
	HeldBytes, HeldRecords int64
	QueueFull              bool
	WALBytes               int64
}

func (r *childResult) add(o childResult) {
	r.BaseRSS += o.BaseRSS
	r.PeakRSS += o.PeakRSS
	r.BaseHeap += o.BaseHeap
	r.PeakHeap += o.PeakHeap
	r.HalfRSS += o.HalfRSS
	r.HeldBytes += o.HeldBytes
	r.HeldRecords += o.HeldRecords
	r.WALBytes += o.WALBytes
}

func (r *childResult) report(b *testing.B, n int) {
	mb := func(v int64) float64 { return float64(v) / float64(n) / (1 << 20) }
	b.ReportMetric(mb(r.BaseRSS), "base-RSS-MB")
	b.ReportMetric(mb(r.PeakRSS), "peak-RSS-MB")
	b.ReportMetric(mb(r.PeakRSS-r.BaseRSS), "RSS-growth-MB")
	b.ReportMetric(mb(r.PeakRSS-r.HalfRSS), "RSS-growth-2nd-half-MB")
	b.ReportMetric(mb(r.PeakHeap), "peak-heap-MB")
	b.ReportMetric(mb(r.PeakHeap-r.BaseHeap), "heap-growth-MB")
	b.ReportMetric(mb(r.HeldBytes), "held-MB")
	if r.HeldBytes > 0 {
		b.ReportMetric(float64(r.PeakRSS-r.BaseRSS)/(1<<20)/(float64(r.HeldBytes)/(1<<30)), "RSS-MB/GiB-held")
	}
	b.ReportMetric(0, "ns/op")
}

// runOutageChild runs one side of the outage in a child process.
// The clock keeps running (an op is a whole outage), so that the benchmark
// framework sees how long one takes and does not repeat it needlessly.
func runOutageChild(b *testing.B, br kafkatest.Broker, spec childSpec) childResult {
	spec.Bootstrap = br.Bootstrap()
	spec.Topic = newTopic(b, br)
	spec.Dir = b.TempDir()
	js, err := json.Marshal(spec)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), envChild+"="+string(js))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start child: %v", err)
	}
	fail := func(format string, args ...any) {
		cmd.Process.Kill()
		cmd.Wait()
		b.Fatalf("outage child %s: %s\nchild stderr:\n%s", spec.Side, fmt.Sprintf(format, args...), stderr.String())
	}
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	next := func(prefix string) string {
		for lines.Scan() {
			if rest, ok := strings.CutPrefix(lines.Text(), prefix); ok {
				return rest
			}
		}
		fail("no %q line (%v)", prefix, lines.Err())
		return ""
	}
	next("ready")
	br.Proxy().Blackhole()
	defer br.Proxy().Heal()
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		fail("write to child: %v", err)
	}
	var r childResult
	if err := json.Unmarshal([]byte(next("result ")), &r); err != nil {
		fail("result: %v", err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("outage child %s: %v\nchild stderr:\n%s", spec.Side, err, stderr.String())
	}
	return r
}

// runChild is the child process's main: it runs the side in envChild and
// returns the exit code.
func runChild() int {
	var spec childSpec
	if err := json.Unmarshal([]byte(os.Getenv(envChild)), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "bench child: %s: %v\n", envChild, err)
		return 2
	}
	r, err := outageChild(spec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench child %s: %v\n", spec.Side, err)
		return 1
	}
	js, _ := json.Marshal(r)
	fmt.Printf("result %s\n", js)
	// Exit without closing the producers: the broker is unreachable and
	// a clean shutdown would only wait for it. The parent removes the
	// directory.
	return 0
}

// memSampler tracks VmRSS and the Go heap.
type memSampler struct {
	peakRSS, peakHeap int64
	err               error
}

func (s *memSampler) sample() (rss, heap int64) {
	rss, err := statusBytes("VmRSS")
	if err != nil && s.err == nil {
		s.err = err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = int64(ms.HeapInuse)
	s.peakRSS = max(s.peakRSS, rss)
	s.peakHeap = max(s.peakHeap, heap)
	return rss, heap
}

// outageChild warms a producer up, says "ready", waits for the parent to
// blackhole the broker ("go" on stdin), then appends the backlog.
func outageChild(spec childSpec) (childResult, error) {
	var r childResult
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	v := value(spec.ValueSize)
	warm, fill, err := childSide(ctx, spec, v)
	if err != nil {
		return r, err
	}
	if err := warm(); err != nil {
		return r, fmt.Errorf("warm-up: %w", err)
	}
	runtime.GC()
	var mem memSampler
	r.BaseRSS, r.BaseHeap = mem.sample()
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return r, fmt.Errorf("wait for the outage: %w", err)
	}
	every := max(spec.Backlog/64, 1)
	nextSample := every
	half := true
	for r.HeldBytes < spec.Backlog {
		n, err := fill(int(min(1000, (spec.Backlog-r.HeldBytes+int64(len(v))-1)/int64(len(v)))))
		r.HeldRecords += int64(n)
		r.HeldBytes += int64(n) * int64(len(v))
		if errors.Is(err, errQueueFull) {
			r.QueueFull = true
			break
		}
		if err != nil {
			return r, err
		}
		if r.HeldBytes >= nextSample {
			mem.sample()
			nextSample += every
		}
		if half && r.HeldBytes >= spec.Backlog/2 {
			r.HalfRSS, half = mem.peakRSS, false
		}
	}
	mem.sample()
	// The high-water mark catches a peak between two samples.
	hwm, err := statusBytes("VmHWM")
	if err != nil {
		return r, err
	}
	r.PeakRSS, r.PeakHeap = max(mem.peakRSS, hwm), mem.peakHeap
	if half { // stopped early (queue full): no second half
		r.HalfRSS = r.PeakRSS
	}
	if spec.Side == "kafkawal" {
		r.WALBytes = walBytes
	}
	return r, mem.err
}

var errQueueFull = errors.New("librdkafka queue full")

// walBytes is the kafkawal child's WAL size at the end of the outage.
var walBytes int64

// childSide returns warm (deliver 1000 records) and fill (hand over up to
// n more, returning how many were taken) for spec's side.
func childSide(ctx context.Context, spec childSpec, v []byte) (warm func() error, fill func(n int) (int, error), err error) {
	switch spec.Side {
	case "kafkawal":
		cfg := producerConfig(spec.Dir, spec.Bootstrap, kafkawal.SyncAlways)
		cfg.MaxDiskBytes = replayDiskCap
		p, err := kafkawal.Open(cfg)
		if err != nil {
			return nil, nil, err
		}
		rs := batchOf(spec.Topic, 1000, len(v))
		warm = func() error {
			if _, err := p.AppendBatch(ctx, rs); err != nil {
				return err
			}
			return p.Flush(ctx)
		}
		fill = func(n int) (int, error) {
			if _, err := p.AppendBatch(ctx, rs[:n]); err != nil {
				return 0, err
			}
			walBytes = p.Stats().DiskBytes
			return n, nil
		}
		return warm, fill, nil
	case "plain", "plain-bigqueue":
		overrides := kafka.ConfigMap{}
		if spec.Side == "plain-bigqueue" {
			overrides["queue.buffering.max.messages"] = 2147483647
			overrides["queue.buffering.max.kbytes"] = 2147483647
		}
		cfg, err := plainKafkaConfig(spec.Bootstrap, overrides)
		if err != nil {
			return nil, nil, err
		}
		pl, err := startPlain(cfg, nil)
		if err != nil {
			return nil, nil, err
		}
		topic := spec.Topic
		warm = func() error {
			for range 1000 {
				if err := pl.produce(message(&topic, v, nil)); err != nil {
					return err
				}
			}
			return pl.wait(ctx)
		}
		fill = func(n int) (int, error) {
			for i := range n {
				err := pl.tryProduce(message(&topic, v, nil))
				var ke kafka.Error
				if errors.As(err, &ke) && ke.Code() == kafka.ErrQueueFull {
					return i, errQueueFull
				}
				if err != nil {
					return i, err
				}
			}
			return n, nil
		}
		return warm, fill, nil
	}
	return nil, nil, fmt.Errorf("unknown side %q", spec.Side)
}
