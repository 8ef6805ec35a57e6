package wal

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
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

// One damaged frame in the middle of the dead-letter log must not take the
// intact frames after it (their records' only copies) with it: Open keeps
// them in place and reports the damage, readers skip it and say so at the
// end, and new dead letters go after them. Found by review: the damaged
// frame was taken for a torn tail and everything from it on was cut.
func TestDeadLettersMidFileDamageKeepsLaterFrames(t *testing.T) {
	dir := t.TempDir()
	d, _, err := OpenDeadLetters(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := d.Add(DeadLetter{Seq: uint64(i), Time: time.Now(), Err: "refused", Record: rec("t", i)}); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
	path := filepath.Join(dir, DeadLetterFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[12] ^= 1 // inside the first frame's payload
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	d, cut, err := OpenDeadLetters(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	first := int64(binary.BigEndian.Uint32(data)) + deadLetterHeader
	if dmg := d.Damage(); cut != 0 || len(dmg) != 1 || dmg[0] != (DeadLetterDamage{Offset: 0, Bytes: first}) {
		t.Fatalf("OpenDeadLetters cut %d bytes and found damage %+v; want nothing cut and [{0 %d}]", cut, dmg, first)
	}
	if err := d.Add(DeadLetter{Seq: 4, Time: time.Now(), Err: "refused", Record: rec("t", 4)}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	var seqs []uint64
	err = ReadDeadLetters(dir, func(dl DeadLetter) error { seqs = append(seqs, dl.Seq); return nil })
	if !errors.Is(err, ErrCorrupt) || !slices.Equal(seqs, []uint64{2, 3, 4}) {
		t.Fatalf("ReadDeadLetters read %v, err %v; want [2 3 4] and an error matching ErrCorrupt", seqs, err)
	}
	if fi, _ := os.Stat(path); fi.Size() <= int64(len(data)) {
		t.Fatalf("dead-letter log is %d bytes, was %d before the fourth frame: something was cut", fi.Size(), len(data))
	}
}

// A damaged last frame is a torn tail: cut, counted, and the log goes on.
func TestDeadLettersTornTailCut(t *testing.T) {
	dir := t.TempDir()
	d, _, err := OpenDeadLetters(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		if err := d.Add(DeadLetter{Seq: uint64(i), Time: time.Now(), Err: "refused", Record: rec("t", i)}); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
	path := filepath.Join(dir, DeadLetterFile)
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, data[:len(data)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	d, cut, err := OpenDeadLetters(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	second := int64(len(data)) - (int64(binary.BigEndian.Uint32(data)) + deadLetterHeader)
	if cut != second-3 || len(d.Damage()) != 0 {
		t.Fatalf("cut %d bytes, damage %+v; want the torn second frame (%d bytes) cut and no damage", cut, d.Damage(), second-3)
	}
	var seqs []uint64
	if err := ReadDeadLetters(dir, func(dl DeadLetter) error { seqs = append(seqs, dl.Seq); return nil }); err != nil || !slices.Equal(seqs, []uint64{1}) {
		t.Fatalf("ReadDeadLetters read %v, err %v; want [1]", seqs, err)
	}
}

// TestDeadLettersZeroFilledTail: a power cut during an Add can leave the
// file grown with zeros instead of the frame (the size reached the disk,
// the data did not). Eight zeros read as an empty frame whose checksum
// holds; it is a torn tail like any other, cut at open, not a dead letter
// that fails to decode (which made every Open fail).
func TestDeadLettersZeroFilledTail(t *testing.T) {
	for _, zeros := range []int{8, 9, 100, 4096} {
		dir := t.TempDir()
		d, _, err := OpenDeadLetters(dir, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Add(DeadLetter{Seq: 1, Time: time.Now(), Err: "refused", Record: rec("t", 1)}); err != nil {
			t.Fatal(err)
		}
		d.Close()
		f, err := os.OpenFile(filepath.Join(dir, DeadLetterFile), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(make([]byte, zeros))
		f.Close()
		d, cut, err := OpenDeadLetters(dir, 0o600)
		if err != nil || cut != int64(zeros) {
			t.Fatalf("%d zeros: open cut %d bytes, err %v", zeros, cut, err)
		}
		d.Close()
		n := 0
		if err := ReadDeadLetters(dir, func(DeadLetter) error { n++; return nil }); err != nil || n != 1 {
			t.Fatalf("%d zeros: read %d dead letters, err %v", zeros, n, err)
		}
	}
}
