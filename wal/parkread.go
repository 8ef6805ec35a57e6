package wal

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// ParkReader reads a park log's records in sequence order from a position
// of its own, up to what the writer has synced. Records are read into
// buffers the caller recycles, as with Log.ReadInto.
type ParkReader struct {
	pl   *ParkLog
	f    *os.File
	seg  uint64 // first sequence of f's segment
	off  int64  // of the next record in f
	next uint64 // every record of f below it was read
}

// NewReader returns a reader of the log. Close it when done.
func (pl *ParkLog) NewReader() *ParkReader { return &ParkReader{pl: pl} }

// Close releases the file the reader holds.
func (r *ParkReader) Close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// ReadInto appends to dst the log's records with a sequence >= seq, in
// order: at most cap(dst)-len(dst), stopping once maxBytes are read (at
// least one record) or at the end of a segment. The records alias buf,
// grown if needed, and are valid until it is reused; it returns the
// entries and the buffer to reuse. It returns no entry when the log holds
// no synced record from seq on.
func (r *ParkReader) ReadInto(seq uint64, dst []Entry, buf []byte, maxBytes int) ([]Entry, []byte, error) {
	r.pl.mu.Lock()
	segs := slices.Clone(r.pl.segs)
	r.pl.mu.Unlock()
	i, _ := slices.BinarySearchFunc(segs, seq, func(s parkSeg, q uint64) int {
		switch {
		case s.last < q:
			return -1
		case s.first > q:
			return 1
		}
		return 0
	})
	for ; i < len(segs); i++ {
		s := segs[i]
		if s.last < seq {
			continue
		}
		if r.f == nil || r.seg != s.first || r.next > seq {
			r.Close()
			f, err := os.Open(filepath.Join(r.pl.dir, s.name()))
			if err != nil {
				return dst, buf, fmt.Errorf("kafkawal: park %s: %w", r.pl.meta.Name(), err)
			}
			r.f, r.seg, r.off, r.next = f, s.first, 0, s.first
		}
		n0 := len(dst)
		var err error
		dst, buf, err = r.read(s, seq, dst, buf, maxBytes)
		if err != nil || len(dst) > n0 {
			return dst, buf, err
		}
	}
	return dst, buf, nil
}

// read decodes the records of segment s (open in r.f) from r.off on,
// keeping those >= seq.
func (r *ParkReader) read(s parkSeg, seq uint64, dst []Entry, buf []byte, maxBytes int) ([]Entry, []byte, error) {
	name := filepath.Join(r.pl.dir, s.name())
	need := int64(0) // the size of a record larger than a read
	for r.off < s.bytes && len(dst) < cap(dst) {
		want := min(s.bytes-r.off, max(int64(maxBytes), readStep, need))
		if int64(cap(buf)) < want {
			buf = make([]byte, want)
		}
		data := buf[:want]
		if _, err := r.f.ReadAt(data, r.off); err != nil {
			return dst, buf, fmt.Errorf("kafkawal: park segment %s: read at %d: %w", name, r.off, err)
		}
		kept := false
		for len(data) > 0 && len(dst) < cap(dst) {
			size, h := binary.Uvarint(data)
			if h <= 0 || uint64(len(data)-h) < size {
				if !kept && len(data) == int(want) {
					if h <= 0 || int64(h)+int64(size) > s.bytes-r.off {
						return dst, buf, fmt.Errorf("%w: park segment %s: frame at offset %d runs past its end", ErrCorrupt, name, r.off)
					}
					need = int64(h) + int64(size)
				}
				break
			}
			ent := data[h : h+int(size)]
			rseq, rec, err := DecodeParked(ent)
			if err != nil {
				return dst, buf, fmt.Errorf("park segment %s offset %d: %w", name, r.off, err)
			}
			data = data[h+int(size):]
			r.off += int64(h) + int64(size)
			r.next = rseq + 1
			if rseq >= seq {
				dst = append(dst, Entry{Seq: rseq, Record: rec, Size: len(ent)})
				kept = true
			}
		}
		if kept {
			return dst, buf, nil
		}
	}
	return dst, buf, nil
}

// Lookup returns the parked record of sequence seq, copied.
func (pl *ParkLog) Lookup(seq uint64) (Record, error) {
	r := pl.NewReader()
	defer r.Close()
	ents, _, err := r.ReadInto(seq, make([]Entry, 0, 1), nil, 1)
	if err != nil {
		return Record{}, err
	}
	if len(ents) == 0 || ents[0].Seq != seq {
		return Record{}, fmt.Errorf("kafkawal: park %s: no record %d", pl.meta.Name(), seq)
	}
	return ents[0].Record.Clone(), nil
}
