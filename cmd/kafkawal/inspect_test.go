package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

// inspectJSON runs inspect --json on dir and returns the parsed object.
func inspectJSON(t *testing.T, dir string) map[string]any {
	t.Helper()
	r := cli("inspect", dir, "--json")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("inspect --json: exit %d, stderr %q", r.code, r.stderr)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("inspect --json output is not JSON: %v\n%s", err, r.stdout)
	}
	return m
}

// jget walks a dotted path of object keys; it fails the test on a missing
// key so that a renamed field is caught.
func jget(t *testing.T, m map[string]any, path string) any {
	t.Helper()
	var v any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: %q is not an object", path, k)
		}
		if v, ok = obj[k]; !ok {
			t.Fatalf("%s: no field %q in %v", path, k, obj)
		}
	}
	return v
}

func jnum(t *testing.T, m map[string]any, path string) float64 {
	t.Helper()
	f, ok := jget(t, m, path).(float64)
	if !ok {
		t.Fatalf("%s = %v, not a number", path, jget(t, m, path))
	}
	return f
}

func TestInspectJSON(t *testing.T) {
	fixed := time.Unix(1700090000, 0)
	now = func() time.Time { return fixed }
	t.Cleanup(func() { now = time.Now })

	dir := t.TempDir()
	const n, cursor = 1500, 700
	writeLog(t, dir, n, cursor)
	addDeadLetters(t, dir, 17, 42)
	if err := os.Mkdir(filepath.Join(dir, "quarantine"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "quarantine", "00000000000000000001.300.torn"), make([]byte, 123), 0o600); err != nil {
		t.Fatal(err)
	}
	segs := segments(t, dir)
	if len(segs) < 4 {
		t.Fatalf("want several segments for the test, got %d", len(segs))
	}

	m := inspectJSON(t, dir)

	// Segments: the counts come from the directory listing, the sequences
	// from what was appended.
	var total, backlogBytes int64
	for i, s := range segs {
		total += s.Bytes
		if i+1 == len(segs) || segs[i+1].First > cursor+1 {
			backlogBytes += s.Bytes
		}
	}
	want := map[string]float64{
		"segments.count":             float64(len(segs)),
		"segments.bytes":             float64(total),
		"segments.first_seq":         float64(segs[0].First),
		"segments.last_seq":          n,
		"segments.records":           float64(n + 1 - segs[0].First),
		"cursor.acked":               cursor,
		"cursor.damaged_slots":       0,
		"backlog.records":            n - cursor,
		"backlog.bytes":              float64(backlogBytes),
		"backlog.oldest.seq":         cursor + 1,
		"backlog.oldest.partition":   float64(testRecord(cursor).Partition),
		"backlog.oldest.age_seconds": fixed.Sub(testRecord(cursor).Timestamp).Seconds(),
		"dead_letters.count":         2,
		"dead_letters.newest.seq":    42,
		"quarantine.count":           1,
		"quarantine.bytes":           123,
		"lock.pid":                   0,
	}
	for path, w := range want {
		if got := jnum(t, m, path); got != w {
			t.Errorf("%s = %v, want %v", path, got, w)
		}
	}
	if got := jget(t, m, "cursor.found"); got != true {
		t.Errorf("cursor.found = %v", got)
	}
	if got := jget(t, m, "lock.held"); got != false {
		t.Errorf("lock.held = %v after Close", got)
	}
	if got := jget(t, m, "tail.clean"); got != true {
		t.Errorf("tail.clean = %v, damage %v", got, jget(t, m, "tail.damage"))
	}
	ts, _ := time.Parse(time.RFC3339Nano, jget(t, m, "backlog.oldest.timestamp").(string))
	if !ts.Equal(testRecord(cursor).Timestamp) {
		t.Errorf("backlog.oldest.timestamp = %v, want %v", ts, testRecord(cursor).Timestamp)
	}
	if got := jget(t, m, "dead_letters.newest.error"); got != "Broker: Message size too large (seq 42)" {
		t.Errorf("dead_letters.newest.error = %v", got)
	}
	files := jget(t, m, "quarantine.files").([]any)
	if len(files) != 1 || files[0].(map[string]any)["name"] != "00000000000000000001.300.torn" {
		t.Errorf("quarantine.files = %v", files)
	}
	// A backlog nobody delivers and dead letters deserve a word each.
	w := jget(t, m, "warnings").([]any)
	if len(w) != 2 || !strings.HasPrefix(w[0].(string), "800 records wait for delivery and no producer has the directory open") ||
		!strings.HasPrefix(w[1].(string), "2 records refused by Kafka for good and dead-lettered") {
		t.Errorf("warnings = %q, want the waiting backlog and the dead letters", w)
	}
}

// TestInspectHealthy: everything delivered, no dead letter: no warning.
// With a backlog, a producer holding the directory is not warned about.
func TestInspectHealthy(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 300, 300)
	r := cli("inspect", dir)
	if r.code != 0 || strings.Contains(r.stdout, "WARNING") {
		t.Errorf("exit %d, warning on a healthy directory:\n%s", r.code, r.stdout)
	}
	writeLog(t, dir, 0, 0) // reopen: nothing appended
	l := openLog(t, dir)
	defer l.Close()
	appendRecords(t, l, 300, 310)
	if w := jget(t, inspectJSON(t, dir), "warnings").([]any); len(w) != 0 {
		t.Errorf("warnings while a producer holds a backlog: %v", w)
	}
}

// A partition chosen by the partitioner is shown as "any", in the table
// and in JSON; a fixed one as its number.
func TestInspectPartitionAny(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 10, 0) // seq 1 is testRecord(0): PartitionAny
	if p := jget(t, inspectJSON(t, dir), "backlog.oldest.partition"); p != "any" {
		t.Errorf("backlog.oldest.partition = %v, want \"any\"", p)
	}
	if r := cli("inspect", dir); !strings.Contains(r.stdout, "(topic orders, partition any)") {
		t.Errorf("table:\n%s", r.stdout)
	}
	writeLog(t, dir, 0, 1) // seq 2 is testRecord(1): partition 0
	if p := jget(t, inspectJSON(t, dir), "backlog.oldest.partition"); p != float64(0) {
		t.Errorf("backlog.oldest.partition = %v, want 0", p)
	}
}

// "cursor none" said nothing an operator could use.
func TestInspectCursorWording(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 10, 0)
	// Open stores the cursor (at 0) with its synced watermark.
	if r := cli("inspect", dir); !strings.Contains(r.stdout, "cursor          nothing delivered yet (generation ") {
		t.Errorf("fresh directory:\n%s", r.stdout)
	}
	for _, name := range wal.CursorFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if r := cli("inspect", dir); !strings.Contains(r.stdout, "cursor          no valid slot, 2 damaged slots: everything on disk will be sent again\n") {
		t.Errorf("both slots damaged:\n%s", r.stdout)
	}
}

func TestInspectTable(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 300, 100)
	addDeadLetters(t, dir, 5)
	r := cli("inspect", dir)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{
		"lock            free",
		"cursor          100 (generation ",
		"backlog         200 records",
		"oldest backlog  seq 101, 2023-11-14T22:15:00Z",
		"dead letters    1 ",
		"Broker: Message size too large (seq 5)",
		"quarantine      none",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, want := range []string{
		"WARNING         200 records wait for delivery and no producer has the directory open: start the service on this directory, or deliver them with 'kafkawal ship " + dir + "'\n",
		"                1 record refused by Kafka for good and dead-lettered (never sent again): see 'kafkawal dump --dead " + dir + "'\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestInspectEmptyLog(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 0, 0)
	m := inspectJSON(t, dir)
	for path, w := range map[string]float64{"backlog.records": 0, "segments.records": 0, "segments.last_seq": 0, "dead_letters.count": 0} {
		if got := jnum(t, m, path); got != w {
			t.Errorf("%s = %v, want %v", path, got, w)
		}
	}
	if got := jget(t, m, "backlog.oldest"); got != nil {
		t.Errorf("backlog.oldest = %v on an empty log", got)
	}
	if got := jnum(t, m, "cursor.acked"); got != 0 {
		t.Errorf("cursor.acked = %v on a fresh log", got)
	}
}

// TestInspectSkipsHoles: the oldest unacknowledged record is the first one
// after the cursor that was not lost.
func TestInspectSkipsHoles(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 100, 10)
	punchHole(t, dir, 11)
	m := inspectJSON(t, dir)
	if got := jnum(t, m, "backlog.oldest.seq"); got != 12 {
		t.Errorf("backlog.oldest.seq = %v, want 12 (11 is a hole)", got)
	}
	if got := jnum(t, m, "backlog.records"); got != 90 {
		t.Errorf("backlog.records = %v, want 90", got)
	}
}

func TestInspectDamage(t *testing.T) {
	t.Run("damaged_cursor_slot", func(t *testing.T) {
		dir := t.TempDir()
		writeLog(t, dir, 50, 20)
		l := openLog(t, dir)
		if err := l.SetCursor(30); err != nil { // writes the other slot
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		// Tear the newest slot: the previous value must show, flagged.
		st, _, err := wal.LoadCursor(dir)
		if err != nil || st.Acked != 30 {
			t.Fatalf("LoadCursor = %+v, %v", st, err)
		}
		for _, name := range wal.CursorFiles {
			b, _ := os.ReadFile(filepath.Join(dir, name))
			if len(b) > 20 && b[20] == 30 {
				b[7] ^= 1
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		m := inspectJSON(t, dir)
		if got := jnum(t, m, "cursor.damaged_slots"); got != 1 {
			t.Errorf("cursor.damaged_slots = %v, want 1", got)
		}
		if got := jnum(t, m, "cursor.acked"); got != 20 {
			t.Errorf("cursor.acked = %v, want the previous value 20", got)
		}
		if w := jget(t, m, "warnings").([]any); len(w) != 2 || !strings.Contains(w[0].(string), "damaged cursor slot") {
			t.Errorf("warnings = %v, want one about the cursor, then the waiting backlog", w)
		}
	})
	t.Run("torn_tail", func(t *testing.T) {
		dir := t.TempDir()
		writeLog(t, dir, 50, 0)
		segs := segments(t, dir)
		tail := segs[len(segs)-1]
		appendBytes(t, tail.Path, []byte{0x90, 0x01, 1, 2, 3}) // a 144-byte entry cut after 3 bytes
		m := inspectJSON(t, dir)
		if got := jget(t, m, "tail.clean"); got != false {
			t.Fatalf("tail.clean = %v with a torn tail", got)
		}
		d := jget(t, m, "tail.damage").([]any)[0].(map[string]any)
		if d["offset"] != float64(tail.Bytes) || d["torn_tail"] != true {
			t.Errorf("tail.damage[0] = %v, want torn tail at offset %d", d, tail.Bytes)
		}
		if got := jnum(t, m, "segments.last_seq"); got != 50 {
			t.Errorf("segments.last_seq = %v, want 50 (the torn record is not one)", got)
		}
		r := cli("inspect", dir)
		if !strings.Contains(r.stdout, "torn tail") || !strings.Contains(r.stdout, "WARNING") {
			t.Errorf("table does not warn of the torn tail:\n%s", r.stdout)
		}
	})
}

// TestInspectDegrades: an unreadable segment in the backlog or an
// unreadable dead-letter log is reported, and the rest is still shown.
func TestInspectDegrades(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 1500, 5)
	segs := segments(t, dir)
	first := segs[0].Path // holds seq 6, the oldest unacknowledged
	if err := os.Remove(first); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(first), first); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, wal.DeadLetterFile), 0o700); err != nil {
		t.Fatal(err)
	}
	m := inspectJSON(t, dir)
	if e, _ := jget(t, m, "backlog.oldest.error").(string); !strings.Contains(e, "too many levels of symbolic links") {
		t.Errorf("backlog.oldest.error = %q", e)
	}
	if e, _ := jget(t, m, "dead_letters.error").(string); !strings.Contains(e, "not a regular file") {
		t.Errorf("dead_letters.error = %q", e)
	}
	if got := jnum(t, m, "segments.last_seq"); got != 1500 {
		t.Errorf("segments.last_seq = %v, want 1500", got)
	}
	if w := jget(t, m, "warnings").([]any); len(w) != 3 {
		t.Errorf("warnings = %v, want 3 (the oldest record, the waiting backlog, the dead letters)", w)
	}
}

// TestInspectFieldsDocumented: every field inspect --json prints is named
// in 'kafkawal help inspect', where scripts' authors look.
func TestInspectFieldsDocumented(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 300, 100)
	addDeadLetters(t, dir, 5)
	addPark(t, dir, 10, 0)
	if err := os.Mkdir(filepath.Join(dir, "quarantine"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "quarantine", "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	segs := segments(t, dir)
	appendBytes(t, segs[len(segs)-1].Path, []byte{0x90})
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, sub := range v {
				if !strings.Contains(inspectHelp, k) {
					t.Errorf("field %s%s is not documented in inspectHelp", prefix, k)
				}
				walk(prefix+k+".", sub)
			}
		case []any:
			for _, sub := range v {
				walk(prefix, sub)
			}
		}
	}
	walk("", inspectJSON(t, dir))
}

// A directory delivered exactly once shows its TransactionalID and
// whether it committed (then the cursor may be behind what Kafka holds);
// an unreadable identity is a warning; other directories show nothing.
func TestInspectExactlyOnce(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 10, 0)
	if e := jget(t, inspectJSON(t, dir), "exactly_once"); e != nil {
		t.Fatalf("exactly_once = %v for an at-least-once directory, want null", e)
	}
	id, err := wal.NewTxnIdentity("orders-7")
	if err != nil {
		t.Fatal(err)
	}
	id.Committed = true
	if err := wal.StoreTxnIdentity(dir, id, 0o600); err != nil {
		t.Fatal(err)
	}
	rep := inspectJSON(t, dir)
	if jget(t, rep, "exactly_once.transactional_id") != "orders-7" || jget(t, rep, "exactly_once.committed") != true ||
		jget(t, rep, "exactly_once.wal_id") != fmt.Sprintf("%x", id.WALID) {
		t.Fatalf("exactly_once = %v", jget(t, rep, "exactly_once"))
	}
	if r := cli("inspect", dir); !strings.Contains(r.stdout, `exactly once    TransactionalID "orders-7"`) || !strings.Contains(r.stdout, "checkpoint") {
		t.Fatalf("table:\n%s", r.stdout)
	}
	if err := os.WriteFile(filepath.Join(dir, wal.TxnIdentityFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep = inspectJSON(t, dir)
	if e, _ := jget(t, rep, "exactly_once.error").(string); e == "" {
		t.Fatalf("exactly_once = %v for a damaged identity file, want an error", jget(t, rep, "exactly_once"))
	}
	if w := jget(t, rep, "warnings").([]any); len(w) == 0 || !strings.Contains(fmt.Sprint(w[0]), wal.TxnIdentityFile+" cannot be read") {
		t.Fatalf("warnings = %v, want the damaged identity file first", w)
	}
}
