package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

// readOnlyCommands are every command that promises to take no lock and
// change nothing.
func readOnlyCommands(dir string) [][]string {
	return [][]string{
		{"inspect", dir},
		{"inspect", dir, "--json"},
		{"verify", dir},
		{"dump", dir},
		{"dump", dir, "--from", "150", "--limit", "10"},
		{"dump", dir, "--dead"},
	}
}

// TestReadOnlyWhileProducerHoldsDir runs every read-only command while a
// wal.Log has the directory open (holding its lock): each must work, and
// the directory tree must hash the same before and after.
func TestReadOnlyWhileProducerHoldsDir(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 1000, 0)
	addDeadLetters(t, dir, 12)
	l := openLog(t, dir)
	defer l.Close()
	appendRecords(t, l, 1000, 1500)
	// A cursor inside the first segment: the log has no segment to delete,
	// so nothing but the commands could change the tree.
	if err := l.SetCursor(10); err != nil {
		t.Fatal(err)
	}

	before := treeHash(t, dir)
	for _, args := range readOnlyCommands(dir) {
		if r := cli(args...); r.code != 0 {
			t.Errorf("%v while the log is open: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	if after := treeHash(t, dir); after != before {
		t.Errorf("the read-only commands changed the directory")
	}

	m := inspectJSON(t, dir)
	if jget(t, m, "lock.held") != true || jnum(t, m, "lock.pid") != float64(os.Getpid()) {
		t.Errorf("lock = %v, want held by pid %d", jget(t, m, "lock"), os.Getpid())
	}
	if got := jnum(t, m, "segments.last_seq"); got != 1500 {
		t.Errorf("segments.last_seq = %v while open, want 1500", got)
	}
	// The commands left the lock alone: the producer still has it, and a
	// second Open is still refused.
	if _, _, err := openSecond(dir); err == nil {
		t.Errorf("a second wal.Open succeeded: the lock was lost")
	}
}

// TestReadOnlyOnCopy: a WAL copied elsewhere (LOCK file and all, with the
// old producer's pid in it) reads the same, and is not reported locked.
func TestReadOnlyOnCopy(t *testing.T) {
	fixed := time.Now()
	now = func() time.Time { return fixed } // ages must compare equal
	t.Cleanup(func() { now = time.Now })
	src := t.TempDir()
	writeLog(t, src, 1500, 300)
	addDeadLetters(t, src, 40)
	l := openLog(t, src) // the copy is taken while a producer runs
	defer l.Close()
	dst := filepath.Join(t.TempDir(), "copy")
	copyDir(t, src, dst)

	before := treeHash(t, dst)
	for _, args := range readOnlyCommands(dst) {
		if r := cli(args...); r.code != 0 {
			t.Errorf("%v on a copy: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	if after := treeHash(t, dst); after != before {
		t.Errorf("the read-only commands changed the copy")
	}

	a, b := inspectJSON(t, src), inspectJSON(t, dst)
	if b["lock"].(map[string]any)["held"] != false {
		t.Errorf("copy reported locked: %v", b["lock"])
	}
	for _, k := range []string{"segments", "cursor", "backlog", "dead_letters", "quarantine"} {
		ja, _ := json.Marshal(a[k])
		jb, _ := json.Marshal(b[k])
		if string(ja) != string(jb) {
			t.Errorf("%s differs between original and copy:\n%s\n%s", k, ja, jb)
		}
	}
	if ra, rb := cli("dump", src), cli("dump", dst); ra.stdout != rb.stdout {
		t.Errorf("dump of the copy differs from the original")
	}
}

// TestTreeHashSeesChanges keeps the read-only tests honest: the hash must
// notice each kind of change a command could make.
func TestTreeHashSeesChanges(t *testing.T) {
	changes := map[string]func(dir string) error{
		"create file": func(dir string) error { return os.WriteFile(filepath.Join(dir, "new"), nil, 0o600) },
		"create dir":  func(dir string) error { return os.Mkdir(filepath.Join(dir, "quarantine"), 0o700) },
		"rewrite same bytes": func(dir string) error {
			p := filepath.Join(dir, "cursor.0")
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(p, b, 0o600)
		},
		"chmod": func(dir string) error { return os.Chmod(filepath.Join(dir, "LOCK"), 0o644) },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeLog(t, dir, 10, 5)
			before := treeHash(t, dir)
			if err := change(dir); err != nil {
				t.Fatal(err)
			}
			if treeHash(t, dir) == before {
				t.Errorf("hash unchanged after %s", name)
			}
		})
	}
}

// TestReadOnlyWhileAppending runs the commands while records are being
// appended: a record in flight may show as a torn tail, never as
// corruption, and no command may fail.
func TestReadOnlyWhileAppending(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 200, 0)
	l := openLog(t, dir)
	defer l.Close()

	// Before each command the appender is handed a budget of batches that
	// it appends while the command runs; the next hand-over waits for the
	// previous budget to be spent. The log grows by a bounded amount and
	// every command overlaps appends.
	budgets := make(chan int)
	type outcome struct {
		n   int
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		i := 200
		for b := range budgets {
			for ; b > 0; b-- {
				batch := make([]wal.Record, 10)
				for j := range batch {
					batch[j] = testRecord(i + j)
				}
				if _, err := l.Append(context.Background(), batch); err != nil {
					done <- outcome{n: i, err: err}
					for range budgets {
					}
					return
				}
				i += len(batch)
			}
		}
		done <- outcome{n: i}
	}()
	for round := 0; round < 5; round++ {
		for _, args := range readOnlyCommands(dir) {
			budgets <- 10
			r := cli(args...)
			if r.code != 0 {
				t.Errorf("%v while appending: exit %d\nstdout %.500s\nstderr %s", args, r.code, r.stdout, r.stderr)
			}
		}
	}
	close(budgets)
	res := <-done
	if res.err != nil {
		t.Fatalf("Append: %v", res.err)
	}
	if want := 200 + 5*len(readOnlyCommands(dir))*100; res.n != want {
		t.Fatalf("appended up to %d, want %d", res.n, want)
	}
	// Once appends stop, everything is there and clean.
	if r := cli("verify", dir); r.code != 0 || !strings.Contains(r.stdout, "verify: ok: ") {
		t.Errorf("verify after appends: exit %d, %s", r.code, r.stdout)
	}
	if got := jnum(t, inspectJSON(t, dir), "segments.last_seq"); got != float64(res.n) {
		t.Errorf("segments.last_seq = %v, want %d", got, res.n)
	}
}
