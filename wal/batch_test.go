package wal

import (
	"bytes"
	"fmt"
	"testing"
	"unsafe"

	twal "github.com/tidwall/wal"
)

// batchBuilder hands tidwall a run of entries where they lie in one
// buffer, and copies them once they do not (another buffer, or a gap);
// either way tidwall writes exactly the entries given, in order.
func TestBatchBuilder(t *testing.T) {
	enc := func(buf []byte, n int, from int) ([]byte, [][]byte) {
		var es [][]byte
		for i := range n {
			start := len(buf)
			buf = append(buf, fmt.Sprintf("entry-%d-", from+i)...)
			buf = append(buf, bytes.Repeat([]byte{'x'}, i%7)...)
			es = append(es, buf[start:len(buf):len(buf)])
		}
		return buf, es
	}
	a, as := enc(make([]byte, 0, 4096), 5, 0)
	b, bs := enc(make([]byte, 0, 4096), 3, 5)
	for _, c := range []struct {
		name    string
		entries [][]byte
		bases   [][]byte
		aliased bool
	}{
		{"one buffer", as, [][]byte{a, a, a, a, a}, true},
		{"two buffers", append(append([][]byte{}, as...), bs...), [][]byte{a, a, a, a, a, b, b, b}, false},
		{"a gap", [][]byte{as[0], as[2], as[3]}, [][]byte{a, a, a}, false},
		{"one entry", as[4:], [][]byte{a}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tl, err := twal.Open(t.TempDir(), &twal.Options{NoSync: true, NoCopy: true})
			if err != nil {
				t.Fatal(err)
			}
			defer tl.Close()
			var bb batchBuilder
			for i, e := range c.entries {
				bb.add(uint64(i+1), e, c.bases[i])
			}
			if got := !bb.copying && unsafe.SliceData(bb.base) == unsafe.SliceData(c.bases[0]); got != c.aliased {
				t.Fatalf("handed over where they lie: %v, want %v", got, c.aliased)
			}
			if err := bb.write(tl); err != nil {
				t.Fatal(err)
			}
			for i, want := range c.entries {
				got, err := tl.Read(uint64(i + 1))
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("entry %d: %q, %v; want %q", i+1, got, err, want)
				}
			}
			if bb.len() != 0 || bb.base != nil {
				t.Fatal("builder not cleared after write")
			}
		})
	}
}
