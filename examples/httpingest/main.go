// Command httpingest is a small HTTP service that takes JSON events and
// produces them to Kafka through kafkawal, so that a Kafka outage costs it
// disk space, not events: a 202 means the events are fsync'd in the local
// write-ahead log and will reach Kafka; a full log answers 503 with
// Retry-After instead of losing anything.
//
//	POST /events   {"key":"user-1","amount":3} or [{...},{...}]
//	               202 {"first_seq":1,"last_seq":2,"count":2}
//	               400 bad JSON or empty body, 413 body over -max-body,
//	               503 + Retry-After when the WAL is full (Kafka out too long)
//	GET  /stats    kafkawal Stats as JSON
//	GET  /healthz  200 {"status":"ok","kafka_reachable":true,...}
//	GET  /metrics  Prometheus metrics: kafkawal's (package prom, labelled
//	               producer=-producer-name), the Go runtime's, the process's
//
// The key of an event is its "key" field (-key-field) or else the request's
// X-Kafka-Key header. Without KAFKA_BOOTSTRAP (or -bootstrap) it starts an
// embedded broker, so that it runs anywhere:
//
//	go run ./examples/httpingest -addr :8080
//	curl -si localhost:8080/events -d '{"key":"user-1","amount":3}'
//
// SIGTERM or SIGINT stops it gracefully: it stops accepting connections,
// lets the requests in progress finish, then closes the producer, which
// delivers what it can within -close-timeout and leaves the rest in the
// WAL for the next start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// options are the command-line flags.
type options struct {
	addr, bootstrap, dir string
	handler              handlerConfig
	maxDiskBytes         int64
	shutdownTimeout      time.Duration
	closeTimeout         time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "localhost:8080", "listen address")
	flag.StringVar(&o.bootstrap, "bootstrap", os.Getenv("KAFKA_BOOTSTRAP"), "Kafka bootstrap.servers (default $KAFKA_BOOTSTRAP; empty starts an embedded broker)")
	flag.StringVar(&o.dir, "dir", filepath.Join(os.TempDir(), "kafkawal-httpingest"), "WAL directory: it holds the undelivered events, so a real service keeps it on a persistent volume")
	flag.StringVar(&o.handler.Topic, "topic", "events", "Kafka topic")
	flag.StringVar(&o.handler.KeyField, "key-field", defaultKeyField, "event field used as the record key")
	flag.Int64Var(&o.handler.MaxBodyBytes, "max-body", defaultMaxBodyBytes, "request body limit in bytes")
	flag.DurationVar(&o.handler.RetryAfter, "retry-after", defaultRetryAfter, "Retry-After of a 503")
	flag.StringVar(&o.handler.ProducerName, "producer-name", "", "producer label of the metrics on /metrics (default: the base name of -dir)")
	flag.Int64Var(&o.maxDiskBytes, "max-disk", 1<<30, "WAL disk cap in bytes (kafkawal MaxDiskBytes)")
	flag.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long requests in progress may take to finish at shutdown")
	flag.DurationVar(&o.closeTimeout, "close-timeout", 30*time.Second, "how long to keep delivering at shutdown")
	flag.Parse()

	lg := zerolog.New(os.Stderr).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	o.handler.Logger = &lg
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, &lg); err != nil {
		lg.Error().Err(err).Msg("httpingest: exiting")
		stop()
		os.Exit(1)
	}
	lg.Info().Msg("httpingest: stopped")
}

func run(ctx context.Context, o options, lg *zerolog.Logger) error {
	if o.bootstrap == "" {
		b, err := kafkatest.StartEmbedded(ctx, kafkatest.Options{})
		if err != nil {
			return err
		}
		defer b.Close()
		if err := b.CreateTopic(ctx, o.handler.Topic, 3, nil); err != nil {
			return err
		}
		o.bootstrap = b.Bootstrap()
		lg.Info().Str("bootstrap", o.bootstrap).Str("topic", o.handler.Topic).Msg("httpingest: started an embedded Kafka broker")
	}

	p, err := kafkawal.Open(kafkawal.Config{
		Dir:          o.dir,
		Kafka:        kafka.ConfigMap{"bootstrap.servers": o.bootstrap},
		MaxDiskBytes: o.maxDiskBytes,
		// Reject rather than Block with a per-request deadline: the WAL
		// is full only when Kafka has been out long enough to fill it,
		// and then it stays full until Kafka is back, so waiting inside
		// the request would rarely succeed. Meanwhile every waiting
		// request would pin a goroutine, a connection and its decoded
		// body (up to -max-body) in memory, which is exactly the
		// unbounded buffering kafkawal exists to avoid. An immediate 503
		// with Retry-After keeps memory flat, keeps latency low, lets a
		// load balancer route elsewhere and leaves the waiting to the
		// client, who knows how long it can afford to.
		FullPolicy: kafkawal.Reject,
		Logger:     lg,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.Background(), o.closeTimeout)
		defer cancel()
		return errors.Join(err, p.Close(cctx))
	}
	lg.Info().Str("addr", ln.Addr().String()).Str("topic", o.handler.Topic).Str("dir", o.dir).Msg("httpingest: serving")
	return serve(ctx, ln, p, o.handler, o.shutdownTimeout, o.closeTimeout)
}

// serve serves newHandler(p, cfg) on ln until ctx ends, then shuts down in
// order: stop accepting and let requests in progress finish (their Appends
// complete) within shutdownTimeout, then close p, delivering what it can
// within closeTimeout. It owns p: it always closes it.
func serve(ctx context.Context, ln net.Listener, p *kafkawal.Producer, cfg handlerConfig, shutdownTimeout, closeTimeout time.Duration) error {
	srv := &http.Server{
		Handler:           newHandler(p, cfg),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var errs []error
	select {
	case err := <-served: // the listener failed
		errs = append(errs, fmt.Errorf("serve: %w", err))
	case <-ctx.Done():
		cfg.withDefaults().Logger.Info().Msg("httpingest: shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := srv.Shutdown(sctx); err != nil {
			// Requests still running after the deadline: cut them.
			// An Append they are in finishes or fails; Close below
			// then refuses the rest with ErrClosed.
			srv.Close()
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
		}
		cancel()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
	}

	cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := p.Close(cctx); err != nil {
		// Not a loss: what was not delivered stays in the WAL and goes
		// out after the next start.
		errs = append(errs, fmt.Errorf("close producer: %w", err))
	}
	return errors.Join(errs...)
}
