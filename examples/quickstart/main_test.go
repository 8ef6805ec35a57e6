package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

func TestQuickstart(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Twice on the same topic: the second run must read back only its own
	// records, as it would against a real cluster that keeps the first's.
	for i := 1; i <= 2; i++ {
		var out bytes.Buffer
		if err := run(ctx, &out, b.Bootstrap()); err != nil {
			t.Fatalf("run %d: %v\noutput:\n%s", i, err, out.String())
		}
		t.Logf("run %d output:\n%s", i, out.String())
		for _, want := range []string{
			`(?m)^appended 1000 records to the WAL in `,
			`(?m)^flushed: Kafka acknowledged every record`,
			`(?m)^read back 1000 of 1000 records from topic "kafkawal-quickstart": lost 0, duplicates 0, out of order 0$`,
			`(?m)^stats: appended 1000, delivered 1000, backlog 0 records, cursor 1000/1000, .*broker reachable true$`,
			`(?m)^closed$`,
		} {
			if !regexp.MustCompile(want).MatchString(out.String()) {
				t.Errorf("run %d: output does not match %s", i, want)
			}
		}
		if n := strings.Count(out.String(), "\n"); n > 8 {
			t.Errorf("run %d printed %d lines; the quickstart should say a few", i, n)
		}
	}
}

// With -dir, a second run continues the first's WAL: its sequences go on
// from where the first stopped.
func TestQuickstartReusedDir(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	for i := 1; i <= 2; i++ {
		var out bytes.Buffer
		if err := runIn(ctx, &out, b.Bootstrap(), dir); err != nil {
			t.Fatalf("run %d: %v\noutput:\n%s", i, err, out.String())
		}
		want := regexp.MustCompile(`(?m)^stats: appended 1000, delivered 1000, backlog 0 records, cursor ` +
			map[int]string{1: "1000/1000", 2: "2000/2000"}[i])
		if !want.MatchString(out.String()) {
			t.Errorf("run %d in a reused dir: output does not match %s:\n%s", i, want, out.String())
		}
	}
}
