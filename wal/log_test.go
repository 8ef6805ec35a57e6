package wal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBadInputChangesNothing(t *testing.T) {
	l := openT(t, t.TempDir(), Options{MaxRecordBytes: 1000, SegmentBytes: 64 << 10})
	defer l.Close()
	appendOne(t, l, rec("t", 0))
	cases := []struct {
		name string
		recs []Record
		is   error
	}{
		{"no records", nil, ErrInvalidRecord},
		{"empty topic", []Record{{Value: []byte("v")}}, ErrInvalidRecord},
		{"empty topic after good", []Record{rec("t", 1), {Value: []byte("v")}}, ErrInvalidRecord},
		{"too large", []Record{{Topic: "t", Value: make([]byte, 1000)}}, ErrTooLarge},
		{"too large is invalid", []Record{{Topic: "t", Value: make([]byte, 1000)}}, ErrInvalidRecord},
		{"bad partition", []Record{{Topic: "t", Partition: -2}}, ErrInvalidRecord},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := l.Append(bg, c.recs)
			if err == nil {
				t.Fatal("Append accepted bad input")
			}
			if !errors.Is(err, c.is) {
				t.Fatalf("err %v, want %v", err, c.is)
			}
			if l.LastSeq() != 1 {
				t.Fatalf("LastSeq moved to %d", l.LastSeq())
			}
		})
	}
}

func TestAppendAfterClose(t *testing.T) {
	l := openT(t, t.TempDir(), Options{})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(bg, []Record{rec("t", 1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
}

func TestPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	l := openT(t, dir, Options{})
	appendOne(t, l, rec("t", 1))
	if err := l.SetCursor(1); err != nil {
		t.Fatal(err)
	}
	l.Close()
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// AppendAt stores its time for records without a timestamp, keeps the
// others', and leaves the caller's records untouched.
func TestAppendAtStampsUnsetTimestamps(t *testing.T) {
	l := openT(t, t.TempDir(), Options{})
	defer l.Close()
	now := time.Unix(1700000000, 123456789)
	own := time.Unix(1600000000, 0)
	recs := []Record{{Topic: "t", Value: []byte("a")}, {Topic: "t", Value: []byte("b"), Timestamp: own}}
	first, err := l.AppendAt(bg, recs, now)
	if err != nil {
		t.Fatal(err)
	}
	if !recs[0].Timestamp.IsZero() {
		t.Fatal("AppendAt modified the caller's record")
	}
	got := readAll(t, l, first)
	if !got[0].Record.Timestamp.Equal(now) || !got[1].Record.Timestamp.Equal(own) {
		t.Fatalf("timestamps %v, %v; want %v, %v", got[0].Record.Timestamp, got[1].Record.Timestamp, now, own)
	}
	// Append (no time) leaves it unset.
	seq := appendOne(t, l, Record{Topic: "t", Value: []byte("c")})
	if ts := readAll(t, l, seq)[0].Record.Timestamp; !ts.IsZero() {
		t.Fatalf("Append stored timestamp %v, want unset", ts)
	}
}

// A failed Open closes everything it opened. Here the cursor cannot be
// read (cursor.0 is a directory), which Open finds after it has opened the
// segments.
func TestFailedOpenLeavesNoFileOpen(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	appendOne(t, l, rec("t", 0))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cur := filepath.Join(dir, CursorFiles[0])
	if err := os.RemoveAll(cur); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(cur, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(dir, Options{}); err == nil {
		t.Fatal("Open succeeded with a directory for a cursor file")
	}
	if open := openFilesUnder(t, dir); len(open) > 0 {
		t.Fatalf("after a failed Open, still open: %v", open)
	}
}

// openFilesUnder lists the files under dir this process has open.
func openFilesUnder(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("cannot list open files: %v", err)
	}
	var open []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			open = append(open, target)
		}
	}
	return open
}
