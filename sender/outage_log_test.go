package sender

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal/wal"
)

type lines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lines) summaries(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, s := range strings.Split(l.b.String(), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(s), &ev) == nil && ev["message"] == "sender: records still undelivered; they wait in the WAL" {
			out = append(out, ev)
		}
	}
	return out
}

// summarySender is a sender with a WAL of 10 records, 3 of them in flight,
// logging to the returned lines; it never produces.
func summarySender(t *testing.T) (*Sender, *lines) {
	t.Helper()
	l, _, err := wal.Open(t.TempDir(), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for i := range 10 {
		if _, err := l.AppendAt(context.Background(), []wal.Record{{Topic: "t", Value: []byte{byte(i)}}}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	out := &lines{}
	lg := zerolog.New(out)
	s := &Sender{wal: l, win: newWindow(1, 16), lg: &lg}
	for seq := uint64(1); seq <= 3; seq++ {
		s.win.add(seq, 10, time.Unix(1000, 0).UnixNano())
	}
	return s, out
}

// While every broker is down, a summary every OutageSummaryEvery, the
// first one interval after the outage's own warning, with the outage's
// length and the backlog, each duration's unit in its name.
func TestOutageSummaryWhileBrokersDown(t *testing.T) {
	s, out := summarySender(t)
	t0 := time.Unix(1000, 0)
	s.stats.unreachable.Store(true)
	s.outageSince = t0
	for _, at := range []time.Duration{0, time.Second, OutageSummaryEvery - time.Second} {
		s.summarize(t0.Add(at))
	}
	if n := len(out.summaries(t)); n != 0 {
		t.Fatalf("%d summaries in the outage's first interval, want 0", n)
	}
	s.summarize(t0.Add(OutageSummaryEvery))
	s.summarize(t0.Add(OutageSummaryEvery + 30*time.Second))
	s.summarize(t0.Add(2 * OutageSummaryEvery))
	got := out.summaries(t)
	if len(got) != 2 {
		t.Fatalf("%d summaries after two intervals, want 2", len(got))
	}
	ev := got[0]
	want := map[string]any{"level": "warn", "brokers_down": true, "outage_seconds": OutageSummaryEvery.Seconds(),
		"backlog_records": float64(10), "oldest_unacknowledged_age_seconds": OutageSummaryEvery.Seconds()}
	for k, v := range want {
		if ev[k] != v {
			t.Errorf("summary %s = %v, want %v (%v)", k, ev[k], v, ev)
		}
	}
	for _, k := range []string{"backlog_bytes", "disk_bytes", "max_disk_bytes", "disk_used_percent", "undelivered_seconds"} {
		if _, ok := ev[k]; !ok {
			t.Errorf("summary lacks %s: %v", k, ev)
		}
	}
	// Reachable and delivering again: no more summaries.
	s.stats.unreachable.Store(false)
	for i := range 4 {
		s.stats.delivered.Add(1)
		s.summarize(t0.Add(2*OutageSummaryEvery + time.Duration(i+1)*OutageSummaryEvery/2))
	}
	if n := len(out.summaries(t)); n != 2 {
		t.Fatalf("%d summaries once delivering again, want still 2", n)
	}
}

// A silent network: brokers reported up, records in flight, nothing
// delivered for an interval: summarized too, without brokers_down.
func TestOutageSummaryWhenNothingIsDelivered(t *testing.T) {
	s, out := summarySender(t)
	t0 := time.Unix(1000, 0)
	s.summarize(t0)
	s.summarize(t0.Add(OutageSummaryEvery - time.Second))
	if n := len(out.summaries(t)); n != 0 {
		t.Fatalf("%d summaries before an interval without delivery, want 0", n)
	}
	s.summarize(t0.Add(OutageSummaryEvery))
	got := out.summaries(t)
	if len(got) != 1 || got[0]["brokers_down"] != false || got[0]["undelivered_seconds"] != OutageSummaryEvery.Seconds() {
		t.Fatalf("summaries %v, want one for the stall", got)
	}
	if _, ok := got[0]["outage_seconds"]; ok {
		t.Fatal("a stall reported with outage_seconds (no broker outage)")
	}
}
