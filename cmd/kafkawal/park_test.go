package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafkawal/kafkawal/wal"
)

// addPark writes a park log of n records of testRecord, partition 2 of
// topic t, with sequences 1, 4, 7..., its cursor at acked.
func addPark(t testing.TB, dir string, n int, acked uint64) string {
	t.Helper()
	l := openLog(t, dir)
	defer l.Close()
	pl, err := l.CreatePark(wal.ParkMeta{Topic: "t", Partition: 2, Count: 4, Partitioner: "consistent_random"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		r := testRecord(i)
		if err := pl.Append(uint64(1+3*i), &r); err != nil {
			t.Fatal(err)
		}
	}
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	if acked > 0 {
		if err := pl.SetAcked(acked); err != nil {
			t.Fatal(err)
		}
	}
	return pl.Dir()
}

// inspect and verify show park logs: what is parked, whose, and damage.
func TestInspectAndVerifyParks(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 300, 0)
	park := addPark(t, dir, 2000, 30) // records 1, 4, ..., 28 delivered: 10

	rep := inspectJSON(t, dir)
	parks := rep["parks"].(map[string]any)
	logs := parks["logs"].([]any)
	if parks["count"] != 1.0 || parks["records"] != 1990.0 || len(logs) != 1 {
		t.Fatalf("parks = %v", parks)
	}
	pl := logs[0].(map[string]any)
	if pl["name"] != "t.2" || pl["topic"] != "t" || pl["partition"] != 2.0 || pl["first_seq"] != 1.0 || pl["last_seq"] != float64(1+3*1999) ||
		pl["acked"] != 30.0 || pl["torn_tail"] != false || pl["error"] != nil {
		t.Fatalf("park log = %v", pl)
	}
	r := cli("inspect", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "1990 records in 1 park log") || !strings.Contains(r.stdout, "t/2: 1990 records") ||
		!strings.Contains(r.stdout, "parked in park/t.2 (the partition stalled)") {
		t.Fatalf("inspect: exit %d\n%s", r.code, r.stdout)
	}
	r = cli("verify", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "verify: ok: ") || !strings.Contains(r.stdout, "1 park log, 1990 records to deliver") {
		t.Fatalf("verify: exit %d\n%s", r.code, r.stdout)
	}

	// A torn tail is not corruption; damage inside is, for both.
	names, _ := filepath.Glob(filepath.Join(park, "0*"))
	if len(names) < 2 {
		t.Fatalf("%d park segments", len(names))
	}
	appendBytes(t, names[len(names)-1], []byte{0x90, 0x01, 1})
	if r := cli("verify", dir); r.code != 0 || !strings.Contains(r.stdout, "TORN TAIL: park log t.2") {
		t.Fatalf("verify of a torn park tail: exit %d\n%s", r.code, r.stdout)
	}
	b, _ := os.ReadFile(names[0])
	flipByte(t, names[0], int64(len(b)/2))
	if r := cli("verify", dir); r.code != 1 || !strings.Contains(r.stdout, "CORRUPT: park log t.2") || !strings.Contains(r.stdout, names[0]) {
		t.Fatalf("verify of a damaged park log: exit %d\n%s", r.code, r.stdout)
	}
	if r := cli("inspect", dir); r.code != 1 || !strings.Contains(r.stdout, "DAMAGED") {
		t.Fatalf("inspect of a damaged park log: exit %d\n%s", r.code, r.stdout)
	}
}

// ship --remove keeps a directory whose park log holds records not yet
// delivered: they are found nowhere else.
func TestShipKeepsUndeliveredParks(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 300, 300)
	addPark(t, dir, 20, 10)
	err := checkShipped(dir, 300)
	var kept *keptError
	if !errors.As(err, &kept) || !strings.Contains(err.Error(), "park log t.2 holds 16 undelivered records") {
		t.Fatalf("checkShipped: %v", err)
	}
}
