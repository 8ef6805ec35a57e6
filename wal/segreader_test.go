package wal

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// segmentRead is what reading a segment's bytes to the end found.
type segmentRead struct {
	entries [][]byte
	offs    []int64
	end     int64 // End after the last entry
	err     error
}

// The ways to read a segment: from memory, and from a source through
// buffers of several sizes (a small one makes every frame cross a refill).
var segmentReaders = map[string]func(data []byte) *SegmentReader{
	"bytes": NewSegmentBytesReader,
	"buffer 1": func(d []byte) *SegmentReader {
		return NewSegmentReader(bytes.NewReader(d), int64(len(d)), make([]byte, 1))
	},
	"buffer 7": func(d []byte) *SegmentReader {
		return NewSegmentReader(bytes.NewReader(d), int64(len(d)), make([]byte, 7))
	},
	"no buffer": func(d []byte) *SegmentReader { return NewSegmentReader(bytes.NewReader(d), int64(len(d)), nil) },
}

func readSegment(sr *SegmentReader) segmentRead {
	var got segmentRead
	for sr.Next() {
		got.entries = append(got.entries, bytes.Clone(sr.Entry()))
		got.offs = append(got.offs, sr.Offset())
		got.end = sr.End()
	}
	got.err = sr.Err()
	return got
}

func frame(e []byte) []byte { return AppendFrame(nil, e) }

func TestSegmentReader(t *testing.T) {
	r := rec("t", 1)
	record := Encode(&r)
	big := make([]byte, 300) // a two-byte prefix
	good := append(append(frame(record), frame(big)...), frame(EncodeHole())...)
	cases := []struct {
		name    string
		data    []byte
		entries int
		tail    bool  // the error is a frame error at the end of the file
		err     error // nil: the end of the segment; else the FrameError's cause
	}{
		{"empty file", nil, 0, false, nil},
		{"three entries", good, 3, false, nil},
		{"torn prefix", append(bytes.Clone(good), 0x90), 3, true, errShortPrefix},
		{"torn entry", append(bytes.Clone(good), 0x05, 1, 2), 3, true, errOverrun},
		{"zero length", append(bytes.Clone(good), 0, 0, 0), 3, false, errEmptyEntry},
		{"overlong prefix", append(bytes.Clone(good), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), 3, false, errBadPrefix},
		// tidwall reads prefixes with binary.Uvarint, which takes padding:
		// 0x85 0x00 is 5 in two bytes.
		{"padded prefix", append([]byte{0x85, 0x00}, EncodeHole()...), 1, false, nil},
	}
	for _, c := range cases {
		for mode, open := range segmentReaders {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				got := readSegment(open(c.data))
				if len(got.entries) != c.entries {
					t.Errorf("%d entries, want %d", len(got.entries), c.entries)
				}
				var fe *FrameError
				switch {
				case c.err == nil:
					if got.err != nil {
						t.Errorf("err = %v, want none", got.err)
					}
				case !errors.As(got.err, &fe):
					t.Errorf("err = %v, want a *FrameError", got.err)
				default:
					if fe.Tail != c.tail || !errors.Is(got.err, c.err) || !errors.Is(got.err, ErrCorrupt) {
						t.Errorf("err = %v (tail %v), want %v (tail %v), matching ErrCorrupt", got.err, fe.Tail, c.err, c.tail)
					}
					if want := int64(len(good)); fe.Offset != want {
						t.Errorf("error at offset %d, want %d", fe.Offset, want)
					}
				}
				if c.entries == 3 && (got.offs[1] != int64(len(frame(record))) || got.offs[2] != int64(len(frame(record))+len(frame(big)))) {
					t.Errorf("offsets %v", got.offs)
				}
			})
		}
	}
}

// Skip passes over entries by their length alone, reading no more than
// the prefixes of entries that are not buffered, and lands where Next
// would.
func TestSegmentReaderSkip(t *testing.T) {
	var data []byte
	entry := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 1+i*4001) }
	for i := range 50 {
		data = append(data, frame(entry(i))...)
	}
	for _, skip := range []int{0, 1, 17, 49} {
		src := &countingReader{r: bytes.NewReader(data)}
		sr := NewSegmentReader(src, int64(len(data)), make([]byte, 16))
		for range skip {
			if !sr.Skip() || sr.Entry() != nil {
				t.Fatalf("Skip failed or returned an entry: %v", sr.Err())
			}
		}
		if !sr.Next() || !bytes.Equal(sr.Entry(), entry(skip)) {
			t.Fatalf("after %d skips: entry %.10x..., err %v", skip, sr.Entry(), sr.Err())
		}
		// A refill reads at most readStep: the prefix of an entry not
		// buffered, and what follows it.
		if skip > 10 && src.read > int64(skip+2)*readStep {
			t.Fatalf("%d skips read %d of %d bytes", skip, src.read, len(data))
		}
	}
}

type countingReader struct {
	r    *bytes.Reader
	read int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.read += int64(n)
	return n, err
}

// FuzzSegmentReader: whatever the bytes, every way of reading them finds
// the same entries at the same offsets and stops at the same place for the
// same reason, never returns more bytes than the file holds, and
// re-framing what it returned rebuilds the file up to where it stopped,
// unless a padded prefix was read.
func FuzzSegmentReader(f *testing.F) {
	r := rec("t", 5)
	f.Add(append(frame(Encode(&r)), frame(EncodeHole())...))
	f.Add([]byte{0x90})
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{0x85, 0x00, 1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		want := readSegment(NewSegmentBytesReader(data))
		for mode, open := range segmentReaders {
			got := readSegment(open(data))
			if g, w := fmt.Sprint(got.entries, got.offs, got.end, got.err), fmt.Sprint(want.entries, want.offs, want.end, want.err); g != w {
				t.Fatalf("%s read %s, from memory %s", mode, g, w)
			}
		}
		var fe *FrameError
		if want.err != nil && !errors.As(want.err, &fe) {
			t.Fatalf("unexpected error %v", want.err)
		}
		end := int64(len(data))
		if fe != nil {
			end = fe.Offset
		}
		var total int64
		for i, e := range want.entries {
			if want.offs[i] < total || len(e) == 0 {
				t.Fatalf("entry %d at offset %d (after %d), %d bytes", i, want.offs[i], total, len(e))
			}
			total = want.offs[i] + int64(len(frame(e)))
		}
		if total > end {
			t.Fatalf("entries end at %d, past %d", total, end)
		}
	})
}
