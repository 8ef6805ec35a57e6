package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

// testSegmentBytes is the smallest segment wal allows: 1500 test records
// make several segments.
const testSegmentBytes = 64 << 10

var testOpts = wal.Options{Sync: wal.SyncNever, SegmentBytes: testSegmentBytes}

// testRecord is the record with sequence i+1 in every test log. It mixes
// the shapes dump must render: binary and null keys, empty and null
// values, non-ASCII text, headers with binary values, every partition
// form.
func testRecord(i int) wal.Record {
	r := wal.Record{
		Topic:     "orders",
		Partition: int32(i%3) - 1,
		Key:       []byte(fmt.Sprintf("key-%d", i)),
		Value:     []byte(fmt.Sprintf(`{"n":%d,"s":"héllo <%s>"}`, i, strings.Repeat("x", (i*37)%300))),
		Timestamp: time.Unix(1700000000+int64(i), 500),
	}
	switch {
	case i%7 == 3:
		r.Key = []byte{0xff, 0xfe, byte(i)} // not UTF-8
	case i%11 == 4:
		r.Key = nil
	}
	switch {
	case i%13 == 5:
		r.Value = []byte{}
	case i%17 == 6:
		r.Value = nil
	case i%19 == 7:
		r.Value = []byte{0x00, 0xc3, 0x28, byte(i)} // invalid UTF-8
	}
	if i%5 == 0 {
		r.Headers = []wal.Header{{Key: "trace", Value: []byte(fmt.Sprint(i))}, {Key: "bin", Value: []byte{0x80}}, {Key: "nil"}}
	}
	return r
}

// writeLog appends records 0..n-1 to the log in dir (sequences 1..n),
// stores cursor when it is not 0, and closes the log.
func writeLog(t testing.TB, dir string, n int, cursor uint64) {
	t.Helper()
	l := openLog(t, dir)
	appendRecords(t, l, 0, n)
	if cursor > 0 {
		if err := l.SetCursor(cursor); err != nil {
			t.Fatalf("SetCursor(%d): %v", cursor, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func openLog(t testing.TB, dir string) *wal.Log {
	t.Helper()
	l, _, err := wal.Open(dir, testOpts)
	if err != nil {
		t.Fatalf("wal.Open: %v", err)
	}
	return l
}

// appendRecords appends testRecord(from..to-1) in batches.
func appendRecords(t testing.TB, l *wal.Log, from, to int) {
	t.Helper()
	for i := from; i < to; {
		batch := make([]wal.Record, 0, 50)
		for ; i < to && len(batch) < cap(batch); i++ {
			batch = append(batch, testRecord(i))
		}
		if _, err := l.Append(context.Background(), batch); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
}

// addDeadLetters writes dead letters for the given sequences.
func addDeadLetters(t testing.TB, dir string, seqs ...uint64) {
	t.Helper()
	d, _, err := wal.OpenDeadLetters(dir, 0o600)
	if err != nil {
		t.Fatalf("OpenDeadLetters: %v", err)
	}
	for _, s := range seqs {
		dl := wal.DeadLetter{Seq: s, Time: time.Unix(1700001000+int64(s), 0), Err: fmt.Sprintf("Broker: Message size too large (seq %d)", s),
			Code: 10, SentToPartition: wal.PartitionAny, Record: testRecord(int(s) - 1)}
		if err := d.Add(dl); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func segments(t testing.TB, dir string) []wal.SegmentFile {
	t.Helper()
	segs, err := wal.ListSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// entryOffset is where the entry of sequence seq starts in the segment
// whose first sequence is first, computed from the records' encodings (not
// by reading the file).
func entryOffset(first, seq uint64) int64 {
	var off int64
	for s := first; s < seq; s++ {
		r := testRecord(int(s) - 1)
		n := len(wal.Encode(&r))
		off += int64(len(binary.AppendUvarint(nil, uint64(n))) + n)
	}
	return off
}

// flipByte inverts one byte of a file.
func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off >= int64(len(b)) {
		t.Fatalf("offset %d beyond %s (%d bytes)", off, path, len(b))
	}
	b[off] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// appendBytes adds b to the end of a file, as a crash mid-write leaves it.
func appendBytes(t testing.TB, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// cli runs the whole command line in-process.
func cli(args ...string) result {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// treeHash hashes every name, type, permission, size, modification time
// and content under dir: any file created, removed, written or chmod'ed
// changes it. Access times are left out: reading changes them.
func treeHash(t testing.TB, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fmt.Fprintf(h, "%s\x00%v\x00%d\x00%d\x00", rel, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("hash %s: %v", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// copyDir copies a directory tree of regular files, as an operator copies
// a WAL elsewhere to look at it.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// punchHole replaces the entry of sequence seq with a hole entry, as
// recovery's repair does for a record it cannot read.
func punchHole(t testing.TB, dir string, seq uint64) {
	t.Helper()
	var seg wal.SegmentFile
	for _, s := range segments(t, dir) {
		if s.First <= seq {
			seg = s
		}
	}
	b, err := os.ReadFile(seg.Path)
	if err != nil {
		t.Fatal(err)
	}
	start, end := entryOffset(seg.First, seq), entryOffset(seg.First, seq+1)
	hole := wal.EncodeHole()
	frame := append(binary.AppendUvarint(nil, uint64(len(hole))), hole...)
	out := append(append(append([]byte{}, b[:start]...), frame...), b[end:]...)
	if err := os.WriteFile(seg.Path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// openSecond tries a second wal.Open of dir; it must fail while another
// Log holds the lock.
func openSecond(dir string) (*wal.Log, wal.OpenInfo, error) {
	l, info, err := wal.Open(dir, testOpts)
	if err == nil {
		l.Close()
	}
	return l, info, err
}
