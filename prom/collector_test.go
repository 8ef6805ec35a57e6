package prom_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/prom"
)

// exported is every metric the collector exports, with its type.
var exported = map[string]dto.MetricType{
	"kafkawal_appended_records_total":            dto.MetricType_COUNTER,
	"kafkawal_delivered_records_total":           dto.MetricType_COUNTER,
	"kafkawal_dead_lettered_records_total":       dto.MetricType_COUNTER,
	"kafkawal_resent_records_total":              dto.MetricType_COUNTER,
	"kafkawal_replayed_records_total":            dto.MetricType_COUNTER,
	"kafkawal_lost_records_total":                dto.MetricType_COUNTER,
	"kafkawal_torn_tail_repairs_total":           dto.MetricType_COUNTER,
	"kafkawal_producer_rebuilds_total":           dto.MetricType_COUNTER,
	"kafkawal_report_anomalies_total":            dto.MetricType_COUNTER,
	"kafkawal_partitions_deferred_total":         dto.MetricType_COUNTER,
	"kafkawal_backlog_records":                   dto.MetricType_GAUGE,
	"kafkawal_backlog_bytes":                     dto.MetricType_GAUGE,
	"kafkawal_disk_bytes":                        dto.MetricType_GAUGE,
	"kafkawal_disk_max_bytes":                    dto.MetricType_GAUGE,
	"kafkawal_in_flight_records":                 dto.MetricType_GAUGE,
	"kafkawal_oldest_unacknowledged_age_seconds": dto.MetricType_GAUGE,
	"kafkawal_broker_reachable":                  dto.MetricType_GAUGE,
	"kafkawal_broker_auth_failed":                dto.MetricType_GAUGE,
	"kafkawal_stalled_partitions":                dto.MetricType_GAUGE,
	"kafkawal_parked_partitions":                 dto.MetricType_GAUGE,
	"kafkawal_parked_bytes":                      dto.MetricType_GAUGE,
	"kafkawal_append_duration_seconds":           dto.MetricType_HISTOGRAM,
	"kafkawal_fsync_duration_seconds":            dto.MetricType_HISTOGRAM,
	"kafkawal_delivery_latency_seconds":          dto.MetricType_HISTOGRAM,
	"kafkawal_commit_duration_seconds":           dto.MetricType_HISTOGRAM,
	"kafkawal_transactions_committed_total":      dto.MetricType_COUNTER,
	"kafkawal_transactions_aborted_total":        dto.MetricType_COUNTER,
	"kafkawal_fenced":                            dto.MetricType_GAUGE,
	"kafkawal_exactly_once_waiting":              dto.MetricType_GAUGE,
}

// pending are metrics that alerts.yml uses before the library has them.
// Move each to exported when collector.go exports it.
var pending = []string{}

func open(t *testing.T, dir, bootstrap string) *kafkawal.Producer {
	t.Helper()
	p, err := kafkawal.Open(kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": bootstrap}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value returns the metric of family name whose producer label is
// producer.
func metric(t *testing.T, mfs map[string]*dto.MetricFamily, name, producer string) *dto.Metric {
	t.Helper()
	for _, m := range mfs[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == prom.ProducerLabel && l.GetValue() == producer {
				return m
			}
		}
	}
	t.Fatalf("no %s{producer=%q}", name, producer)
	return nil
}

// TestCollector: the names and types exported, the values of a real
// producer after a delivery, promlint's verdict on the names, and two
// producers side by side in one (pedantic) registry.
func TestCollector(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.CreateTopic(ctx, "m", 1, nil); err != nil {
		t.Fatal(err)
	}
	orders := open(t, filepath.Join(t.TempDir(), "orders-wal"), b.Bootstrap())
	audit := open(t, t.TempDir(), b.Bootstrap())
	const n = 30
	for i := range n {
		if _, err := orders.Append(ctx, kafkawal.Record{Topic: "m", Value: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := orders.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewPedanticRegistry() // checks Collect against Describe
	reg.MustRegister(prom.NewCollector(orders, ""), prom.NewCollector(audit, "audit"))
	if err := reg.Register(prom.NewCollector(audit, "audit")); err == nil {
		t.Error("a second collector with the same producer name registered")
	}
	mfs := gather(t, reg)

	var names []string
	for name, mf := range mfs {
		names = append(names, name)
		if want, ok := exported[name]; !ok || mf.GetType() != want {
			t.Errorf("%s: type %v, want %v (listed: %v)", name, mf.GetType(), want, ok)
		}
		if len(mf.GetMetric()) != 2 {
			t.Errorf("%s: %d series, want one per producer", name, len(mf.GetMetric()))
		}
	}
	if len(names) != len(exported) {
		slices.Sort(names)
		t.Errorf("exported %d metrics, want %d: %v", len(names), len(exported), names)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}

	// The default name is the WAL directory's base name.
	check := func(name string, want float64) {
		t.Helper()
		m := metric(t, mfs, name, "orders-wal")
		var got float64
		switch {
		case m.Counter != nil:
			got = m.GetCounter().GetValue()
		case m.Gauge != nil:
			got = m.GetGauge().GetValue()
		}
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	st := orders.Stats()
	check("kafkawal_appended_records_total", n)
	check("kafkawal_delivered_records_total", n)
	check("kafkawal_backlog_records", 0)
	check("kafkawal_backlog_bytes", 0)
	check("kafkawal_in_flight_records", 0)
	check("kafkawal_broker_reachable", 1)
	check("kafkawal_broker_auth_failed", 0)
	check("kafkawal_disk_max_bytes", float64(st.MaxDiskBytes))
	check("kafkawal_disk_bytes", float64(st.DiskBytes))
	check("kafkawal_lost_records_total", 0)

	lat := orders.Latencies()
	for name, want := range map[string]kafkawal.Histogram{
		"kafkawal_append_duration_seconds":  lat.Append,
		"kafkawal_delivery_latency_seconds": lat.Delivery,
	} {
		h := metric(t, mfs, name, "orders-wal").GetHistogram()
		if h.GetSampleCount() != n || want.Count != n {
			t.Errorf("%s: %d observations (Latencies: %d), want %d", name, h.GetSampleCount(), want.Count, n)
		}
		if h.GetSampleSum() <= 0 || h.GetSampleSum() != want.Sum.Seconds() {
			t.Errorf("%s: sum %v, Latencies %v", name, h.GetSampleSum(), want.Sum)
		}
		// Cumulative, ending at the count; each bound a power of two of a
		// microsecond.
		var prev uint64
		for _, bk := range h.GetBucket() {
			if bk.GetCumulativeCount() < prev {
				t.Errorf("%s: buckets not cumulative", name)
			}
			prev = bk.GetCumulativeCount()
			us := bk.GetUpperBound() * 1e6
			if us != float64(int64(us)) || int64(us)&(int64(us)-1) != 0 {
				t.Errorf("%s: bound %v s is not a power of two of a microsecond", name, bk.GetUpperBound())
			}
		}
		if prev > n {
			t.Errorf("%s: last bucket %d above the count %d", name, prev, n)
		}
	}
	if h := metric(t, mfs, "kafkawal_fsync_duration_seconds", "orders-wal").GetHistogram(); h.GetSampleCount() == 0 {
		t.Error("no fsync observed")
	}
	if h := metric(t, mfs, "kafkawal_append_duration_seconds", "audit").GetHistogram(); h.GetSampleCount() != 0 {
		t.Errorf("audit: %d appends, want 0 (the producers' figures mixed)", h.GetSampleCount())
	}
}

// TestAlertsUseExportedMetrics: every kafkawal_ metric named in
// examples/prometheus/alerts.yml is exported (or listed as pending), so
// that no alert watches a name that never appears.
func TestAlertsUseExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("../examples/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, name := range regexp.MustCompile(`kafkawal_[a-z_]+`).FindAllString(string(b), -1) {
		used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")] = true
	}
	for name := range used {
		if _, ok := exported[name]; !ok && !slices.Contains(pending, name) {
			t.Errorf("alerts.yml uses %s, which the collector does not export", name)
		}
	}
	for _, name := range pending {
		if _, ok := exported[name]; ok {
			t.Errorf("%s is exported now: remove it from pending", name)
		}
	}
	if len(used) < 6 {
		t.Errorf("alerts.yml names only %v", used)
	}
}

// TestCoreDoesNotImportPrometheus: client_golang stays out of the
// library's import graph (only this package brings it).
func TestCoreDoesNotImportPrometheus(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/kafkawal/kafkawal").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "github.com/kafkawal/kafkawal/wal\n") {
		t.Fatalf("go list -deps looks wrong:\n%s", out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "github.com/prometheus/") {
			t.Errorf("the core imports %s", line)
		}
	}
}
