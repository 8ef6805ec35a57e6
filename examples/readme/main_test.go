package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// readmeMarker precedes, in the README, the fenced copy of main.go.
const readmeMarker = "<!-- examples/readme/main.go: kept identical by examples/readme/main_test.go -->"

// The README shows this program in full; this test keeps the two
// identical, so that the README's example always compiles and is the one
// tested here.
func TestREADMEShowsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), readmeMarker+"\n\n```go\n")
	if !ok {
		t.Fatalf("README.md has no %q followed by a ```go block", readmeMarker)
	}
	block, _, ok := strings.Cut(after, "\n```\n")
	if !ok {
		t.Fatal("README.md: the ```go block after the marker does not end")
	}
	if block+"\n" != string(src) {
		a, b := strings.Split(block+"\n", "\n"), strings.Split(string(src), "\n")
		for i := range min(len(a), len(b)) {
			if a[i] != b[i] {
				t.Fatalf("README.md's example differs from main.go at line %d:\nREADME:  %q\nmain.go: %q\ncopy main.go into the README", i+1, a[i], b[i])
			}
		}
		t.Fatalf("README.md's example has %d lines, main.go %d: copy main.go into the README", len(a), len(b))
	}
}

func post(t *testing.T, h http.Handler, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("X-Account-ID", "acct-7")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// Every answer the handler gives, against the embedded broker: 202 and the
// payment in Kafka; 400 for a record kafkawal refuses as invalid (too
// large here); 503 with Retry-After at the disk cap and after Close.
func TestPaymentsAnswers(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := b.CreateTopic(ctx, "payments", 3, nil); err != nil {
		t.Fatal(err)
	}
	p, err := kafkawal.Open(kafkawal.Config{
		Dir:            t.TempDir(),
		Kafka:          kafka.ConfigMap{"bootstrap.servers": b.Bootstrap()},
		MaxRecordBytes: 4 << 10,
		FullPolicy:     kafkawal.Reject,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := payments(p)

	if w := post(t, h, []byte(`{"amount":12}`)); w.Code != http.StatusAccepted {
		t.Fatalf("payment: %d %s, want 202", w.Code, w.Body)
	}
	if w := post(t, h, make([]byte, 8<<10)); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "too large") {
		t.Fatalf("oversize payment: %d %s, want 400 naming the size", w.Code, w.Body)
	}
	recs, err := kafkatest.ReadAll(ctx, b.Bootstrap(), []string{"payments"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || string(recs[0].Key) != "acct-7" || string(recs[0].Value) != `{"amount":12}` {
		t.Fatalf("Kafka holds %d records, want the one payment", len(recs))
	}

	srv := httptest.NewServer(h)
	if err := shutdown(srv.Config, p); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	srv.Close()
	w := post(t, h, []byte(`{"amount":1}`))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after shutdown: %d %q, want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
}

// With Kafka unreachable the WAL fills; then every payment is answered 503
// with Retry-After at once (Reject), and shutdown returns within its
// deadline, leaving the backlog in the WAL.
func TestPaymentsWhenTheWALIsFull(t *testing.T) {
	p, err := kafkawal.Open(kafkawal.Config{
		Dir:            t.TempDir(),
		Kafka:          kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"}, // nothing listens
		SegmentBytes:   64 << 10,
		MaxDiskBytes:   256 << 10,
		MaxRecordBytes: 16 << 10,
		FullPolicy:     kafkawal.Reject,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := payments(p)
	payment := bytes.Repeat([]byte("x"), 1000)
	accepted := 0
	for ; accepted < 10000; accepted++ {
		w := post(t, h, payment)
		if w.Code == http.StatusServiceUnavailable {
			if w.Header().Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
			break
		}
		if w.Code != http.StatusAccepted {
			t.Fatalf("payment %d: %d %s", accepted, w.Code, w.Body)
		}
	}
	if accepted == 0 || accepted == 10000 {
		t.Fatalf("%d payments accepted before the WAL was full", accepted)
	}
	if st := p.Stats(); st.BacklogRecords != uint64(accepted) {
		t.Fatalf("backlog %d, want the %d accepted payments", st.BacklogRecords, accepted)
	}
	err = shutdown(&http.Server{}, p)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stays in the WAL") {
		t.Fatalf("shutdown during an outage: %v, want the deadline and the records left in the WAL", err)
	}
}
