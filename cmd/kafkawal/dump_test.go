package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

// dumpLine is what a dump line may hold. Raw keeps every field as sent,
// to tell an absent field from a null one.
type dumpLine struct {
	Seq       uint64          `json:"seq"`
	Hole      bool            `json:"hole"`
	Corrupt   bool            `json:"corrupt"`
	Time      *time.Time      `json:"time"`
	Error     *string         `json:"error"`
	Topic     string          `json:"topic"`
	Partition json.RawMessage `json:"partition"`
	Headers   []map[string]json.RawMessage
	Timestamp *time.Time                 `json:"timestamp"`
	Raw       map[string]json.RawMessage `json:"-"`
}

func parseDump(t *testing.T, out string) []dumpLine {
	t.Helper()
	var lines []dumpLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l dumpLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", len(lines)+1, err, sc.Text())
		}
		if err := json.Unmarshal(sc.Bytes(), &l.Raw); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	return lines
}

// decodeBytes turns field (text) or field_b64 of obj back into bytes,
// checking that exactly one form is present and that null means nil.
func decodeBytes(t *testing.T, what string, obj map[string]json.RawMessage, field string) []byte {
	t.Helper()
	text, isText := obj[field]
	b64, isB64 := obj[field+"_b64"]
	switch {
	case isText && isB64:
		t.Fatalf("%s: both %s and %s_b64", what, field, field)
	case isB64:
		var s string
		if err := json.Unmarshal(b64, &s); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("%s: bad base64: %v", what, err)
		}
		return b
	case !isText:
		t.Fatalf("%s: neither %s nor %s_b64", what, field, field)
	case string(text) == "null":
		return nil
	}
	var s string
	if err := json.Unmarshal(text, &s); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return []byte(s)
}

func sameBytes(a, b []byte) bool { return bytes.Equal(a, b) && (a == nil) == (b == nil) }

// checkRecord compares a dump line with the record it must show.
func checkRecord(t *testing.T, l dumpLine, want wal.Record) {
	t.Helper()
	wantPart := fmt.Sprint(want.Partition)
	if want.Partition == wal.PartitionAny {
		wantPart = `"any"`
	}
	if l.Topic != want.Topic || string(l.Partition) != wantPart {
		t.Errorf("seq %d: topic/partition %s/%s, want %s/%s", l.Seq, l.Topic, l.Partition, want.Topic, wantPart)
	}
	if got := decodeBytes(t, fmt.Sprintf("seq %d key", l.Seq), l.Raw, "key"); !sameBytes(got, want.Key) {
		t.Errorf("seq %d: key %q, want %q", l.Seq, got, want.Key)
	}
	if got := decodeBytes(t, fmt.Sprintf("seq %d value", l.Seq), l.Raw, "value"); !sameBytes(got, want.Value) {
		t.Errorf("seq %d: value %q, want %q", l.Seq, got, want.Value)
	}
	if len(l.Headers) != len(want.Headers) {
		t.Fatalf("seq %d: %d headers, want %d", l.Seq, len(l.Headers), len(want.Headers))
	}
	for i, h := range l.Headers {
		v := decodeBytes(t, fmt.Sprintf("seq %d header %d", l.Seq, i), h, "value")
		if k := string(h["key"]); k != fmt.Sprintf("%q", want.Headers[i].Key) || !sameBytes(v, want.Headers[i].Value) {
			t.Errorf("seq %d: header %d = %s:%q, want %s:%q", l.Seq, i, k, v, want.Headers[i].Key, want.Headers[i].Value)
		}
	}
	if l.Timestamp == nil || !l.Timestamp.Equal(want.Timestamp) {
		t.Errorf("seq %d: timestamp %v, want %v", l.Seq, l.Timestamp, want.Timestamp)
	}
}

func TestDumpAll(t *testing.T) {
	dir := t.TempDir()
	const n = 1500
	writeLog(t, dir, n, 0)
	if len(segments(t, dir)) < 3 {
		t.Fatal("want several segments")
	}
	r := cli("dump", dir)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	lines := parseDump(t, r.stdout)
	if len(lines) != n {
		t.Fatalf("%d lines, want %d", len(lines), n)
	}
	shapes := map[string]bool{}
	for i, l := range lines {
		if l.Seq != uint64(i+1) {
			t.Fatalf("line %d has seq %d", i, l.Seq)
		}
		checkRecord(t, l, testRecord(i))
		_, keyB64 := l.Raw["key_b64"]
		_, valueB64 := l.Raw["value_b64"]
		shapes[fmt.Sprintf("key_b64=%v key_null=%v value_b64=%v value_null=%v", keyB64, string(l.Raw["key"]) == "null",
			valueB64, string(l.Raw["value"]) == "null")] = true
	}
	// The test records must really exercise each rendering.
	if len(shapes) < 5 {
		t.Errorf("only %d shapes of key/value rendering seen: %v", len(shapes), shapes)
	}
	if !strings.Contains(r.stdout, `"value":"{\"n\":0,\"s\":\"héllo <>\"}"`) {
		t.Errorf("text values are not printed verbatim (escaped HTML or non-ASCII?): %.200s", r.stdout)
	}
}

func TestDumpFromLimit(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 1500, 0)
	for _, args := range [][]string{
		{"dump", dir, "--from", "1000", "--limit", "5"},
		{"dump", "--from=1000", "-limit", "5", dir},
	} {
		r := cli(args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
		lines := parseDump(t, r.stdout)
		if len(lines) != 5 || lines[0].Seq != 1000 || lines[4].Seq != 1004 {
			t.Errorf("%v: got %d lines from seq %v", args, len(lines), lines)
		}
	}
	// The next record to come: nothing, successfully, and a note.
	if r := cli("dump", dir, "--from", "1501"); r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "nothing at or after seq 1501 yet (the last record is seq 1500)") {
		t.Errorf("--from the last + 1: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// Past it: an error naming the last record.
	if r := cli("dump", dir, "--from", "5000"); r.code != 2 || r.stdout != "" || r.stderr != "kafkawal dump: --from 5000 is past the last record (seq 1500)\n" {
		t.Errorf("--from past the end: exit %d, stdout %q, stderr %q; want exit 2 naming the last record", r.code, r.stdout, r.stderr)
	}
	empty := t.TempDir()
	writeLog(t, empty, 0, 0)
	if r := cli("dump", empty, "--from", "3"); r.code != 2 || !strings.Contains(r.stderr, "--from 3: the log holds no records") {
		t.Errorf("--from on an empty log: exit %d, stderr %q", r.code, r.stderr)
	}
}

// Below the first record on disk, dump says those records were delivered
// and deleted, and starts at the first.
func TestDumpFromBelowFirst(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 1500, 0)
	segs := segments(t, dir)
	if err := os.Remove(segs[0].Path); err != nil { // as truncation does
		t.Fatal(err)
	}
	r := cli("dump", dir, "--from", "2", "--limit", "1")
	lines := parseDump(t, r.stdout)
	if r.code != 0 || len(lines) != 1 || lines[0].Seq != segs[1].First ||
		!strings.Contains(r.stderr, fmt.Sprintf("records before seq %d were delivered and deleted", segs[1].First)) {
		t.Errorf("exit %d, lines %v, stderr %q", r.code, lines, r.stderr)
	}
}

func TestDumpHole(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 40, 0)
	punchHole(t, dir, 20)
	r := cli("dump", dir, "--from", "19", "--limit", "3")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "\n{\"seq\":20,\"hole\":true}\n") {
		t.Errorf("no hole line for seq 20:\n%s", r.stdout)
	}
	lines := parseDump(t, r.stdout)
	checkRecord(t, lines[0], testRecord(18))
	checkRecord(t, lines[2], testRecord(20))
}

// TestDumpCorrupt: a record failing its checksum is shown as corrupt and
// the dump goes on; exit 1.
func TestDumpCorrupt(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 1500, 0)
	seg := segments(t, dir)[1]
	seq := seg.First + 3
	flipByte(t, seg.Path, entryOffset(seg.First, seq)+2+8)
	r := cli("dump", dir)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	lines := parseDump(t, r.stdout)
	if len(lines) != 1500 {
		t.Fatalf("%d lines, want 1500", len(lines))
	}
	for i, l := range lines {
		if want := uint64(seq); l.Seq == want != l.Corrupt {
			t.Errorf("line %d: seq %d corrupt=%v", i, l.Seq, l.Corrupt)
		}
	}
}

// TestDumpBrokenFraming: a length prefix pointing past the end of a sealed
// segment breaks its framing; dump names the file and offset on stderr,
// goes on with the next segment, and exits 1.
func TestDumpBrokenFraming(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 1500, 0)
	segs := segments(t, dir)
	seg := segs[1]
	off := entryOffset(seg.First, seg.First+5)
	flipByte(t, seg.Path, off+1) // the second prefix byte: a much larger length
	r := cli("dump", dir)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	want := fmt.Sprintf("segment %s offset %d (seq %d)", seg.Path, off, seg.First+5)
	if !strings.Contains(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr lacks %q or is not one line:\n%s", want, r.stderr)
	}
	lines := parseDump(t, r.stdout)
	if got, want := len(lines), 1500-int(segs[2].First-seg.First-5); got != want {
		t.Errorf("%d lines, want %d", got, want)
	}
	if last := lines[len(lines)-1]; last.Seq != 1500 {
		t.Errorf("last line seq %d, want 1500", last.Seq)
	}
}

func TestDumpDead(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 100, 0)
	addDeadLetters(t, dir, 3, 9, 40)
	r := cli("dump", dir, "--dead", "--from", "9")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := parseDump(t, r.stdout)
	if len(lines) != 2 || lines[0].Seq != 9 || lines[1].Seq != 40 {
		t.Fatalf("got %+v", lines)
	}
	for _, l := range lines {
		checkRecord(t, l, testRecord(int(l.Seq)-1))
		if l.Error == nil || *l.Error != fmt.Sprintf("Broker: Message size too large (seq %d)", l.Seq) {
			t.Errorf("seq %d: error %v", l.Seq, l.Error)
		}
		if l.Time == nil || !l.Time.Equal(time.Unix(1700001000+int64(l.Seq), 0)) {
			t.Errorf("seq %d: time %v", l.Seq, l.Time)
		}
		if string(l.Raw["code"]) != "10" {
			t.Errorf("seq %d: code %s, want 10", l.Seq, l.Raw["code"])
		}
	}
	if r := cli("dump", dir, "--dead", "--limit", "1"); len(parseDump(t, r.stdout)) != 1 {
		t.Errorf("--dead --limit 1 printed %q", r.stdout)
	}
}

// A dead letter that was refused in a known partition shows that
// partition, not the "any" it was appended with.
func TestDumpDeadPartition(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 10, 0)
	d, _, err := wal.OpenDeadLetters(dir, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	r := testRecord(0) // PartitionAny
	if err := d.Add(wal.DeadLetter{Seq: 1, Time: time.Unix(1700001000, 0), Err: "x", Code: 10, SentToPartition: 4, Record: r}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	out := cli("dump", dir, "--dead")
	if lines := parseDump(t, out.stdout); len(lines) != 1 || string(lines[0].Partition) != "4" {
		t.Fatalf("dump --dead: %s", out.stdout)
	}
	if p := jnum(t, inspectJSON(t, dir), "dead_letters.newest.partition"); p != 4 {
		t.Fatalf("inspect: dead_letters.newest.partition = %v, want 4", p)
	}
}
