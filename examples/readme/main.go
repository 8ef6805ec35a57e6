// Command readme is the usage example of kafkawal's README, as a complete
// program: an HTTP endpoint that answers 202 once a payment is durable on
// local disk, whether or not Kafka is reachable.
package main

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
)

func main() {
	p, err := kafkawal.Open(kafkawal.Config{
		// One directory per replica, on a persistent volume: it holds what
		// Kafka has not acknowledged yet.
		Dir:   "/var/lib/payments/kafkawal",
		Kafka: kafka.ConfigMap{"bootstrap.servers": "kafka-1:9092,kafka-2:9092"},
		// At the disk cap (MaxDiskBytes, 1 GiB by default) fail at once
		// with ErrFull instead of waiting for room (Block, the default):
		// the WAL fills only after Kafka has been out for long, so waiting
		// inside a request rarely ends well, and every waiting request
		// holds a goroutine and its body in memory.
		FullPolicy: kafkawal.Reject,
	})
	if err != nil {
		log.Fatal(err) // ErrLocked, ErrCorrupt, or a config error naming the field
	}
	srv := &http.Server{Addr: ":8080", Handler: payments(p), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if err := shutdown(srv, p); err != nil {
		log.Print(err)
	}
}

// payments appends each request body to the WAL as one Kafka record.
func payments(p *kafkawal.Producer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			http.Error(w, "body unreadable or over 64 KiB", http.StatusBadRequest)
			return
		}
		_, err = p.Append(r.Context(), kafkawal.Record{
			Topic:     "payments",
			Partition: kafkawal.PartitionAny, // hash the key: one account's payments stay in order
			Key:       []byte(r.Header.Get("X-Account-ID")),
			Value:     body,
		})
		switch {
		case err == nil:
			w.WriteHeader(http.StatusAccepted) // durable here; Kafka will get it
		case errors.Is(err, kafkawal.ErrInvalidRecord):
			http.Error(w, err.Error(), http.StatusBadRequest) // the same request can never succeed
		case errors.Is(err, kafkawal.ErrFull), errors.Is(err, kafkawal.ErrClosed):
			// WAL full while Kafka is out, or shutting down: nothing was
			// written, and the client may send the same request again.
			w.Header().Set("Retry-After", "5")
			http.Error(w, "busy, retry later", http.StatusServiceUnavailable)
		default:
			log.Printf("append: %v", err) // a disk failure; not for the client's eyes
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
	})
}

// shutdown lets the requests in progress finish, then closes the producer
// with a deadline: during an outage Close would otherwise wait for ever.
// What it cannot deliver in time stays in the WAL for the next start.
func shutdown(srv *http.Server, p *kafkawal.Producer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	serr := srv.Shutdown(ctx)
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return errors.Join(serr, p.Close(ctx))
}
