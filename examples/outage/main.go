// Command outage shows what kafkawal does in a network outage: a producer
// appends at a steady rate to an embedded Kafka broker behind a fault proxy;
// the proxy then drops every byte for a while (a blackhole, as a failed
// switch would). The appends keep succeeding, the backlog grows on disk while
// memory stays flat, and once the network heals the backlog drains to zero.
// At the end an independent client reads the topic back and checks that
// every appended record arrived.
//
// With -partial the outage is partial instead: one partition of three
// stops taking records (its broker answers NOT_ENOUGH_REPLICAS, as when
// too few in-sync replicas are left) while the other two keep being
// delivered; after a few seconds the stalled partition's records are
// parked, and the WAL behind them deleted, so the disk holds its backlog
// only.
//
//	go run ./examples/outage                      # ~30 s
//	go run ./examples/outage -rate 20000 -outage 60s
//	go run ./examples/outage -partial
//
// One line a second shows the backlog (records appended and not yet
// acknowledged by Kafka), the WAL's size on disk (park logs included), the
// live Go heap, the process's resident memory (librdkafka's C memory
// included), the records delivered, the stalled partitions and what they
// parked, and whether librdkafka can reach a broker.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// config is the demo's knobs; the flags set them.
type config struct {
	// Rate is records appended per second; Size the bytes of each value.
	Rate, Size int
	// Before, Outage and After are the phases: appending with the network
	// up, with it cut, and with it healed.
	Before, Outage, After time.Duration
	// Drain bounds the wait, once appending stops, for the backlog to
	// reach zero.
	Drain time.Duration
	// Every is the period of the status lines.
	Every time.Duration
	// Partial stalls one partition instead of cutting the network;
	// StallTimeout and ParkAfter are then the Producer's
	// PartitionStallTimeout and ParkAfter.
	Partial                 bool
	StallTimeout, ParkAfter time.Duration
	// Dir is the WAL directory; "" for a temporary one.
	Dir string
	// Logger, if set, receives kafkawal's and librdkafka's log events.
	Logger *zerolog.Logger
}

// result is what the demo found.
type result struct {
	Report      kafkatest.Report
	Appended    uint64
	PeakBacklog uint64
	PeakDisk    int64
	PeakParked  int64
	// DeliveredDuringOutage counts deliveries while the outage lasted.
	DeliveredDuringOutage uint64
	// HeapAtCut and PeakHeap are the live Go heap when the network was cut
	// and its peak during the outage.
	HeapAtCut, PeakHeap uint64
	Final               kafkawal.Stats
}

const (
	topic      = "outage-demo"
	partitions = 3
	idHeader   = "demo-id"
	// appendsPerSecond: the appender wakes this often and appends what the
	// rate calls for in one AppendBatch (one fsync).
	appendsPerSecond = 100
)

func main() {
	var c config
	flag.IntVar(&c.Rate, "rate", 5000, "records appended per second")
	flag.IntVar(&c.Size, "size", 1024, "bytes per record value")
	flag.DurationVar(&c.Before, "before", 5*time.Second, "appending before the outage")
	flag.DurationVar(&c.Outage, "outage", 15*time.Second, "length of the network outage")
	flag.DurationVar(&c.After, "after", 10*time.Second, "appending after the network heals")
	flag.DurationVar(&c.Drain, "drain", 2*time.Minute, "how long to wait for the backlog to drain once appending stops")
	flag.StringVar(&c.Dir, "dir", "", "WAL directory (default: a temporary directory, removed at exit)")
	flag.BoolVar(&c.Partial, "partial", false, "stall one partition of three instead of cutting the network")
	flag.DurationVar(&c.StallTimeout, "stall-timeout", 2*time.Second, "with -partial: PartitionStallTimeout")
	flag.DurationVar(&c.ParkAfter, "park-after", 5*time.Second, "with -partial: ParkAfter")
	logLevel := flag.String("log", "", "show kafkawal's and librdkafka's log events at this level and above (debug, info, warn, error) on stderr")
	flag.Parse()
	c.Every = time.Second
	if *logLevel != "" {
		lvl, err := zerolog.ParseLevel(*logLevel)
		if err != nil {
			fmt.Fprintln(os.Stderr, "outage: -log:", err)
			os.Exit(2)
		}
		lg := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(lvl).With().Timestamp().Logger()
		c.Logger = &lg
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, os.Stdout, c)
	if err == nil && !res.Report.OK() {
		err = fmt.Errorf("verification failed: %v", res.Report)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "outage:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, c config) (result, error) {
	var res result
	if c.Rate <= 0 || c.Size <= 0 || c.Every <= 0 {
		return res, errors.New("rate, size and the status period must be positive")
	}
	opts := kafkatest.Options{Proxy: true}
	if c.Partial {
		opts = kafkatest.Options{Brokers: 3} // the stalled partition alone on one
	}
	b, err := kafkatest.StartEmbedded(ctx, opts)
	if err != nil {
		return res, err
	}
	defer b.Close()
	if err := b.CreateTopic(ctx, topic, partitions, nil); err != nil {
		return res, err
	}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "kafkawal-outage-"); err != nil {
			return res, err
		}
		defer os.RemoveAll(c.Dir)
	}
	p, err := kafkawal.Open(kafkawal.Config{
		Dir: c.Dir,
		Kafka: kafka.ConfigMap{
			"bootstrap.servers": b.Bootstrap(),
			// Reconnect within a second of the network healing.
			"reconnect.backoff.max.ms": 1000,
			// librdkafka notices a silent network only by its requests
			// timing out: after 2s instead of 60s here, so that the
			// outage shows as "DOWN" within a few seconds.
			"socket.timeout.ms": 2000,
		},
		MaxDiskBytes:          4 << 30,
		PartitionStallTimeout: c.StallTimeout,
		ParkAfter:             c.ParkAfter,
		Logger:                c.Logger,
	})
	if err != nil {
		return res, err
	}
	defer func() {
		// On an early return, maybe with the network cut: deliver for a
		// few seconds at most. After the Close below, this returns at once.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	}()

	if c.Partial {
		fmt.Fprintf(w, "appending %d records/s of %d bytes to %d partitions of an embedded Kafka of 3 brokers; WAL in %s\n", c.Rate, c.Size, partitions, c.Dir)
	} else {
		fmt.Fprintf(w, "appending %d records/s of %d bytes to an embedded Kafka behind a fault proxy; WAL in %s\n", c.Rate, c.Size, c.Dir)
	}
	fmt.Fprintf(w, "%6s  %-8s %10s %10s %9s %9s %9s %8s %7s %10s  %s\n",
		"time", "network", "appended", "delivered", "backlog", "disk MiB", "live heap", "RSS MiB", "stalled", "parked MiB", "kafka")

	appendCtx, stopAppending := context.WithCancel(ctx)
	defer stopAppending()
	var appended atomic.Uint64 // ids 1..appended were acknowledged by Append
	appendErr := make(chan error, 1)
	go func() { appendErr <- appendAtRate(appendCtx, p, c, &appended) }()

	decimals := 0 // in the time column
	if c.Every%time.Second != 0 {
		decimals = 1
	}
	start := time.Now()
	tick := time.NewTicker(c.Every)
	defer tick.Stop()
	network, cut, healed, stopped := "up", false, false, false
	var drainUntil time.Time
	var heal func() error
	var deliveredAtCut uint64
	for {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case err := <-appendErr:
			if !stopped || err != nil {
				return res, fmt.Errorf("appender stopped early: %v", err)
			}
			appendErr = nil
			continue
		case <-tick.C:
		}
		elapsed := time.Since(start)
		st := p.Stats()
		heap := liveHeap()
		res.PeakBacklog = max(res.PeakBacklog, st.BacklogRecords)
		res.PeakDisk = max(res.PeakDisk, st.DiskBytes)
		if cut && !healed {
			res.PeakHeap = max(res.PeakHeap, heap)
		}
		stalled := 0
		for _, s := range st.StalledPartitions {
			if s.Stalled {
				stalled++
			}
		}
		res.PeakParked = max(res.PeakParked, st.ParkedBytes)
		fmt.Fprintf(w, "%5.*fs  %-8s %10d %10d %9d %9.1f %9.1f %8s %7d %10.1f  %s\n",
			decimals, elapsed.Seconds(), network, st.Appended, st.Delivered, st.BacklogRecords,
			mib(uint64(st.DiskBytes)), mib(heap), rssMiB(), stalled, mib(uint64(st.ParkedBytes)), reachable(st.BrokerReachable))

		switch {
		case !cut && elapsed >= c.Before:
			if c.Partial {
				if _, heal, err = b.StallPartition(ctx, topic, 0); err != nil {
					return res, err
				}
				network = "STALL"
				fmt.Fprintln(w, "--- partition 0 stalled: its broker answers NOT_ENOUGH_REPLICAS; partitions 1 and 2 keep going")
			} else {
				b.Proxy().Blackhole()
				network = "CUT"
				fmt.Fprintln(w, "--- network cut: every byte to and from Kafka is dropped")
			}
			cut = true
			deliveredAtCut = st.Delivered
			res.HeapAtCut, res.PeakHeap = heap, heap
		case cut && !healed && elapsed >= c.Before+c.Outage:
			healed, network = true, "healed"
			res.DeliveredDuringOutage = st.Delivered - deliveredAtCut
			if c.Partial {
				if err := heal(); err != nil {
					return res, err
				}
				fmt.Fprintf(w, "--- partition healed: %d records delivered to the others during the stall; %d records (%.1f MiB on disk, %.1f MiB parked) waiting\n",
					res.DeliveredDuringOutage, st.BacklogRecords, mib(uint64(st.DiskBytes)), mib(uint64(st.ParkedBytes)))
				break
			}
			b.Proxy().Heal()
			fmt.Fprintf(w, "--- network healed: %d records (%.1f MiB of WAL) waiting; live Go heap %.1f MiB at the cut, %.1f MiB at most since\n",
				st.BacklogRecords, mib(uint64(st.DiskBytes)), mib(res.HeapAtCut), mib(res.PeakHeap))
		case healed && !stopped && elapsed >= c.Before+c.Outage+c.After:
			stopAppending()
			stopped = true
			drainUntil = time.Now().Add(c.Drain)
			fmt.Fprintln(w, "--- appending stopped; waiting for the backlog to drain")
		}
		if stopped && appendErr == nil && st.BacklogRecords == 0 {
			break
		}
		if stopped && time.Now().After(drainUntil) {
			return res, fmt.Errorf("backlog of %d records did not drain within %v", st.BacklogRecords, c.Drain)
		}
	}

	res.Appended = appended.Load()
	drainCtx, cancel := context.WithTimeout(ctx, c.Drain)
	defer cancel()
	if err := p.Flush(drainCtx); err != nil {
		return res, err
	}
	res.Final = p.Stats()
	if err := p.Close(drainCtx); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "backlog drained: %d appended, %d delivered, %d re-sent after the outage; peak backlog %d records, %.1f MiB on disk\n",
		res.Final.Appended, res.Final.Delivered, res.Final.Resent, res.PeakBacklog, mib(uint64(res.PeakDisk)))

	// Read the topic back with an independent client and compare it with
	// the ledger: every id 1..appended must be there, in order per
	// partition.
	acked := make([]uint64, res.Appended)
	for i := range acked {
		acked[i] = uint64(i + 1)
	}
	got, err := kafkatest.ReadAll(drainCtx, b.Bootstrap(), []string{topic}, len(acked))
	if err != nil {
		return res, err
	}
	res.Report = kafkatest.Verify(acked, got, recordID, nil)
	fmt.Fprintf(w, "verify (read back with franz-go): %v\n", res.Report)
	return res, nil
}

// appendAtRate appends c.Rate records a second, in one AppendBatch every
// 1/appendsPerSecond s, until ctx ends; *appended counts the records whose
// Append returned nil, whose ids are 1..*appended.
func appendAtRate(ctx context.Context, p *kafkawal.Producer, c config, appended *atomic.Uint64) error {
	tick := time.NewTicker(time.Second / appendsPerSecond)
	defer tick.Stop()
	start := time.Now()
	value := bytes.Repeat([]byte("x"), c.Size)
	var recs []kafkawal.Record
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		// Catch up with the rate (a slow fsync delays a tick, not the rate).
		due := uint64(time.Since(start).Seconds() * float64(c.Rate))
		id := appended.Load()
		recs = recs[:0]
		for id < due {
			id++
			recs = append(recs, kafkawal.Record{
				Topic:     topic,
				Partition: int32(id % partitions),
				Value:     value, // Append copies it into the WAL
				Headers:   []kafkawal.Header{{Key: idHeader, Value: strconv.AppendUint(nil, id, 10)}},
			})
		}
		if len(recs) == 0 {
			continue
		}
		if _, err := p.AppendBatch(ctx, recs); err != nil {
			if ctx.Err() != nil {
				return nil // stopped while waiting for room in a full WAL
			}
			return err
		}
		appended.Store(id)
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

func reachable(up bool) string {
	if up {
		return "up"
	}
	return "DOWN"
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// liveHeap is the Go heap that the last garbage collection found live: what
// the process holds on to, without the garbage awaiting the next cycle.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// rssMiB is the process's resident set size from /proc/self/status, or "-"
// where there is none.
func rssMiB() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "-"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return "-"
			}
			return fmt.Sprintf("%.1f", float64(kb)/1024)
		}
	}
	return "-"
}
