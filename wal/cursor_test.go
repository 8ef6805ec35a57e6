package wal

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCursorTornFallsBack(t *testing.T) {
	dir := t.TempDir()
	c, st, err := openCursor(dir, 0o600)
	if err != nil || st.Found {
		t.Fatalf("fresh cursor: %+v, %v", st, err)
	}
	if err := c.store(100, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.store(200, 0); err != nil {
		t.Fatal(err)
	}
	// The next store goes to the slot holding 100; tear it at every length.
	victim := filepath.Join(dir, CursorFiles[c.next])
	full := encodeCursor(c.gen+1, 300, 0)
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
	c.store(50, 0)
	l, info, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Cursor() != 10 || !info.CursorClamped {
		t.Fatalf("cursor %d clamped=%v, want 10 true", l.Cursor(), info.CursorClamped)
	}
}

// TestCursorVersions: a version-2 slot carries the synced watermark; a
// version-1 slot (written before it existed) still reads, without one, and
// the newer generation wins whatever the versions.
func TestCursorVersions(t *testing.T) {
	dir := t.TempDir()
	v1 := func(gen, acked uint64) []byte {
		b := []byte(cursorMagic)
		b = append(b, cursorV1)
		b = binary.BigEndian.AppendUint64(b, gen)
		b = binary.BigEndian.AppendUint64(b, acked)
		return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	}
	os.WriteFile(filepath.Join(dir, CursorFiles[0]), v1(7, 70), 0o600)
	st, next, err := LoadCursor(dir)
	if err != nil || !st.Found || st.Acked != 70 || st.SyncedKnown || next != 1 {
		t.Fatalf("version 1: %+v next %d, %v", st, next, err)
	}
	os.WriteFile(filepath.Join(dir, CursorFiles[1]), encodeCursor(8, 80, 95), 0o600)
	if st, _, _ := LoadCursor(dir); st.Acked != 80 || !st.SyncedKnown || st.Synced != 95 || st.Gen != 8 {
		t.Fatalf("version 2 after version 1: %+v", st)
	}
	os.WriteFile(filepath.Join(dir, CursorFiles[0]), v1(9, 90), 0o600)
	if st, _, _ := LoadCursor(dir); st.Acked != 90 || st.SyncedKnown {
		t.Fatalf("newer version 1: %+v", st)
	}
	// A version-2 slot with the version byte of version 1 is damage.
	bad := encodeCursor(10, 100, 100)
	bad[4] = cursorV1
	os.WriteFile(filepath.Join(dir, CursorFiles[1]), bad, 0o600)
	if st, _, _ := LoadCursor(dir); st.Acked != 90 || st.Damaged != 1 {
		t.Fatalf("mislabelled slot: %+v", st)
	}
}

// TestSyncedWatermark: Open stores the cursor with every record synced;
// the watermark follows the fsyncs, and a cursor store or Close records
// it.
func TestSyncedWatermark(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncPeriodic, SyncNever} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, Options{Sync: mode, SyncInterval: time.Millisecond})
			if st, _, _ := LoadCursor(dir); !st.Found || !st.SyncedKnown || st.Synced != 0 {
				t.Fatalf("after Open of an empty log: %+v", st)
			}
			for i := range 20 {
				appendOne(t, l, rec("t", i))
			}
			if mode != SyncNever {
				waitFor(t, 10*time.Second, "the watermark at 20", func() bool { return l.syncedSeq.Load() == 20 })
				if err := l.SetCursor(5); err != nil {
					t.Fatal(err)
				}
				if st, _, _ := LoadCursor(dir); st.Acked != 5 || st.Synced != 20 {
					t.Fatalf("after SetCursor: %+v, want acked 5 synced 20", st)
				}
			}
			appendOne(t, l, rec("t", 21))
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if st, _, _ := LoadCursor(dir); !st.SyncedKnown || st.Synced != 21 {
				t.Fatalf("after Close: %+v, want synced 21", st)
			}
			// Open syncs the log and says so, with a clamped cursor.
			c, _, _ := openCursor(dir, 0o600)
			c.store(50, 3)
			l, info, err := Open(dir, Options{Sync: mode})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if st, _, _ := LoadCursor(dir); !info.CursorClamped || st.Acked != 21 || st.Synced != 21 {
				t.Fatalf("after reopening with cursor 50: %+v (clamped %v), want acked 21 synced 21", st, info.CursorClamped)
			}
		})
	}
}
