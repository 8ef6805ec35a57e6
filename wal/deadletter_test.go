package wal

import (
	"encoding/binary"
	"hash/crc32"
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
		if err := d.Add(DeadLetter{Seq: uint64(i + 1), Time: now, Err: "MSG_SIZE_TOO_LARGE", Code: 10, SentToPartition: int32(i), Record: rec("t", i)}); err != nil {
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
	if len(got) != 2 || got[1].Seq != 2 || got[1].Err != "MSG_SIZE_TOO_LARGE" || !got[1].Time.Equal(now) ||
		got[1].Code != 10 || got[1].SentToPartition != 1 {
		t.Fatalf("dead letters %+v", got)
	}
	assertRecordEqual(t, got[0].Record, rec("t", 0))
}

// A dead-letter log written before version 2 (no code, no partition) still
// reads: code 0, partition -1; and a version-2 frame can follow it.
func TestDeadLettersVersion1(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1700000000, 0)
	r := rec("t", 7)
	p := []byte{1}
	p = binary.BigEndian.AppendUint64(p, 42)
	p = binary.BigEndian.AppendUint64(p, uint64(now.UnixNano()))
	p = binary.AppendUvarint(p, uint64(len("old error")))
	p = append(p, "old error"...)
	p = AppendEncode(p, &r)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(p)))
	frame = binary.BigEndian.AppendUint32(frame, crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli)))
	frame = append(frame, p...)
	if err := os.WriteFile(filepath.Join(dir, DeadLetterFile), frame, 0o600); err != nil {
		t.Fatal(err)
	}
	d, cut, err := OpenDeadLetters(dir, 0o600)
	if err != nil || cut != 0 {
		t.Fatalf("open a version-1 log: cut %d, %v", cut, err)
	}
	if err := d.Add(DeadLetter{Seq: 43, Time: now, Err: "new error", Code: -191, SentToPartition: 3, Record: r}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	var got []DeadLetter
	if err := ReadDeadLetters(dir, func(dl DeadLetter) error { got = append(got, dl); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("read %d dead letters, want 2", len(got))
	}
	if g := got[0]; g.Seq != 42 || g.Err != "old error" || g.Code != 0 || g.SentToPartition != PartitionAny || !g.Time.Equal(now) {
		t.Fatalf("version 1: %+v", g)
	}
	if g := got[1]; g.Seq != 43 || g.Err != "new error" || g.Code != -191 || g.SentToPartition != 3 {
		t.Fatalf("version 2: %+v", g)
	}
	assertRecordEqual(t, got[0].Record, r)
	assertRecordEqual(t, got[1].Record, r)
}
