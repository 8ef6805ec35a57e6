// Package prom exports a kafkawal.Producer to Prometheus.
//
// NewCollector returns a prometheus.Collector in the pattern of
// client_golang's collectors.NewDBStatsCollector: each Collect takes one
// Producer.Stats snapshot and one Producer.Latencies snapshot and turns
// them into constant metrics, so a scrape costs a few hundred atomic loads
// and nothing is recorded twice. Every metric carries the label
// producer="NAME" (by default the base name of the WAL directory), so that
// several producers in one process stay apart in one registry.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(prom.NewCollector(p, "orders"))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Names follow Prometheus's conventions: base units (seconds, bytes), the
// unit as suffix, _total on counters only. Counters count since Open, so
// they restart at 0 with the process, as Prometheus's rate() expects.
//
//	counters
//	kafkawal_appended_records_total         Append returned nil
//	kafkawal_delivered_records_total        Kafka acknowledged
//	kafkawal_dead_lettered_records_total    refused for good, in DIR/deadletter.log
//	kafkawal_resent_records_total           produced again (possible duplicates)
//	kafkawal_replayed_records_total         after the cursor found at Open
//	kafkawal_lost_records_total             unreadable (mid-log corruption); never expected
//	kafkawal_torn_tail_repairs_total        torn tails repaired at Open
//	kafkawal_producer_rebuilds_total        librdkafka producers replaced after a fatal error
//	kafkawal_report_anomalies_total         delivery reports out of order; never expected
//	kafkawal_partitions_deferred_total      partitions handed to a lane (partial outage, hot partition)
//
//	gauges
//	kafkawal_backlog_records                appended, not yet acknowledged
//	kafkawal_backlog_bytes                  their size in the WAL (see Stats.BacklogBytes)
//	kafkawal_disk_bytes                     WAL segment files
//	kafkawal_disk_max_bytes                 their cap (Config.MaxDiskBytes)
//	kafkawal_in_flight_records              handed to librdkafka, no report yet
//	kafkawal_oldest_unacknowledged_age_seconds
//	kafkawal_broker_reachable               1, or 0 while librdkafka reports all brokers down
//	kafkawal_broker_auth_failed             1 while authentication fails (SASL, TLS, no WRITE anywhere)
//
//	histograms (recorded inside the library, see kafkawal.Latencies)
//	kafkawal_append_duration_seconds        append call to durable, per call; 16µs..16.8s
//	kafkawal_fsync_duration_seconds         each fdatasync of the WAL tail; 16µs..16.8s
//	kafkawal_delivery_latency_seconds       record timestamp to delivery report; 1ms..72min
//
// Histogram buckets double (powers of two of a microsecond), so a quantile
// from histogram_quantile is off by less than a factor of two.
//
// examples/prometheus/alerts.yml holds alert rules over these metrics,
// tested with promtool; README.md's "What to monitor" has their runbook.
package prom
