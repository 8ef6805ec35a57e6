package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// setCursor stores the durable cursor of the log in dir.
func setCursor(t *testing.T, dir string, cursor uint64) {
	t.Helper()
	l := openLog(t, dir)
	if err := l.SetCursor(cursor); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyAlreadyDelivered: verify tells damage at or below the cursor
// (its records are in Kafka; nothing is lost) from damage after it, and
// still exits 1 for either: the disk damaged bytes.
func TestVerifyAlreadyDelivered(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 1500, 0)
	segs := segments(t, dir)
	seg, later := segs[1], segs[2]
	cursor := seg.First + 10
	setCursor(t, dir, cursor)
	delivered := seg.First + 3
	offD := entryOffset(seg.First, delivered)
	flipByte(t, seg.Path, offD+2+8)

	r := cli("verify", dir)
	want := fmt.Sprintf("CORRUPT (already delivered: at or below the cursor %d, nothing lost): segment %s offset %d (seq %d)", cursor, seg.Path, offD, delivered)
	if r.code != 1 || !strings.Contains(r.stdout, want) ||
		!strings.Contains(r.stdout, "verify: CORRUPT: 1 damaged range, all in records already delivered: nothing lost, the next open quarantines it;") {
		t.Errorf("exit %d, want 1 and %q and the verdict:\n%s", r.code, want, r.stdout)
	}

	undelivered := later.First + 5
	offU := entryOffset(later.First, undelivered)
	flipByte(t, later.Path, offU+2+8)
	r = cli("verify", dir)
	want = fmt.Sprintf("\nCORRUPT: segment %s offset %d (seq %d)", later.Path, offU, undelivered)
	if r.code != 1 || !strings.Contains(r.stdout, want) ||
		!strings.Contains(r.stdout, "verify: CORRUPT: 2 damaged ranges (1 of them in records already delivered) in ") {
		t.Errorf("exit %d, want 1 and %q and the verdict:\n%s", r.code, want, r.stdout)
	}
}

// TestInspectTailCorruption: corruption in the last segment makes inspect
// exit 1 (its exit-status contract), and says whether the damaged records
// were delivered already.
func TestInspectTailCorruption(t *testing.T) {
	for _, c := range []struct {
		name      string
		cursor    uint64
		delivered bool
		table     string
		warning   string
	}{
		{"after_cursor", 50, false, "CORRUPT at 00000000000000000001 offset ", "corruption in the last segment at 00000000000000000001 offset "},
		{"at_or_below_cursor", 250, true, "CORRUPT (already delivered, nothing lost) at 00000000000000000001 offset ",
			"in records already delivered (at or below the cursor): nothing is lost, the next open quarantines it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLog(t, dir, 300, c.cursor)
			if n := len(segments(t, dir)); n != 1 {
				t.Fatalf("%d segments, want the tail alone", n)
			}
			seg := segments(t, dir)[0]
			flipByte(t, seg.Path, entryOffset(seg.First, 100)+2+8)

			r := cli("inspect", dir)
			if r.code != 1 || r.stderr != "" || !strings.Contains(r.stdout, c.table) || !strings.Contains(r.stdout, c.warning) {
				t.Errorf("exit %d (want 1), stderr %q, table:\n%s", r.code, r.stderr, r.stdout)
			}
			r = cli("inspect", dir, "--json")
			var m map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || r.code != 1 {
				t.Fatalf("--json: exit %d (want 1): %v", r.code, err)
			}
			d := jget(t, m, "tail.damage").([]any)[0].(map[string]any)
			if d["seq"] != float64(100) || d["delivered"] != c.delivered || d["torn_tail"] != false {
				t.Errorf("tail.damage[0] = %v, want seq 100, delivered %v", d, c.delivered)
			}
		})
	}
}
