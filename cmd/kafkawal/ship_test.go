package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/recovery"
	"github.com/kafkawal/kafkawal/wal"
)

// TestShipDeliversBacklog ships a backlog (16 MiB here; the report's runs
// set KAFKAWAL_SHIP_BACKLOG_MIB=1024) and reads the topic back with kgo:
// every record once, in order per partition. A second run finds nothing
// to do and sends nothing; --remove then deletes the directory.
func TestShipDeliversBacklog(t *testing.T) {
	b := startShipBroker(t, false)
	dir := filepath.Join(t.TempDir(), "wal")
	size := shipBacklogBytes(t, 16)
	n := writeShipBacklog(t, dir, size)

	start := time.Now()
	r := cli("ship", dir, "-X", "bootstrap.servers="+b.Bootstrap())
	elapsed := time.Since(start)
	if r.code != exitOK {
		t.Fatalf("ship: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	t.Logf("ship of %d records (%d MiB) on the %s broker: %v\n%s", n, size>>20, b.Kind(), elapsed, r.stdout)
	if want := fmt.Sprintf("ship: delivered %d records in ", n); !strings.HasPrefix(r.stdout, want) || !strings.Contains(r.stdout, "is empty") {
		t.Errorf("stdout = %q, want it to start with %q", r.stdout, want)
	}
	// Not a terminal: plain lines, the last at 100%.
	if strings.Contains(r.stderr, "\r") || !strings.Contains(r.stderr, fmt.Sprintf("ship: delivered %d of %d records (100%%)", n, n)) {
		t.Errorf("progress on a non-terminal = %q", r.stderr)
	}
	if c := persistedCursor(t, dir); c != uint64(n) {
		t.Errorf("persisted cursor %d, want %d", c, n)
	}
	rb := readShipTopic(t, b.Bootstrap(), n)
	if rb.lostCount != 0 || rb.disorder != 0 || rb.foreign != 0 || rb.duplicates != 0 {
		t.Fatalf("read back: %v", rb)
	}

	r = cli("ship", dir, "-X", "bootstrap.servers="+b.Bootstrap(), "--remove")
	if r.code != exitOK || !strings.Contains(r.stderr, ": 0 records to deliver") || !strings.Contains(r.stdout, "ship: removed "+dir) {
		t.Fatalf("second ship --remove: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	if got := topicRecords(t, b.Bootstrap()); got != int64(n) {
		t.Errorf("topic holds %d records after the second ship, want %d (it sent again)", got, n)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory still there after --remove: %v", err)
	}
	if des, _ := os.ReadDir(filepath.Dir(dir)); len(des) != 0 {
		t.Errorf("--remove left %v beside the directory", des)
	}
}

// TestShipKilledHalfWay SIGKILLs a ship process once half the backlog is
// acknowledged, then ships again: nothing is lost, order holds per
// partition, and the second run sends only what was left (and the
// duplicates at-least-once allows).
func TestShipKilledHalfWay(t *testing.T) {
	exe := buildKafkawal(t)
	b := startShipBroker(t, true)
	dir := t.TempDir()
	n := writeShipBacklog(t, dir, shipBacklogBytes(t, 32))
	// 32 KiB per 2 ms each way: the delivery takes seconds, so that "half
	// way" is a moment the test can catch.
	b.Proxy().Delay(2 * time.Millisecond)

	var stderr bytes.Buffer
	cmd := exec.Command(exe, "ship", dir, "-X", "bootstrap.servers="+b.Bootstrap())
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(3 * time.Minute)
	for persistedCursor(t, dir) < uint64(n/2) {
		select {
		case err := <-exited:
			t.Fatalf("ship exited before half way (%v)\n%s", err, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("ship did not reach half way (cursor %d of %d)\n%s", persistedCursor(t, dir), n, stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-exited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("ship was not killed (%v): the test did not cut it half way\n%s", err, stderr.String())
	}
	killedAt := persistedCursor(t, dir)
	if killedAt >= uint64(n) {
		t.Fatalf("cursor %d of %d at the kill: the test did not cut it half way", killedAt, n)
	}

	b.Proxy().Heal()
	r := cli("ship", dir, "-X", "bootstrap.servers="+b.Bootstrap())
	if r.code != exitOK {
		t.Fatalf("ship after the kill: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	if want := fmt.Sprintf("%d records to deliver (seq %d..%d", uint64(n)-killedAt, killedAt+1, n); !strings.Contains(r.stderr, want) {
		t.Errorf("second run: stderr lacks %q:\n%s", want, r.stderr)
	}
	rb := readShipTopic(t, b.Bootstrap(), n)
	t.Logf("killed at cursor %d of %d; read back: %v", killedAt, n, rb)
	if rb.lostCount != 0 || rb.disorder != 0 || rb.foreign != 0 {
		t.Fatalf("read back: %v", rb)
	}
}

// TestShipDamaged ships directories a crash or a disk damaged.
func TestShipDamaged(t *testing.T) {
	b := startShipBroker(t, false)
	bootstrap := "bootstrap.servers=" + b.Bootstrap()
	const size = 2 << 20

	t.Run("torn tail repaired", func(t *testing.T) {
		dir := t.TempDir()
		n := writeShipBacklog(t, dir, size)
		segs := segments(t, dir)
		appendBytes(t, segs[len(segs)-1].Path, []byte{0x90, 0x01, 1, 2, 3}) // a record cut short
		r := cli("ship", dir, "-X", bootstrap)
		if r.code != exitOK || !strings.Contains(r.stderr, "ship: repaired a torn tail left by a crash (5 B kept in quarantine/)") {
			t.Fatalf("exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
		}
		if q, _ := filepath.Glob(filepath.Join(dir, recovery.QuarantineDir, "*.torn")); len(q) != 1 {
			t.Errorf("quarantine holds %v, want the torn tail", q)
		}
		rb := readShipTopic(t, b.Bootstrap(), n)
		if rb.lostCount != 0 || rb.disorder != 0 || rb.records != n {
			t.Fatalf("read back: %v", rb)
		}
	})

	// A flipped byte inside a record of a sealed segment.
	damage := func(t *testing.T, dir string) (seg string, off int64, seq uint64) {
		segs := segments(t, dir)
		s := segs[1]
		seq = s.First + 7
		for id := s.First; id < seq; id++ {
			e := encodedShip(id)
			off += int64(len(binary.AppendUvarint(nil, uint64(len(e))))) + int64(len(e))
		}
		flipByte(t, s.Path, off+2+20) // inside the topic: the checksum fails
		return s.Path, off, seq
	}

	t.Run("mid-log damage fails by default", func(t *testing.T) {
		dir := t.TempDir()
		writeShipBacklog(t, dir, size)
		seg, off, seq := damage(t, dir)
		before := treeHash(t, filepath.Join(dir, "segments"))
		inTopic := topicRecords(t, b.Bootstrap())
		r := cli("ship", dir, "-X", bootstrap)
		if r.code != exitProblem || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("exit %d, want 1 and one line\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{seg, fmt.Sprintf("offset %d", off), fmt.Sprintf("seq %d", seq), "nothing was sent", "--corruption quarantine"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q: %s", want, r.stderr)
			}
		}
		if got := topicRecords(t, b.Bootstrap()); got != inTopic {
			t.Errorf("the topic holds %d records, %d before: something was sent past the damage", got, inTopic)
		}
		if after := treeHash(t, filepath.Join(dir, "segments")); after != before {
			t.Errorf("the segments changed")
		}
	})

	t.Run("mid-log damage quarantined on request", func(t *testing.T) {
		b := startShipBroker(t, false) // an empty topic
		dir := t.TempDir()
		n := writeShipBacklog(t, dir, size)
		_, _, seq := damage(t, dir)
		r := cli("ship", dir, "-X", "bootstrap.servers="+b.Bootstrap(), "--corruption", "quarantine", "--remove")
		if r.code != exitProblem || !strings.Contains(r.stderr, "mid-log corruption: 1 records lost") ||
			!strings.Contains(r.stdout, fmt.Sprintf("delivered %d records", n-1)) || !strings.Contains(r.stdout, "kept: quarantine/") {
			t.Fatalf("exit %d, want 1 (delivered, directory kept)\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
		}
		rb := readShipTopic(t, b.Bootstrap(), n)
		if rb.lostCount != 1 || rb.lost[0] != seq || rb.disorder != 0 || rb.records != n-1 {
			t.Fatalf("read back: %v; want only id %d missing", rb, seq)
		}
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("the directory is gone: %v", err)
		}
	})
}

func encodedShip(id uint64) []byte {
	r := shipRecord(id)
	return wal.Encode(&r)
}

// TestShipRefusals: a directory in use, dead letters with --remove, an
// unreachable Kafka with --timeout, and bad usage.
func TestShipRefusals(t *testing.T) {
	t.Run("directory in use", func(t *testing.T) {
		dir := t.TempDir()
		writeShipBacklog(t, dir, 1<<20)
		p, err := kafkawal.Open(kafkawal.Config{Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(shortCtx(t))
		r := cli("ship", dir, "-X", "bootstrap.servers=127.0.0.1:1")
		want := fmt.Sprintf("held by pid %d", os.Getpid())
		if r.code != exitProblem || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "locked") || !strings.Contains(r.stderr, want) {
			t.Fatalf("exit %d, want 1 and one line naming pid %d\nstdout %s\nstderr %s", r.code, os.Getpid(), r.stdout, r.stderr)
		}
	})

	t.Run("dead letters keep the directory", func(t *testing.T) {
		b := startShipBroker(t, false)
		dir := t.TempDir()
		writeShipBacklog(t, dir, 1<<20)
		addDeadLetters(t, dir, 3)
		r := cli("ship", dir, "-X", "bootstrap.servers="+b.Bootstrap(), "--remove")
		if r.code != exitProblem || !strings.Contains(r.stdout, "kept: its dead-letter log holds 1 record Kafka refused") {
			t.Fatalf("exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "deadletter.log")); err != nil {
			t.Errorf("dead-letter log: %v", err)
		}
	})

	t.Run("Kafka unreachable until the timeout", func(t *testing.T) {
		dir := t.TempDir()
		n := writeShipBacklog(t, dir, 1<<20)
		r := cli("ship", dir, "-X", "bootstrap.servers=127.0.0.1:1", "--timeout", "3s")
		want := fmt.Sprintf("ship: NOT COMPLETE: delivered 0 of %d records", n)
		if r.code != exitProblem || !strings.HasPrefix(r.stdout, want) || !strings.Contains(r.stdout, "--timeout 3s reached; Kafka was unreachable") {
			t.Fatalf("exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
		}
		if c := persistedCursor(t, dir); c != 0 {
			t.Errorf("cursor moved to %d", c)
		}
	})

	good := t.TempDir()
	writeLog(t, good, 20, 0)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no bootstrap", []string{"ship", good}, "-X bootstrap.servers=HOST:PORT is required"},
		{"bad -X", []string{"ship", good, "-X", "novalue"}, "want key=value"},
		{"bad --corruption", []string{"ship", good, "-X", "bootstrap.servers=x:1", "--corruption", "ignore"}, `--corruption "ignore": want fail or quarantine`},
		{"not a WAL", []string{"ship", t.TempDir(), "-X", "bootstrap.servers=x:1"}, "not a kafkawal directory"},
		{"library refuses a key", []string{"ship", good, "-X", "bootstrap.servers=x:1", "-X", "transactional.id=t"}, "Kafka[transactional.id]: set by kafkawal"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := cli(c.args...)
			if r.code != exitUsage || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "kafkawal ship: ") || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", r.code, r.stdout, r.stderr, c.want)
			}
		})
	}
}

// shortCtx is for closing a producer whose Kafka is unreachable.
func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

// TestShipExactlyOnce: a directory its service delivered exactly once is
// shipped exactly once, with its TransactionalID, from the position Kafka
// committed, even when the local cursor is behind it (here: lost
// entirely): read with read_committed, every record once.
func TestShipExactlyOnce(t *testing.T) {
	b := startShipBroker(t, false)
	dir := filepath.Join(t.TempDir(), "wal")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	p, err := kafkawal.Open(kafkawal.Config{
		Dir: dir, Kafka: kafka.ConfigMap{"bootstrap.servers": b.Bootstrap()},
		Delivery: kafkawal.ExactlyOnce, TransactionalID: "ship-eos",
	})
	if err != nil {
		t.Fatal(err)
	}
	const committed, left = 1000, 300
	for id := uint64(1); id <= committed; id++ {
		if _, err := p.Append(ctx, shipRecord(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The service then appended more while Kafka was away, and its
	// cursor is gone: an at-least-once ship would send all 1300.
	l, _, err := wal.Open(dir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(committed + 1); id <= committed+left; id++ {
		if _, err := l.Append(ctx, []wal.Record{shipRecord(id)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range wal.CursorFiles {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}

	r := cli("ship", dir, "-X", "bootstrap.servers="+b.Bootstrap())
	if r.code != exitOK || !strings.Contains(r.stderr, `delivering it exactly once, as TransactionalID "ship-eos"`) {
		t.Fatalf("ship: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	if want := fmt.Sprintf("ship: delivered %d records in ", left); !strings.HasPrefix(r.stdout, want) {
		t.Errorf("stdout = %q, want it to start with %q", r.stdout, want)
	}
	recs, err := kafkatest.ReadCommitted(ctx, b.Bootstrap(), []string{shipTopic}, committed+left)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for _, rec := range recs {
		seen[binary.BigEndian.Uint64(rec.Value)]++
	}
	for id := uint64(1); id <= committed+left; id++ {
		if seen[id] != 1 {
			t.Fatalf("id %d read %d times with read_committed, want once (%d records read)", id, seen[id], len(recs))
		}
	}
	if len(recs) != committed+left {
		t.Fatalf("read %d records, want %d", len(recs), committed+left)
	}
}
