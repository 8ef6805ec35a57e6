package wal

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDeadLetters(t *testing.T) {
	dir := t.TempDir()
	d, cut, err := OpenDeadLetters(dir, 0o600)
	if err != nil || cut != 0 {
		t.Fatal(cut, err)
	}
	now := time.Unix(1700000000, 0)
	for i := 0; i < 3; i++ {
		if err := d.Add(DeadLetter{Seq: uint64(i + 1), Time: now, Err: "MSG_SIZE_TOO_LARGE", Record: rec("t", i)}); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
	// Tear the last frame: it is cut on open and the others remain.
	path := filepath.Join(dir, DeadLetterFile)
	fi, _ := os.Stat(path)
	os.Truncate(path, fi.Size()-3)
	d, cut, err = OpenDeadLetters(dir, 0o600)
	if err != nil || cut == 0 {
		t.Fatalf("reopen: cut %d err %v", cut, err)
	}
	d.Close()
	var got []DeadLetter
	if err := ReadDeadLetters(dir, func(dl DeadLetter) error { got = append(got, dl); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Seq != 2 || got[1].Err != "MSG_SIZE_TOO_LARGE" || !got[1].Time.Equal(now) {
		t.Fatalf("dead letters %+v", got)
	}
	assertRecordEqual(t, got[0].Record, rec("t", 0))
}
