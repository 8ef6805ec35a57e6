package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// TestMetrics scrapes /metrics after events were delivered: the text
// parses, promlint (promtool check metrics' linter) finds nothing, and
// kafkawal's metrics carry the producer label and the figures of Stats.
func TestMetrics(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.CreateTopic(ctx, testTopic, 3, nil); err != nil {
		t.Fatal(err)
	}
	p := openProducer(t, b)
	defer closeQuickly(p)
	cfg := testConfig()
	cfg.ProducerName = "ingest"
	srv := httptest.NewServer(newHandler(p, cfg))
	defer srv.Close()
	for i := range 3 {
		resp, err := http.Post(srv.URL+"/events", "application/json", strings.NewReader(`[{"key":"a","n":1},{"key":"b","n":2}]`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %d: %s", i, resp.Status)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	problems, err := promlint.New(strings.NewReader(string(body))).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	value := func(name string) float64 {
		mf := mfs[name]
		if mf == nil || len(mf.GetMetric()) != 1 {
			t.Fatalf("%s: %v", name, mf)
		}
		m := mf.GetMetric()[0]
		if l := m.GetLabel(); len(l) != 1 || l[0].GetName() != "producer" || l[0].GetValue() != "ingest" {
			t.Errorf("%s: labels %v, want producer=ingest", name, l)
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount())
		}
		t.Fatalf("%s: type %v", name, mf.GetType())
		return 0
	}
	for name, want := range map[string]float64{
		"kafkawal_appended_records_total":   6,
		"kafkawal_delivered_records_total":  6,
		"kafkawal_backlog_records":          0,
		"kafkawal_broker_reachable":         1,
		"kafkawal_append_duration_seconds":  3, // one AppendBatch per request
		"kafkawal_delivery_latency_seconds": 6,
	} {
		if got := value(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if mfs["go_goroutines"] == nil || mfs["process_cpu_seconds_total"] == nil {
		t.Error("no Go runtime or process metrics")
	}
}
