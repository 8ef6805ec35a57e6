// Command quickstart shows kafkawal end to end in a few seconds: it appends
// records to a local write-ahead log, lets kafkawal forward them to Kafka,
// reads them back with an independent client (franz-go) and prints the
// producer's stats.
//
// It needs no Kafka: unless KAFKA_BOOTSTRAP names a cluster, it starts an
// embedded broker in the process.
//
//	go run ./examples/quickstart
//	KAFKA_BOOTSTRAP=localhost:9092 go run ./examples/quickstart -dir /tmp/qs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

const (
	topic = "kafkawal-quickstart"
	// records is how many records the quickstart appends.
	records = 1000
	// batchSize: records per AppendBatch. A batch costs one fsync; single
	// Appends from concurrent goroutines share fsyncs the same way.
	batchSize = 100
	// runHeader carries an id unique to one run, so that a rerun against a
	// real cluster, whose topic keeps earlier runs' records, reads back only
	// its own.
	runHeader = "quickstart-run"
	seqHeader = "quickstart-seq"
)

func main() {
	dir := flag.String("dir", "", "WAL directory (default: a temporary directory, removed at exit)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	if err := quickstart(ctx, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// quickstart starts the embedded broker unless KAFKA_BOOTSTRAP is set and
// runs the quickstart with its WAL in dir ("" for a temporary directory).
func quickstart(ctx context.Context, dir string) error {
	bootstrap := os.Getenv("KAFKA_BOOTSTRAP")
	if bootstrap == "" {
		b, err := kafkatest.StartEmbedded(ctx, kafkatest.Options{})
		if err != nil {
			return err
		}
		defer b.Close()
		bootstrap = b.Bootstrap()
		fmt.Printf("started an embedded Kafka broker on %s (set KAFKA_BOOTSTRAP to use your own)\n", bootstrap)
	}
	if dir == "" {
		return run(ctx, os.Stdout, bootstrap)
	}
	return runIn(ctx, os.Stdout, bootstrap, dir)
}

// run is the quickstart against the cluster at bootstrap, with its WAL in a
// temporary directory.
func run(ctx context.Context, w io.Writer, bootstrap string) error {
	dir, err := os.MkdirTemp("", "kafkawal-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	return runIn(ctx, w, bootstrap, dir)
}

// runIn is the quickstart with its WAL in dir.
func runIn(ctx context.Context, w io.Writer, bootstrap, dir string) error {
	err := kafkatest.CreateTopics(ctx, bootstrap, 1, nil, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return err
	}

	p, err := kafkawal.Open(kafkawal.Config{
		Dir:   dir,
		Kafka: kafka.ConfigMap{"bootstrap.servers": bootstrap},
		// Logger is nil: kafkawal and librdkafka stay silent. A service
		// passes its zerolog logger and gets both in one stream.
	})
	if err != nil {
		return err
	}
	defer closeQuickly(p) // on an early return
	if r := p.OpenReport(); r.Replay > 0 {
		fmt.Fprintf(w, "found %d undelivered records from an earlier run in %s; sending them first\n", r.Replay, dir)
	}

	// Append: each call returns once its records are fsync'd in the WAL,
	// whether or not Kafka is up. The sender forwards them in the
	// background.
	runID := strconv.FormatInt(time.Now().UnixNano(), 36)
	start := time.Now()
	for i := 0; i < records; i += batchSize {
		batch := make([]kafkawal.Record, 0, batchSize)
		for j := i; j < i+batchSize && j < records; j++ {
			batch = append(batch, kafkawal.Record{
				Topic:     topic,
				Partition: kafkawal.PartitionAny,
				Key:       []byte("user-" + strconv.Itoa(j%10)),
				Value:     fmt.Appendf(nil, `{"n":%d,"msg":"hello from kafkawal"}`, j),
				Headers: []kafkawal.Header{
					{Key: runHeader, Value: []byte(runID)},
					{Key: seqHeader, Value: []byte(strconv.Itoa(j))},
				},
			})
		}
		if _, err := p.AppendBatch(ctx, batch); err != nil {
			return fmt.Errorf("append: %w", err)
		}
	}
	fmt.Fprintf(w, "appended %d records to the WAL in %s (%v)\n", records, dir, time.Since(start).Round(time.Millisecond))

	// Flush waits for Kafka's delivery reports of everything appended so far.
	start = time.Now()
	if err := p.Flush(ctx); err != nil {
		return err
	}
	fmt.Fprintf(w, "flushed: Kafka acknowledged every record (%v)\n", time.Since(start).Round(time.Millisecond))

	// Read the topic back with franz-go, an independent client.
	got, err := kafkatest.ReadAll(ctx, bootstrap, []string{topic}, records)
	if err != nil {
		return err
	}
	acked := make([]uint64, records)
	for i := range acked {
		acked[i] = uint64(i)
	}
	rep := kafkatest.Verify(acked, got, func(r *kgo.Record) (uint64, bool) { return recordSeq(r, runID) }, nil)
	fmt.Fprintf(w, "read back %d of %d records from topic %q: lost %d, duplicates %d, out of order %d\n",
		rep.Unique, records, topic, rep.Lost, rep.Duplicates, rep.OrderViolations)

	printStats(w, p.Stats())
	if err := p.Close(ctx); err != nil {
		return err
	}
	fmt.Fprintln(w, "closed")
	if !rep.OK() {
		return fmt.Errorf("verification failed: %v", rep)
	}
	return nil
}

// recordSeq returns the quickstart sequence of a record of run runID.
func recordSeq(r *kgo.Record, runID string) (uint64, bool) {
	var run, seq string
	for _, h := range r.Headers {
		switch h.Key {
		case runHeader:
			run = string(h.Value)
		case seqHeader:
			seq = string(h.Value)
		}
	}
	if run != runID {
		return 0, false
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	return n, err == nil
}

func printStats(w io.Writer, st kafkawal.Stats) {
	fmt.Fprintf(w, "stats: appended %d, delivered %d, backlog %d records, cursor %d/%d, WAL %.1f KiB of %.0f MiB cap, broker reachable %t\n",
		st.Appended, st.Delivered, st.BacklogRecords, st.Cursor, st.LastSeq,
		float64(st.DiskBytes)/(1<<10), float64(st.MaxDiskBytes)/(1<<20), st.BrokerReachable)
}

// closeQuickly closes p on an error path: it delivers for a few seconds at
// most (Kafka may be what failed) and leaves the rest in the WAL. After a
// successful Close it returns at once.
func closeQuickly(p *kafkawal.Producer) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.Close(ctx)
}
