package prom

import (
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kafkawal/kafkawal"
)

const namespace = "kafkawal"

// ProducerLabel is the label that names the producer on every metric.
const ProducerLabel = "producer"

// scalar is one counter or gauge and where its value comes from.
type scalar struct {
	name, help string
	kind       prometheus.ValueType
	value      func(*kafkawal.Stats) float64
}

// scalars lists every counter and gauge, in the order they are exported.
var scalars = []scalar{
	{"appended_records_total", "Records whose Append returned nil (durable in the WAL), since Open.", prometheus.CounterValue,
		func(s *kafkawal.Stats) float64 { return float64(s.Appended) }},
	{"delivered_records_total", "Records Kafka acknowledged, since Open.", prometheus.CounterValue,
		func(s *kafkawal.Stats) float64 { return float64(s.Delivered) }},
	{"dead_lettered_records_total", "Records Kafka refused for good, kept in the dead-letter log, since Open.", prometheus.CounterValue,
		func(s *kafkawal.Stats) float64 { return float64(s.DeadLettered) }},
	{"resent_records_total", "Records produced again after a transient failure, a producer rebuild or a restart (each may be a duplicate in Kafka), since Open.", prometheus.CounterValue,
		func(s *kafkawal.Stats) float64 { return float64(s.Resent) }},
	{"replayed_records_total", "Records after the durable cursor that Open found and sent again.", prometheus.CounterValue,
		func(s *kafkawal.Stats) float64 { return float64(s.Replayed) }},
	{"lost_records_total", "Records recovery could not read (mid-log corruption under QuarantineCorruption), skipped; never expected.", prometheus.CounterValue,
		func(s *kafkawal.Stats) float64 { return float64(s.Lost) }},
	{"torn_tail_repairs_total", "Torn tails (left by a crash) repaired at Open.", prometheus.CounterValue,
		func(s *kafkawal.Stats) float64 { return float64(s.Repairs) }},
	{"producer_rebuilds_total", "librdkafka producers replaced after a fatal error, since Open.", prometheus.CounterValue,
		func(s *kafkawal.Stats) float64 { return float64(s.ProducerRebuilds) }},
	{"report_anomalies_total", "Delivery reports that broke per-partition report order, since Open; never expected.", prometheus.CounterValue,
		func(s *kafkawal.Stats) float64 { return float64(s.ReportAnomalies) }},
	{"partitions_deferred_total", "Times a partition that did not keep up was handed to a lane of its own (its records read back from the WAL), since Open.", prometheus.CounterValue,
		func(s *kafkawal.Stats) float64 { return float64(s.PartitionsDeferred) }},

	{"backlog_records", "Records appended and not yet acknowledged by Kafka.", prometheus.GaugeValue,
		func(s *kafkawal.Stats) float64 { return float64(s.BacklogRecords) }},
	{"backlog_bytes", "Size in the WAL of the records not yet acknowledged (prorated within one segment).", prometheus.GaugeValue,
		func(s *kafkawal.Stats) float64 { return float64(s.BacklogBytes) }},
	{"disk_bytes", "Size of the WAL's segment files and park logs.", prometheus.GaugeValue,
		func(s *kafkawal.Stats) float64 { return float64(s.DiskBytes) }},
	{"disk_max_bytes", "Cap on the WAL's segment files (MaxDiskBytes); at it, Append blocks or fails with ErrFull.", prometheus.GaugeValue,
		func(s *kafkawal.Stats) float64 { return float64(s.MaxDiskBytes) }},
	{"in_flight_records", "Records handed to librdkafka without a delivery report yet.", prometheus.GaugeValue,
		func(s *kafkawal.Stats) float64 { return float64(s.InFlight) }},
	{"oldest_unacknowledged_age_seconds", "Age of the oldest record not yet acknowledged, in flight or still in the WAL (since its timestamp); 0 when the backlog is empty.", prometheus.GaugeValue,
		func(s *kafkawal.Stats) float64 { return s.OldestBacklogAge.Seconds() }},
	{"broker_reachable", "1 while Kafka is reachable, 0 while librdkafka reports all brokers down.", prometheus.GaugeValue,
		func(s *kafkawal.Stats) float64 {
			if s.BrokerReachable {
				return 1
			}
			return 0
		}},
	{"broker_auth_failed", "1 while the cluster and the client do not accept each other (SASL credentials, TLS certificates, or no WRITE ACL anywhere), until the next delivery; Stats.BrokerAuthError says why.", prometheus.GaugeValue,
		func(s *kafkawal.Stats) float64 {
			if s.BrokerAuthFailed {
				return 1
			}
			return 0
		}},
	{"stalled_partitions", "Partitions that stopped taking records (no delivery for PartitionStallTimeout) while the others go on.", prometheus.GaugeValue,
		func(s *kafkawal.Stats) float64 {
			n := 0
			for _, p := range s.StalledPartitions {
				if p.Stalled {
					n++
				}
			}
			return float64(n)
		}},
	{"parked_partitions", "Partitions with records in a park log (stalled for ParkAfter), until those are delivered.", prometheus.GaugeValue,
		func(s *kafkawal.Stats) float64 {
			n := 0
			for _, p := range s.StalledPartitions {
				if p.ParkedBytes > 0 {
					n++
				}
			}
			return float64(n)
		}},
	{"parked_bytes", "Size of the park logs (counted in disk_bytes too).", prometheus.GaugeValue,
		func(s *kafkawal.Stats) float64 { return float64(s.ParkedBytes) }},
	{"transactions_committed_total", "Transactions committed under Delivery ExactlyOnce, since Open.", prometheus.CounterValue,
		func(s *kafkawal.Stats) float64 { return float64(s.Transactions) }},
	{"transactions_aborted_total", "Transactions aborted under Delivery ExactlyOnce (a record failed in them, or an outage outlasted them), since Open.", prometheus.CounterValue,
		func(s *kafkawal.Stats) float64 { return float64(s.TransactionsAborted) }},
	{"fenced", "1 once another producer with the same TransactionalID took over: this one stopped delivering for good.", prometheus.GaugeValue,
		func(s *kafkawal.Stats) float64 {
			if s.Fenced {
				return 1
			}
			return 0
		}},
	{"exactly_once_waiting", "1 while exactly-once delivery waits for an operator (Stats.ExactlyOnceError: no authorization, a checkpoint that cannot be trusted).", prometheus.GaugeValue,
		func(s *kafkawal.Stats) float64 {
			if s.ExactlyOnceError != "" {
				return 1
			}
			return 0
		}},
}

// hist is one histogram: which Latencies field, and the range of
// kafkawal.HistogramBound indexes exported as buckets (every bucket below
// lo is counted in lo's cumulative count, every one above hi only in
// +Inf).
type hist struct {
	name, help string
	value      func(*kafkawal.Latencies) *kafkawal.Histogram
	lo, hi     int
}

var hists = []hist{
	{"append_duration_seconds", "Append and AppendBatch calls, from the call to the records durable under Config.Durability (waiting at the disk cap included), and AppendAsync calls, to their callback.",
		func(l *kafkawal.Latencies) *kafkawal.Histogram { return &l.Append }, 4, 24},
	{"fsync_duration_seconds", "fdatasync calls on the WAL's tail segment.",
		func(l *kafkawal.Latencies) *kafkawal.Histogram { return &l.Fsync }, 4, 24},
	{"delivery_latency_seconds", "Delivered records, from the record's timestamp (its Append unless the application set one) to its delivery report (under ExactlyOnce, its transaction's commit).",
		func(l *kafkawal.Latencies) *kafkawal.Histogram { return &l.Delivery }, 10, kafkawal.HistogramBuckets - 2},
	{"commit_duration_seconds", "CommitTransaction calls under Delivery ExactlyOnce, the flush of the transaction's records included.",
		func(l *kafkawal.Latencies) *kafkawal.Histogram { return &l.Commit }, 10, 24},
}

// collector is a prometheus.Collector over one Producer.
type collector struct {
	p      *kafkawal.Producer
	scalar []*prometheus.Desc // by index in scalars
	hist   []*prometheus.Desc // by index in hists
	bounds [][]float64        // upper bounds in seconds, by index in hists
}

// NewCollector returns a Collector exporting p's Stats and Latencies. name
// is the value of the producer label on every metric; empty means the base
// name of p's WAL directory. Register one collector per producer: two with
// the same name in one registry fail to register.
func NewCollector(p *kafkawal.Producer, name string) prometheus.Collector {
	if name == "" {
		name = filepath.Base(filepath.Clean(p.Dir()))
	}
	labels := prometheus.Labels{ProducerLabel: name}
	c := &collector{p: p}
	for _, s := range scalars {
		c.scalar = append(c.scalar, prometheus.NewDesc(namespace+"_"+s.name, s.help, nil, labels))
	}
	for _, h := range hists {
		c.hist = append(c.hist, prometheus.NewDesc(namespace+"_"+h.name, h.help, nil, labels))
		b := make([]float64, 0, h.hi-h.lo+1)
		for i := h.lo; i <= h.hi; i++ {
			b = append(b, kafkawal.HistogramBound(i).Seconds())
		}
		c.bounds = append(c.bounds, b)
	}
	return c
}

// Describe sends every metric's description.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.scalar {
		ch <- d
	}
	for _, d := range c.hist {
		ch <- d
	}
}

// Collect takes one snapshot of the producer's Stats and of its Latencies
// and sends them as constant metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.Stats()
	lat := c.p.Latencies()
	for i, s := range scalars {
		ch <- prometheus.MustNewConstMetric(c.scalar[i], s.kind, s.value(&st))
	}
	for i, h := range hists {
		snap := h.value(&lat)
		buckets := make(map[float64]uint64, len(c.bounds[i]))
		var cum uint64
		for j := 0; j <= h.hi; j++ {
			cum += snap.Counts[j]
			if j >= h.lo {
				buckets[c.bounds[i][j-h.lo]] = cum
			}
		}
		ch <- prometheus.MustNewConstHistogram(c.hist[i], snap.Count, snap.Sum.Seconds(), buckets)
	}
}
