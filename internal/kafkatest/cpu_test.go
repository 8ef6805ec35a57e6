package kafkatest

import (
	"os"
	"strings"
	"testing"
)

func TestStatCPUTicks(t *testing.T) {
	// A command with a space and a ')' of its own: the fields are counted
	// after the last ')'.
	line := "4242 (java) (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 40 0 100 0 0\n"
	if got, err := statCPUTicks(line); err != nil || got != 1234+567 {
		t.Fatalf("statCPUTicks = %d, %v; want %d", got, err, 1234+567)
	}
	for _, bad := range []string{"", "4242 java S 1", "4242 (java) S 1 2 3", "4242 (java) S 1 4242 4242 0 -1 4194560 100 0 0 0 x 567 0"} {
		if got, err := statCPUTicks(bad); err == nil {
			t.Errorf("statCPUTicks(%q) = %d, nil; want an error", bad, got)
		}
	}
	// A live line, this process's, parses too.
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := statCPUTicks(strings.TrimSpace(string(b))); err != nil {
		t.Fatalf("statCPUTicks(/proc/self/stat): %v", err)
	}
}

func TestEmbeddedCPUIsZero(t *testing.T) {
	b := startEmbeddedT(t, Options{})
	if got, err := b.CPU(); err != nil || got != 0 {
		t.Fatalf("embedded CPU() = %v, %v; want 0, nil (it runs in this process)", got, err)
	}
}
