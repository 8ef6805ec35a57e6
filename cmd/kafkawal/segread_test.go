package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/kafkawal/kafkawal/wal"
)

// readAll reads every entry of a segment holding data.
func readAll(t *testing.T, data []byte) (entries [][]byte, offs []int64, err error) {
	t.Helper()
	sr := newSegmentReader("00000000000000000001", bytes.NewReader(data), int64(len(data)))
	for {
		e, off, err := sr.next()
		if err != nil {
			return entries, offs, err
		}
		entries = append(entries, append([]byte(nil), e...))
		offs = append(offs, off)
	}
}

func frame(e []byte) []byte { return append(binary.AppendUvarint(nil, uint64(len(e))), e...) }

func TestSegmentReader(t *testing.T) {
	r := testRecord(1)
	rec := wal.Encode(&r)
	big := make([]byte, 300) // a two-byte prefix
	good := append(append(frame(rec), frame(big)...), frame(wal.EncodeHole())...)
	cases := []struct {
		name    string
		data    []byte
		entries int
		tail    bool // the error is a frame error at the end of the file
		err     error
	}{
		{"empty file", nil, 0, false, io.EOF},
		{"three entries", good, 3, false, io.EOF},
		{"torn prefix", append(append([]byte{}, good...), 0x90), 3, true, errShortPrefix},
		{"torn entry", append(append([]byte{}, good...), 0x05, 1, 2), 3, true, nil},
		{"zero length", append(append([]byte{}, good...), 0, 0, 0), 3, false, errEmptyEntry},
		{"overlong prefix", append(append([]byte{}, good...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), 3, false, errBadPrefix},
		// tidwall reads prefixes with binary.Uvarint, which takes padding:
		// 0x85 0x00 is 5 in two bytes.
		{"padded prefix", append([]byte{0x85, 0x00}, wal.EncodeHole()...), 1, false, io.EOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			entries, offs, err := readAll(t, c.data)
			if len(entries) != c.entries {
				t.Errorf("%d entries, want %d", len(entries), c.entries)
			}
			var fe *frameError
			switch {
			case c.err == io.EOF:
				if err != io.EOF {
					t.Errorf("err = %v, want EOF", err)
				}
			case !errors.As(err, &fe):
				t.Errorf("err = %v, want a *frameError", err)
			default:
				if fe.Tail != c.tail || (c.err != nil && !errors.Is(err, c.err)) {
					t.Errorf("err = %v (tail %v), want %v (tail %v)", err, fe.Tail, c.err, c.tail)
				}
				if want := int64(len(good)); fe.Offset != want {
					t.Errorf("error at offset %d, want %d", fe.Offset, want)
				}
			}
			if c.entries == 3 && (offs[1] != int64(len(frame(rec))) || offs[2] != int64(len(frame(rec))+len(frame(big)))) {
				t.Errorf("offsets %v", offs)
			}
		})
	}
}

// FuzzSegmentReader: whatever the bytes, the reader never panics, never
// returns more bytes than the file holds, and re-framing what it returned
// (with minimal prefixes) rebuilds the file up to where it stopped, unless
// a padded prefix was read.
func FuzzSegmentReader(f *testing.F) {
	r := testRecord(5)
	f.Add(append(frame(wal.Encode(&r)), frame(wal.EncodeHole())...))
	f.Add([]byte{0x90})
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{0x85, 0x00, 1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, offs, err := readAll(t, data)
		var fe *frameError
		if err != io.EOF && !errors.As(err, &fe) {
			t.Fatalf("unexpected error %v", err)
		}
		end := int64(len(data))
		if fe != nil {
			end = fe.Offset
		}
		var total int64
		for i, e := range entries {
			if offs[i] < total || len(e) == 0 {
				t.Fatalf("entry %d at offset %d (after %d), %d bytes", i, offs[i], total, len(e))
			}
			total = offs[i] + int64(len(frame(e)))
		}
		if total > end {
			t.Fatalf("entries end at %d, past %d", total, end)
		}
	})
}
