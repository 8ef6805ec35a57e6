package wal

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCursorTornFallsBack(t *testing.T) {
	dir := t.TempDir()
	c, st, err := openCursor(dir, 0o600)
	if err != nil || st.Found {
		t.Fatalf("fresh cursor: %+v, %v", st, err)
	}
	if err := c.store(100); err != nil {
		t.Fatal(err)
	}
	if err := c.store(200); err != nil {
		t.Fatal(err)
	}
	// The next store goes to the slot holding 100; tear it at every length.
	victim := filepath.Join(dir, CursorFiles[c.next])
	full := encodeCursor(c.gen+1, 300)
	for n := 0; n < len(full); n++ {
		if err := os.WriteFile(victim, full[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		st, _, err := LoadCursor(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Found || st.Acked != 200 {
			t.Fatalf("torn at %d bytes: cursor %+v, want the previous value 200", n, st)
		}
		if n > 0 && st.Damaged != 1 {
			t.Fatalf("torn at %d bytes: Damaged %d, want 1", n, st.Damaged)
		}
	}
	os.WriteFile(victim, full, 0o600)
	if st, _, _ := LoadCursor(dir); st.Acked != 300 {
		t.Fatalf("whole write: cursor %d, want 300", st.Acked)
	}
	// A flipped bit anywhere is caught too.
	for i := 0; i < len(full); i++ {
		b := append([]byte(nil), full...)
		b[i] ^= 0x10
		os.WriteFile(victim, b, 0o600)
		if st, _, _ := LoadCursor(dir); st.Acked != 200 {
			t.Fatalf("bit flip at %d: cursor %d, want 200", i, st.Acked)
		}
	}
}

func TestCursorPersistsAndClamps(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	for i := 0; i < 10; i++ {
		appendOne(t, l, rec("t", i))
	}
	if err := l.SetCursor(11); err == nil {
		t.Fatal("SetCursor beyond LastSeq accepted")
	}
	if err := l.SetCursor(7); err != nil {
		t.Fatal(err)
	}
	l.SetCursor(5) // never goes back
	l.Close()
	l, info, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Cursor() != 7 || info.CursorClamped {
		t.Fatalf("cursor %d clamped=%v, want 7", l.Cursor(), info.CursorClamped)
	}
	l.Close()
	// A cursor beyond the log (records lost to an OS crash) is lowered.
	c, _, _ := openCursor(dir, 0o600)
	c.store(50)
	l, info, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Cursor() != 10 || !info.CursorClamped {
		t.Fatalf("cursor %d clamped=%v, want 10 true", l.Cursor(), info.CursorClamped)
	}
}
