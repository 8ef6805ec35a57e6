package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The demo in miniature: 1s up, 2s cut, 1s healed. Appends never fail, the
// backlog grows while the network is cut, drains to zero after it heals, and
// the read-back finds every appended record, in order.
func TestOutageDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := config{
		Rate: 2000, Size: 100,
		Before: time.Second, Outage: 2 * time.Second, After: time.Second,
		Drain: time.Minute, Every: 250 * time.Millisecond,
		Dir: t.TempDir(),
	}
	var out bytes.Buffer
	res, err := run(ctx, &out, c)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Report.OK() || res.Report.Lost != 0 {
		t.Errorf("verify: %v", res.Report)
	}
	if !regexp.MustCompile(`(?m)^verify \(read back with franz-go\): acked=\d+ .*lost=0 duplicates=\d+ order_violations=0$`).Match(out.Bytes()) {
		t.Error("output does not report lost=0 and order_violations=0")
	}
	// At 2000/s, a 2s cut leaves thousands of records waiting; allow for
	// a slow machine but not for an outage that never happened.
	if res.PeakBacklog < 1000 {
		t.Errorf("peak backlog %d records: the outage did not hold records back", res.PeakBacklog)
	}
	if res.Appended < 4000 || res.Report.Acked != int(res.Appended) {
		t.Errorf("appended %d records (ledger %d); want about 8000 at 2000/s for 4s", res.Appended, res.Report.Acked)
	}
	if f := res.Final; f.BacklogRecords != 0 || f.Delivered < res.Appended || f.Cursor != f.LastSeq {
		t.Errorf("final stats: %+v", f)
	}
	for _, want := range []string{"--- network cut", "--- network healed", "--- appending stopped", "backlog drained: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// One status line per period, with every column.
	lines := regexp.MustCompile(`(?m)^ +[\d.]+s  (up|CUT|healed) +\d+ +\d+ +\d+ +[\d.]+ +[\d.]+ +[\d.-]+ +\d+ +[\d.]+  (up|DOWN)$`).FindAll(out.Bytes(), -1)
	if len(lines) < 12 {
		t.Errorf("%d status lines, want one per 250ms of a 4s run", len(lines))
	}
}

func TestRSS(t *testing.T) {
	if rssMiB() == "-" {
		t.Skip("no /proc/self/status")
	}
	if got := rssMiB(); !regexp.MustCompile(`^\d+\.\d$`).MatchString(got) || got == "0.0" {
		t.Errorf("rssMiB() = %q", got)
	}
}

// -partial in miniature: one partition of three stalls for 5s; the other
// two keep being delivered, the stalled one's records are parked, and once
// it heals everything arrives, in order.
func TestPartialOutageDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := config{
		Rate: 2000, Size: 100,
		Before: time.Second, Outage: 5 * time.Second, After: time.Second,
		Drain: time.Minute, Every: 250 * time.Millisecond,
		Dir:     t.TempDir(),
		Partial: true, StallTimeout: time.Second, ParkAfter: time.Second,
	}
	var out bytes.Buffer
	res, err := run(ctx, &out, c)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Report.OK() {
		t.Errorf("verify: %v", res.Report)
	}
	// Two partitions of three at 2000/s for 5s: about 6,600 records.
	if res.DeliveredDuringOutage < 3000 || res.PeakParked == 0 {
		t.Errorf("%d records delivered during the stall, %d bytes parked at most", res.DeliveredDuringOutage, res.PeakParked)
	}
	for _, want := range []string{"--- partition 0 stalled", "--- partition healed", "backlog drained: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^ +[\d.]+s  STALL +\d+ +\d+ +\d+ +[\d.]+ +[\d.]+ +[\d.-]+ +1 +[\d.]+  up$`).Match(out.Bytes()) {
		t.Error("no status line shows the stalled partition")
	}
}
