package recovery

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kafkawal/kafkawal/wal"
)

// testSegmentBytes is the smallest segment wal allows: a few thousand
// records make several segments.
const testSegmentBytes = 64 << 10

var walOpts = wal.Options{Sync: wal.SyncNever, SegmentBytes: testSegmentBytes}

// testRecord is record i of every test log. Values vary in size so that
// length prefixes take one and two bytes.
func testRecord(i int) wal.Record {
	r := wal.Record{
		Topic:     "orders",
		Partition: int32(i%3) - 1,
		Key:       []byte(fmt.Sprintf("key-%d", i)),
		Value:     bytes.Repeat([]byte{'a' + byte(i%26)}, valueLen(i)),
		Timestamp: time.Unix(1700000000, int64(i)),
	}
	if i%5 == 0 {
		r.Headers = []wal.Header{{Key: "h", Value: []byte(fmt.Sprint(i))}}
	}
	return r
}

// valueLen keeps the template's last two records short, so that the torn
// tail test cuts at every offset of them quickly, yet with two-byte length
// prefixes (entries of 128 bytes or more).
func valueLen(i int) int {
	if i >= templateRecords-2 && i < templateRecords {
		return 100 + i%2
	}
	return 20 + (i*37)%300
}

// writeLog appends records [0, n) to a new log in dir through wal, in
// batches, and closes it.
func writeLog(t testing.TB, dir string, n int) {
	t.Helper()
	l, _, err := wal.Open(dir, walOpts)
	if err != nil {
		t.Fatalf("wal.Open: %v", err)
	}
	for i := 0; i < n; {
		batch := make([]wal.Record, 0, 50)
		for ; i < n && len(batch) < cap(batch); i++ {
			batch = append(batch, testRecord(i))
		}
		if _, err := l.Append(context.Background(), batch); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// The template log is written once per test binary and copied per case.
const templateRecords = 1500

var template struct {
	once sync.Once
	dir  string
	err  error
}

func templateLog(t testing.TB) string {
	t.Helper()
	template.once.Do(func() {
		template.dir, template.err = os.MkdirTemp("", "recovery-template-")
		if template.err == nil {
			writeLog(t, template.dir, templateRecords)
		}
	})
	if template.err != nil {
		t.Fatal(template.err)
	}
	return template.dir
}

// TestMain removes the template log after the tests and fails them if any
// goroutine outlives them.
func TestMain(m *testing.M) {
	code := m.Run()
	if template.dir != "" {
		os.RemoveAll(template.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// freshLog returns a private copy of the template log.
func freshLog(t testing.TB) string {
	t.Helper()
	dst := t.TempDir()
	copyTree(t, templateLog(t), dst)
	return dst
}

func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
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
		t.Fatal(err)
	}
}

// snapshot returns the bytes of every file under dir, by relative path.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		rel, _ := filepath.Rel(dir, path)
		files[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sameFiles(t testing.TB, got, want map[string]string) {
	t.Helper()
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s disappeared", name)
		} else if g != w {
			t.Errorf("%s changed", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s appeared", name)
		}
	}
}

// pos is where an entry sits on disk, found by a parser independent of the
// package under test.
type pos struct {
	seq    uint64
	seg    string // path
	off    int64  // of the length prefix
	prefix int64  // bytes of the length prefix
	framed int64  // prefix and entry
}

// layout lists every entry of an undamaged log.
func layout(t testing.TB, dir string) []pos {
	t.Helper()
	segs, err := wal.ListSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []pos
	for _, s := range segs {
		b, err := os.ReadFile(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		seq := s.First
		for off := 0; off < len(b); seq++ {
			l, k := binary.Uvarint(b[off:])
			if k <= 0 || off+k+int(l) > len(b) {
				t.Fatalf("layout: %s does not parse at %d", s.Path, off)
			}
			out = append(out, pos{seq: seq, seg: s.Path, off: int64(off), prefix: int64(k), framed: int64(k) + int64(l)})
			off += k + int(l)
		}
	}
	return out
}

// readBack opens the log with wal (after repair by opts.BeforeOpen, if
// set) and reads every entry.
func readBack(t testing.TB, dir string, opts wal.Options) ([]wal.Entry, error) {
	t.Helper()
	l, info, err := wal.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	var out []wal.Entry
	for seq := info.FirstSeq; seq <= l.LastSeq(); {
		batch, err := l.Read(seq, make([]wal.Entry, 0, 256), 1<<20)
		out = append(out, batch...)
		if err != nil {
			return out, err
		}
		if len(batch) == 0 {
			return out, fmt.Errorf("Read(%d) returned nothing below LastSeq %d", seq, l.LastSeq())
		}
		seq = batch[len(batch)-1].Seq + 1
	}
	return out, nil
}

// checkEntries fails unless entries are exactly sequences 1..n in order,
// each equal to testRecord(seq-1), except those in holes, which must come
// back as holes.
func checkEntries(t testing.TB, entries []wal.Entry, n int, holes map[uint64]bool) {
	t.Helper()
	if len(entries) != n {
		t.Fatalf("read %d entries, want %d", len(entries), n)
	}
	for i, e := range entries {
		if want := uint64(i + 1); e.Seq != want {
			t.Fatalf("entry %d has seq %d, want %d", i, e.Seq, want)
		}
		if holes[e.Seq] != e.Hole {
			t.Fatalf("seq %d: hole %v, want %v", e.Seq, e.Hole, holes[e.Seq])
		}
		if !e.Hole {
			sameRecord(t, e.Seq, e.Record, testRecord(i))
		}
	}
}

func sameRecord(t testing.TB, seq uint64, got, want wal.Record) {
	t.Helper()
	same := got.Topic == want.Topic && got.Partition == want.Partition && got.Timestamp.Equal(want.Timestamp) &&
		bytes.Equal(got.Key, want.Key) && bytes.Equal(got.Value, want.Value) && len(got.Headers) == len(want.Headers)
	for i := 0; same && i < len(got.Headers); i++ {
		same = got.Headers[i].Key == want.Headers[i].Key && bytes.Equal(got.Headers[i].Value, want.Headers[i].Value)
	}
	if !same {
		t.Fatalf("seq %d reads back %+v, want %+v", seq, got, want)
	}
}

// repairHook runs Repair as wal's BeforeOpen.
func repairHook(opts Options) wal.Options {
	o := walOpts
	o.BeforeOpen = func(dir string) error {
		_, err := Repair(dir, opts)
		return err
	}
	return o
}

// repaired reports whether a Repair changed anything on disk.
func repaired(r Report) bool { return r.TornTailRepairs > 0 || r.RewrittenSegments > 0 }
