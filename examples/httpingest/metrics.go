package main

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/prom"
)

// metricsHandler serves Prometheus's text format: kafkawal's metrics
// (package prom) beside the Go runtime's and the process's, from a
// registry of this handler's own rather than the global one, so that two
// handlers (tests) do not collide.
func metricsHandler(p *kafkawal.Producer, cfg handlerConfig) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		prom.NewCollector(p, cfg.ProducerName),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{cfg.Logger},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// promLogger passes promhttp's errors to zerolog.
type promLogger struct{ lg *zerolog.Logger }

func (l promLogger) Println(v ...any) {
	l.lg.Error().Msg("httpingest: metrics: " + strings.TrimSpace(fmt.Sprintln(v...)))
}
