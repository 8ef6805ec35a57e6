package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestVerifyClean(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 1500, 0)
	r := cli("verify", dir)
	if r.code != 0 {
		t.Fatalf("verify of a clean log: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "verify: ok: ") || !strings.Contains(r.stdout, "1500 records, seq 1..1500") {
		t.Errorf("stdout = %q", r.stdout)
	}
	// Not a terminal: plain progress lines, no carriage returns, ending at
	// 100%.
	if strings.Contains(r.stderr, "\r") || !strings.HasSuffix(r.stderr, "(100%)\n") {
		t.Errorf("progress on a non-terminal = %q", r.stderr)
	}
}

// TestVerifyCorruptSealedSegment flips one byte inside a record of the
// first (sealed) segment: verify must exit 1 and name the file, the offset
// where that record's entry starts, and its sequence.
func TestVerifyCorruptSealedSegment(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 1500, 0)
	segs := segments(t, dir)
	if len(segs) < 3 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	seg := segs[1] // sealed: not the tail
	seq := seg.First + 10
	off := entryOffset(seg.First, seq)
	flipByte(t, seg.Path, off+2+8) // inside the entry's timestamp: checksum fails
	r := cli("verify", dir)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	want := fmt.Sprintf("CORRUPT: segment %s offset %d (seq %d)", seg.Path, off, seq)
	if !strings.Contains(r.stdout, want) {
		t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
	}
	if !strings.Contains(r.stdout, "verify: CORRUPT: 1 damaged range") {
		t.Errorf("no verdict line:\n%s", r.stdout)
	}
}

func TestVerifyTornTailIsNotCorruption(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 200, 0)
	segs := segments(t, dir)
	tail := segs[len(segs)-1]
	appendBytes(t, tail.Path, []byte{0x90, 0x01, 1, 2, 3})
	r := cli("verify", dir)
	if r.code != 0 {
		t.Fatalf("exit %d, want 0 for a torn tail\n%s", r.code, r.stdout)
	}
	want := fmt.Sprintf("TORN TAIL: segment %s offset %d", tail.Path, tail.Bytes)
	if !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "verify: ok with a torn tail") {
		t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
	}
}

func TestVerifyHolesAreNotCorruption(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 200, 0)
	punchHole(t, dir, 7)
	r := cli("verify", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "199 records, seq 1..200, 1 hole") {
		t.Errorf("exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestProgressBar(t *testing.T) {
	var tty, plain bytes.Buffer
	bt, bp := newProgress(&tty, true, verifyStyle), newProgress(&plain, false, verifyStyle)
	for _, done := range []int64{10 << 20, 15 << 20, 50 << 20, 100 << 20} {
		bt.update(done, 100<<20, "")
		bp.update(done, 100<<20, "")
	}
	bt.finish()
	bp.finish()
	// The terminal bar is redrawn in place and ends full, with its line
	// ended.
	if !strings.Contains(tty.String(), "\r") || !strings.Contains(tty.String(), "100%") ||
		!strings.Contains(tty.String(), "verifying") || !strings.HasSuffix(tty.String(), "\n") {
		t.Errorf("terminal bar = %q", tty.String())
	}
	// 10% and 15% are the same step: one line for them.
	want := "verify: checked 10.0 MiB of 100.0 MiB (10%)\nverify: checked 50.0 MiB of 100.0 MiB (50%)\nverify: checked 100.0 MiB of 100.0 MiB (100%)\n"
	if plain.String() != want {
		t.Errorf("plain progress = %q, want %q", plain.String(), want)
	}
}
