package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

const (
	testTopic   = "events"
	segment     = 64 << 10
	maxBody     = 32 << 10
	padding     = 1000 // bytes of filler per event, so that the WAL fills fast
	perRequest  = 20   // events per request while filling the WAL
	retryAfter  = 2 * time.Second
	waitTimeout = 90 * time.Second
)

// openProducer opens a producer on b with a tiny WAL (4 segments of 64 KiB)
// that rejects appends when full, as run does.
func openProducer(t *testing.T, b kafkatest.Broker) *kafkawal.Producer {
	t.Helper()
	p, err := kafkawal.Open(kafkawal.Config{
		Dir: t.TempDir(),
		Kafka: kafka.ConfigMap{
			"bootstrap.servers":        b.Bootstrap(),
			"reconnect.backoff.max.ms": 1000,
		},
		SegmentBytes:   segment,
		MaxDiskBytes:   4 * segment,
		MaxRecordBytes: 16 << 10, // the default (1 MB) does not fit a 256 KiB WAL
		FullPolicy:     kafkawal.Reject,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return p
}

// closeQuickly closes p without waiting long for a network that may be cut.
func closeQuickly(p *kafkawal.Producer) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.Close(ctx)
}

func testConfig() handlerConfig {
	return handlerConfig{Topic: testTopic, MaxBodyBytes: maxBody, RetryAfter: retryAfter}
}

// client posts events and keeps the ledger: ids answered 202 (acked) and
// ids answered anything else (refused).
type client struct {
	t       *testing.T
	url     string
	nextID  int
	acked   []uint64
	refused map[uint64]bool
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (c *client) do(method, path, contentType string, body io.Reader, header map[string]string) response {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// post sends n new events (an array, or a single object if n is 0) and
// records their ids in the ledger according to the answer.
func (c *client) post(n int, header map[string]string) response {
	c.t.Helper()
	var events []map[string]any
	for i := 0; i < max(n, 1); i++ {
		c.nextID++
		events = append(events, map[string]any{"id": c.nextID, "pad": strings.Repeat("x", padding)})
	}
	var v any = events
	if n == 0 {
		v = events[0]
	}
	body, _ := json.Marshal(v)
	r := c.do(http.MethodPost, "/events", "application/json", bytes.NewReader(body), header)
	for _, e := range events {
		id := uint64(e["id"].(int))
		if r.code == http.StatusAccepted {
			c.acked = append(c.acked, id)
		} else {
			c.refused[id] = true
		}
	}
	if r.code == http.StatusAccepted {
		var a accepted
		if err := json.Unmarshal(r.body, &a); err != nil || a.Count != len(events) || a.LastSeq-a.FirstSeq+1 != uint64(len(events)) {
			c.t.Fatalf("202 answer %q (%v), want %d consecutive sequences", r.body, err, len(events))
		}
	}
	return r
}

func (c *client) stats() kafkawal.Stats {
	c.t.Helper()
	r := c.do(http.MethodGet, "/stats", "", nil, nil)
	var st kafkawal.Stats
	if err := json.Unmarshal(r.body, &st); r.code != http.StatusOK || err != nil {
		c.t.Fatalf("GET /stats: %d %q (%v)", r.code, r.body, err)
	}
	return st
}

func (c *client) health() health {
	c.t.Helper()
	r := c.do(http.MethodGet, "/healthz", "", nil, nil)
	var h health
	if err := json.Unmarshal(r.body, &h); r.code != http.StatusOK || err != nil || h.Status != "ok" {
		c.t.Fatalf("GET /healthz: %d %q (%v)", r.code, r.body, err)
	}
	return h
}

// onlyReader hides its reader's length, so that the client sends the body
// chunked, without a Content-Length.
type onlyReader struct{ io.Reader }

func TestIngest(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{Proxy: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := b.CreateTopic(ctx, testTopic, 3, nil); err != nil {
		t.Fatal(err)
	}
	p := openProducer(t, b)
	defer closeQuickly(p) // after a failure; the test closes it itself
	srv := httptest.NewServer(newHandler(p, testConfig()))
	defer srv.Close()
	c := &client{t: t, url: srv.URL, refused: map[uint64]bool{}}

	t.Run("bad requests", func(t *testing.T) {
		c.t = t
		defer func() { c.t = nil }()
		big := `[{"pad":"` + strings.Repeat("x", maxBody) + `"}]`
		cases := []struct {
			name         string
			method, path string
			body         io.Reader
			want         int
			wantInError  string
		}{
			{"bad JSON", "POST", "/events", strings.NewReader(`{"id":1,`), 400, "invalid JSON"},
			{"bad JSON in an array", "POST", "/events", strings.NewReader(`[{"id":1},{"id":]`), 400, "invalid JSON"},
			{"trailing garbage", "POST", "/events", strings.NewReader(`{"id":1} {"id":2}`), 400, "invalid JSON"},
			{"empty body", "POST", "/events", strings.NewReader(""), 400, "empty body"},
			{"blank body", "POST", "/events", strings.NewReader(" \n\t "), 400, "empty body"},
			{"empty array", "POST", "/events", strings.NewReader("[]"), 400, "empty array"},
			{"not an object", "POST", "/events", strings.NewReader("42"), 400, "not a JSON object"},
			{"null", "POST", "/events", strings.NewReader("null"), 400, "not a JSON object"},
			{"array of non-objects", "POST", "/events", strings.NewReader(`[{"id":1},"x"]`), 400, "event 1: not a JSON object"},
			{"key not a string", "POST", "/events", strings.NewReader(`{"key":{"a":1}}`), 400, `must be a string or a number`},
			{"oversize", "POST", "/events", strings.NewReader(big), 413, "exceeds the limit"},
			{"oversize, chunked", "POST", "/events", onlyReader{strings.NewReader(big)}, 413, "exceeds the limit"},
			{"GET /events", "GET", "/events", nil, 405, ""},
			{"PUT /events", "PUT", "/events", strings.NewReader(`{"id":1}`), 405, ""},
			{"POST /stats", "POST", "/stats", strings.NewReader(`{}`), 405, ""},
			{"DELETE /healthz", "DELETE", "/healthz", nil, 405, ""},
		}
		for _, tc := range cases {
			r := c.do(tc.method, tc.path, "application/json", tc.body, nil)
			if r.code != tc.want || !strings.Contains(string(r.body), tc.wantInError) {
				t.Errorf("%s: %d %q, want %d with %q", tc.name, r.code, r.body, tc.want, tc.wantInError)
			}
			if tc.want == 405 && r.header.Get("Allow") == "" {
				t.Errorf("%s: 405 without an Allow header", tc.name)
			}
		}
		if st := c.stats(); st.Appended != 0 {
			t.Errorf("bad requests appended %d records", st.Appended)
		}
	})
	c.t = t

	// Keys: the event's "key" field wins over the header; without either,
	// no key.
	keyed := map[uint64]string{}
	for _, tc := range []struct {
		body, header, wantKey string
	}{
		{`{"id":1,"key":"from-field"}`, "from-header", "from-field"},
		{`{"id":2,"key":42}`, "", "42"},
		{`[{"id":3},{"id":4,"key":null}]`, "from-header", "from-header"},
		{`{"id":5}`, "", ""},
	} {
		r := c.do("POST", "/events", "application/json", strings.NewReader(tc.body), map[string]string{"X-Kafka-Key": tc.header})
		if r.code != http.StatusAccepted {
			t.Fatalf("POST %s: %d %q", tc.body, r.code, r.body)
		}
		var evs []struct{ ID uint64 }
		if err := json.Unmarshal([]byte("["+strings.Trim(tc.body, "[]")+"]"), &evs); err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			keyed[e.ID] = tc.wantKey
			c.acked = append(c.acked, e.ID)
		}
	}
	c.nextID = 5

	// Healthy: single events and arrays are accepted.
	for i := 0; i < 5; i++ {
		if r := c.post(i, nil); r.code != http.StatusAccepted {
			t.Fatalf("POST with Kafka up: %d %q", r.code, r.body)
		}
	}
	if h := c.health(); !h.KafkaReachable {
		t.Errorf("healthz with Kafka up: %+v", h)
	}
	if st := c.stats(); st.Appended != uint64(len(c.acked)) {
		t.Errorf("stats: appended %d, want %d", st.Appended, len(c.acked))
	}

	// Cut the network: the WAL fills up and the service pushes back.
	b.Proxy().Blackhole()
	var full response
	deadline := time.Now().Add(waitTimeout)
	for {
		r := c.post(perRequest, nil)
		if r.code == http.StatusServiceUnavailable {
			full = r
			break
		}
		if r.code != http.StatusAccepted {
			t.Fatalf("POST during the outage: %d %q", r.code, r.body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 503 after %v of outage; stats %+v", waitTimeout, c.stats())
		}
	}
	if got := full.header.Get("Retry-After"); got != strconv.Itoa(int(retryAfter.Seconds())) {
		t.Errorf("503 Retry-After %q, want %q", got, strconv.Itoa(int(retryAfter.Seconds())))
	}
	if !strings.Contains(string(full.body), "full") {
		t.Errorf("503 body %q does not say the log is full", full.body)
	}
	st := c.stats()
	t.Logf("WAL full after %d accepted events: %+v", len(c.acked), st)
	if st.DiskBytes > st.MaxDiskBytes || st.BacklogRecords == 0 {
		t.Errorf("stats when full: %+v", st)
	}
	if h := c.health(); h.WALFullPercent < 50 {
		t.Errorf("healthz when full: %+v", h)
	}
	// Still full: a second try is refused too, at once.
	if r := c.post(perRequest, nil); r.code != http.StatusServiceUnavailable {
		t.Errorf("POST to a full WAL: %d %q", r.code, r.body)
	}

	// Heal: the backlog drains and the service accepts events again.
	b.Proxy().Heal()
	deadline = time.Now().Add(waitTimeout)
	for r := c.post(perRequest, nil); r.code != http.StatusAccepted; r = c.post(perRequest, nil) {
		if r.code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("POST after heal: %d %q; stats %+v", r.code, r.body, c.stats())
		}
		time.Sleep(50 * time.Millisecond) // pace the retries, as Retry-After asks
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if h := c.health(); !h.KafkaReachable || h.BacklogRecords != 0 {
		t.Errorf("healthz after the backlog drained: %+v", h)
	}
	srv.Close()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Every 202 reached Kafka; nothing refused did.
	recs, err := kafkatest.ReadAll(ctx, b.Bootstrap(), []string{testTopic}, len(c.acked))
	if err != nil {
		t.Fatal(err)
	}
	rep := kafkatest.Verify(c.acked, recs, eventID, nil)
	t.Logf("%d accepted, %d refused; %v", len(c.acked), len(c.refused), rep)
	if rep.Lost != 0 || rep.OrderViolations != 0 || rep.Unidentified != 0 {
		t.Errorf("read back: %v", rep)
	}
	if len(c.refused) == 0 {
		t.Error("no event was refused")
	}
	for _, r := range recs {
		id, _ := eventID(r)
		if c.refused[id] {
			t.Errorf("event %d was answered 503 but reached Kafka", id)
		}
		if want, ok := keyed[id]; ok && string(r.Key) != want {
			t.Errorf("event %d: key %q, want %q", id, r.Key, want)
		}
		if !json.Valid(r.Value) || bytes.ContainsAny(r.Value, " \n") {
			t.Errorf("event %d: value %q is not compact JSON", id, r.Value)
		}
	}
}

func eventID(r *kgo.Record) (uint64, bool) {
	var e struct{ ID *uint64 }
	if err := json.Unmarshal(r.Value, &e); err != nil || e.ID == nil {
		return 0, false
	}
	return *e.ID, true
}

// serve stops on cancel in order: requests in progress finish, then the
// producer closes having delivered everything.
func TestServeGracefulShutdown(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := b.CreateTopic(ctx, testTopic, 1, nil); err != nil {
		t.Fatal(err)
	}
	p := openProducer(t, b)
	defer closeQuickly(p) // serve closes it; this is for a failure before
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- serve(serveCtx, ln, p, testConfig(), 10*time.Second, 30*time.Second) }()

	c := &client{t: t, url: "http://" + ln.Addr().String(), refused: map[uint64]bool{}}
	for i := 0; i < 3; i++ {
		if r := c.post(10, nil); r.code != http.StatusAccepted {
			t.Fatalf("POST: %d %q", r.code, r.body)
		}
	}
	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("serve did not return within a minute of the signal")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("still accepting connections after shutdown")
	}
	if _, err := p.Append(ctx, kafkawal.Record{Topic: testTopic, Value: []byte("{}")}); !errors.Is(err, kafkawal.ErrClosed) {
		t.Errorf("Append after shutdown: %v, want ErrClosed", err)
	}
	if st := p.Stats(); st.Delivered != 30 || st.BacklogRecords != 0 {
		t.Errorf("after shutdown: %+v, want all 30 delivered", st)
	}
	recs, err := kafkatest.ReadAll(ctx, b.Bootstrap(), []string{testTopic}, len(c.acked))
	if err != nil {
		t.Fatal(err)
	}
	if rep := kafkatest.Verify(c.acked, recs, eventID, nil); !rep.OK() {
		t.Errorf("read back: %v", rep)
	}
}

func TestHandlerConfigDefaults(t *testing.T) {
	c := handlerConfig{Topic: "t", RetryAfter: 1500 * time.Millisecond}.withDefaults()
	if c.KeyField != "key" || c.KeyHeader != "X-Kafka-Key" || c.MaxBodyBytes != 1<<20 {
		t.Errorf("defaults: %+v", c)
	}
	rec := httptest.NewRecorder()
	(&handler{cfg: c}).unavailable(rec, "x")
	if got := rec.Header().Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After for 1.5s: %q, want 2 (rounded up)", got)
	}
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("unavailable: %d", rec.Code)
	}
}
