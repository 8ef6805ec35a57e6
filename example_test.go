package kafkawal_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// This example opens a producer, appends records, waits until Kafka has
// them all and closes. An embedded broker stands in for the Kafka cluster.
func Example() {
	bootstrap, stop := exampleKafka("orders")
	defer stop()
	dir, err := os.MkdirTemp("", "kafkawal-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	p, err := kafkawal.Open(kafkawal.Config{
		Dir:   dir, // keep it across restarts: it holds what Kafka has not acknowledged
		Kafka: kafka.ConfigMap{"bootstrap.servers": bootstrap},
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	for i, order := range []string{`{"id":1,"total":30}`, `{"id":2,"total":12}`, `{"id":3,"total":7}`} {
		// Append returns once the record is fsync'd in the WAL, whether or
		// not Kafka is reachable; a background goroutine delivers it.
		seq, err := p.Append(ctx, kafkawal.Record{
			Topic:     "orders",
			Partition: kafkawal.PartitionAny, // the partitioner hashes the key
			Key:       fmt.Appendf(nil, "customer-%d", i%2),
			Value:     []byte(order),
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("appended", order, "as sequence", seq)
	}

	// Flush waits for Kafka's acknowledgement of everything appended so far.
	flushCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := p.Flush(flushCtx); err != nil {
		log.Fatal(err)
	}
	st := p.Stats()
	fmt.Printf("delivered %d, backlog %d\n", st.Delivered, st.BacklogRecords)

	// Close delivers what is left until its context ends; anything still
	// undelivered then stays in the WAL and is sent after the next Open.
	if err := p.Close(flushCtx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// appended {"id":1,"total":30} as sequence 1
	// appended {"id":2,"total":12} as sequence 2
	// appended {"id":3,"total":7} as sequence 3
	// delivered 3, backlog 0
}

// When Kafka is out long enough for the WAL to reach MaxDiskBytes, Append
// fails with an error matching ErrFull (FullPolicy Reject) or waits until
// its context ends (Block, the default). Nothing is written then: pass the
// pressure back to whoever sends the data, for instance as HTTP 503 with
// Retry-After, and let them retry.
func ExampleProducer_Append_backpressure() {
	dir, err := os.MkdirTemp("", "kafkawal-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	cfg := kafkawal.Config{
		Dir: dir,
		// Nothing listens here: Kafka is down for the whole example.
		Kafka: kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"},
		// A tiny WAL, so that it fills at once: 4 segments of 64 KiB.
		SegmentBytes:   64 << 10,
		MaxDiskBytes:   256 << 10,
		MaxRecordBytes: 16 << 10,
		FullPolicy:     kafkawal.Reject,
	}
	p, err := kafkawal.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	event := make([]byte, 1000)
	accepted := 0
	for accepted < 10000 { // 10 MB: far more than the cap
		_, err := p.Append(ctx, kafkawal.Record{Topic: "events", Partition: kafkawal.PartitionAny, Value: event})
		if errors.Is(err, kafkawal.ErrFull) {
			fmt.Println("WAL full: refuse new events (HTTP 503, Retry-After) until Kafka catches up")
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		accepted++
	}
	st := p.Stats()
	fmt.Println("every accepted event waits in the WAL:", st.BacklogRecords == uint64(accepted) && accepted > 0)
	fmt.Println("within the cap:", st.DiskBytes <= st.MaxDiskBytes)

	// With FullPolicy Block, the same Append waits for room until its
	// context ends, then fails with ErrFull too.

	// Close cannot deliver while Kafka is down: it gives up when its
	// context ends and reports how far it got. The records stay in the WAL
	// and go out after the next Open.
	closeCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = p.Close(closeCtx)
	fmt.Println("close left records in the WAL:", errors.Is(err, context.DeadlineExceeded))

	// The next Open, Kafka or not, finds them.
	p, err = kafkawal.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("replayed after reopening:", p.OpenReport().Replay == uint64(accepted))
	closeCtx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_ = p.Close(closeCtx)
	// Output:
	// WAL full: refuse new events (HTTP 503, Retry-After) until Kafka catches up
	// every accepted event waits in the WAL: true
	// within the cap: true
	// close left records in the WAL: true
	// replayed after reopening: true
}

// A pipeline that moves records from a source to Kafka one at a time (a
// consumer of another system, a log shipper) hands each to AppendAsync and
// goes on at once: the WAL writes and fsyncs them in groups while the
// source is read. Each callback says when its record is durable, in the
// order of the calls: the place to acknowledge the source (commit its
// offset), since a record is safe from then on, whatever happens to Kafka
// or to this process.
func ExampleProducer_AppendAsync() {
	bootstrap, stop := exampleKafka("lines")
	defer stop()
	dir, err := os.MkdirTemp("", "kafkawal-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	p, err := kafkawal.Open(kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": bootstrap}})
	if err != nil {
		log.Fatal(err)
	}

	source := []string{"GET /", "GET /cart", "POST /order", "GET /status"}
	committed := 0 // the source's offset: every line before it is safe
	ctx := context.Background()
	for offset, line := range source {
		// durable runs on kafkawal's goroutine, one callback after
		// another: keep it short and never block in it.
		p.AppendAsync(ctx, kafkawal.Record{Topic: "lines", Partition: kafkawal.PartitionAny, Value: []byte(line)},
			func(seq uint64, err error) {
				if err != nil { // nothing was written: retry or stop the pipeline
					fmt.Println("not appended:", err)
					return
				}
				committed = offset + 1
				fmt.Printf("offset %d durable as sequence %d\n", offset, seq)
			})
	}

	// Flush waits for the callbacks of the calls before it, then for Kafka.
	flushCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := p.Flush(flushCtx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("committed up to offset", committed, "- delivered:", p.Stats().Delivered)
	// Close runs every callback still due before it returns.
	if err := p.Close(flushCtx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// offset 0 durable as sequence 1
	// offset 1 durable as sequence 2
	// offset 2 durable as sequence 3
	// offset 3 durable as sequence 4
	// committed up to offset 4 - delivered: 4
}

// exampleKafka starts an embedded Kafka broker with the given topics and
// returns its bootstrap address and a function that stops it. In a real
// program, the address comes from configuration.
func exampleKafka(topics ...string) (bootstrap string, stop func()) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := kafkatest.StartEmbedded(ctx, kafkatest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range topics {
		if err := b.CreateTopic(ctx, t, 1, nil); err != nil {
			b.Close()
			log.Fatal(err)
		}
	}
	return b.Bootstrap(), func() { b.Close() }
}

// A payment is answered only once Kafka has it: WaitDelivered returns the
// partition and offset, or the reason it will never be there.
func ExampleProducer_WaitDelivered() {
	bootstrap, stop := exampleKafka("payments")
	defer stop()
	dir, err := os.MkdirTemp("", "kafkawal-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	p, err := kafkawal.Open(kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": bootstrap}})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	seq, err := p.Append(ctx, kafkawal.Record{Topic: "payments", Partition: kafkawal.PartitionAny,
		Key: []byte("account-7"), Value: []byte(`{"amount":12}`)})
	if err != nil {
		log.Fatal(err) // nothing was written: see the README's error table
	}
	res, err := p.WaitDelivered(ctx, seq)
	switch {
	case errors.Is(err, kafkawal.ErrDeadLettered):
		fmt.Println("refused by Kafka for good:", err) // in DIR/deadletter.log
	case err != nil:
		fmt.Println("not in Kafka yet:", err) // ctx ended or closing; still safe in the WAL
	default:
		fmt.Printf("sequence %d is in Kafka: %s partition %d offset %d\n", res.Seq, res.Topic, res.Partition, res.Offset)
	}
	if err := p.Close(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// sequence 1 is in Kafka: payments partition 0 offset 0
}
