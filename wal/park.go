package wal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// ParkDir is the subdirectory of a log directory that holds park logs.
const ParkDir = "park"

// parkMetaFile names a park log's description (see doc.go).
const parkMetaFile = "meta"

// parkMeta is the layout of a park log's meta file:
//
//	"KWPK" | version=1 | partition i32 | count i32 | uv len, partitioner | uv len, topic | crc32c
const (
	parkMagic   = "KWPK"
	parkVersion = 1
)

// ParkMeta describes whose records a park log holds.
type ParkMeta struct {
	Topic string
	// Partition is PartitionAny for the log of a topic's keyless records.
	Partition int32
	// Count is the topic's partition count the records were sorted with
	// (a keyed PartitionAny record belongs to the partition its key hashes
	// to among Count); 0 if not known.
	Count int32
	// Partitioner is librdkafka's partitioner setting they were sorted
	// with.
	Partitioner string
}

// Name is the park log's directory name: topic.partition, or topic.any.
func (m ParkMeta) Name() string {
	if m.Partition == PartitionAny {
		return m.Topic + ".any"
	}
	return m.Topic + "." + strconv.Itoa(int(m.Partition))
}

func encodeParkMeta(m ParkMeta) []byte {
	b := append([]byte(parkMagic), parkVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(m.Partition))
	b = binary.BigEndian.AppendUint32(b, uint32(m.Count))
	b = binary.AppendUvarint(b, uint64(len(m.Partitioner)))
	b = append(b, m.Partitioner...)
	b = binary.AppendUvarint(b, uint64(len(m.Topic)))
	b = append(b, m.Topic...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeParkMeta(b []byte) (ParkMeta, error) {
	var m ParkMeta
	if len(b) < 4+1+8+2+4 || string(b[:4]) != parkMagic || b[4] != parkVersion {
		return m, fmt.Errorf("%w: park meta: bad magic or version", ErrCorrupt)
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return m, fmt.Errorf("%w: park meta: checksum", ErrCorrupt)
	}
	m.Partition = int32(binary.BigEndian.Uint32(body[5:]))
	m.Count = int32(binary.BigEndian.Uint32(body[9:]))
	d := decoder{b: body[13:]}
	m.Partitioner = string(d.bytes())
	m.Topic = string(d.bytes())
	if d.err != nil || len(d.b) != 0 || m.Topic == "" {
		return m, fmt.Errorf("%w: park meta: bad fields", ErrCorrupt)
	}
	return m, nil
}

// ParkLog holds one partition's parked records: the records of a stalled
// partition copied out of the WAL, with their original sequences, so that
// the WAL behind them can be deleted (see doc.go, "Park logs"). One writer
// (Append, Sync) and any number of readers (NewParkReader) may use it at
// once; SetAcked and Remove belong to its owner.
type ParkLog struct {
	l    *Log
	dir  string
	meta ParkMeta

	mu    sync.Mutex
	segs  []parkSeg // published: synced, readable
	acked uint64
	cur   *cursorFile
	gone  bool // removed

	// Writer state.
	w        *os.File // the tail segment, open for writing
	wseg     parkSeg  // what is written to it beyond the published tail
	wnew     bool     // wseg is a new segment, not yet published
	buf      []byte
	reserved int64 // disk bytes reserved for written, unpublished bytes
}

// parkSeg is one park segment file: frames of parked records, named by the
// sequence of its first.
type parkSeg struct {
	first, last uint64
	n           int
	bytes       int64
	above       int // records above the cursor, counted at Open
}

func (s parkSeg) name() string { return SegmentName(s.first) }

// parkFlushBytes bounds what Append buffers before it writes.
const parkFlushBytes = 1 << 20

// Meta returns whose records the log holds.
func (pl *ParkLog) Meta() ParkMeta { return pl.meta }

// Dir returns the log's directory.
func (pl *ParkLog) Dir() string { return pl.dir }

// SetCount records the partition count, once it is known.
func (pl *ParkLog) SetCount(count int32) error {
	if pl.meta.Count == count {
		return nil
	}
	m := pl.meta
	m.Count = count
	if err := writeFileSynced(pl.dir, parkMetaFile, encodeParkMeta(m), pl.l.opts.FileMode); err != nil {
		return err
	}
	pl.meta = m
	return nil
}

// Stats returns what the log holds: records and bytes not yet known
// delivered (by the cursor, whole segments), the first and last sequence
// in it, and the cursor.
func (pl *ParkLog) Stats() (records int, bytes int64, first, last, acked uint64) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for _, s := range pl.segs {
		records += s.n
		bytes += s.bytes
		if first == 0 {
			first = s.first
		}
		last = max(last, s.last)
	}
	return records, bytes, first, last, pl.acked
}

// Bytes returns the size of its files.
func (pl *ParkLog) Bytes() int64 {
	_, b, _, _, _ := pl.Stats()
	return b
}

// CreatePark creates the park log of meta's partition in the log's
// directory, or opens it if it exists.
func (l *Log) CreatePark(meta ParkMeta) (*ParkLog, error) {
	l.parksMu.Lock()
	defer l.parksMu.Unlock()
	for _, pl := range l.parks {
		if pl.meta.Name() == meta.Name() && !pl.removed() {
			return pl, nil
		}
	}
	root := filepath.Join(l.dir, ParkDir)
	dir := filepath.Join(root, meta.Name())
	if err := os.MkdirAll(dir, l.opts.DirMode); err != nil {
		return nil, fmt.Errorf("kafkawal: create park log: %w", err)
	}
	if err := writeFileSynced(dir, parkMetaFile, encodeParkMeta(meta), l.opts.FileMode); err != nil {
		return nil, err
	}
	if err := SyncDir(root); err != nil {
		return nil, fmt.Errorf("kafkawal: create park log: %w", err)
	}
	cur, _, err := openCursor(dir, l.opts.FileMode)
	if err != nil {
		return nil, err
	}
	pl := &ParkLog{l: l, dir: dir, meta: meta, cur: cur}
	l.parks = append(l.parks, pl)
	return pl, nil
}

// Parks returns the park logs the log holds: found at Open, or created
// since and not removed.
func (l *Log) Parks() []*ParkLog {
	l.parksMu.Lock()
	defer l.parksMu.Unlock()
	var out []*ParkLog
	for _, pl := range l.parks {
		if !pl.removed() {
			out = append(out, pl)
		}
	}
	return out
}

func (pl *ParkLog) removed() bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.gone
}

// Append adds rec, of original sequence seq, to the log. Records must come
// in increasing sequence order. It is durable and readable once synced:
// by Sync, or when its segment fills and the next one begins; after a
// failed Append or Sync, Abort takes the log back to the last sync.
func (pl *ParkLog) Append(seq uint64, rec *Record) error {
	if last := pl.lastSeq(); seq <= last {
		return fmt.Errorf("kafkawal: park %s: seq %d after %d", pl.meta.Name(), seq, last)
	}
	switch {
	case pl.w == nil:
		if err := pl.open(seq, false); err != nil {
			return err
		}
	case pl.writing() >= pl.l.opts.SegmentBytes:
		if err := pl.Sync(); err != nil {
			return err
		}
		pl.w.Close()
		pl.w = nil
		if err := pl.open(seq, true); err != nil {
			return err
		}
	}
	pl.buf = binary.AppendUvarint(pl.buf, uint64(EncodedLen(rec)+8))
	pl.buf = AppendEncodeParked(pl.buf, seq, rec)
	if pl.wseg.n == 0 && pl.wnew {
		pl.wseg.first = seq
	}
	pl.wseg.last = seq
	pl.wseg.n++
	if len(pl.buf) >= parkFlushBytes {
		return pl.flush()
	}
	return nil
}

// lastSeq is the last sequence appended (synced or not).
func (pl *ParkLog) lastSeq() uint64 {
	if pl.wseg.n > 0 {
		return pl.wseg.last
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if len(pl.segs) == 0 {
		return 0
	}
	return pl.segs[len(pl.segs)-1].last
}

// writing returns the size the segment the writer appends to will have.
func (pl *ParkLog) writing() int64 {
	n := pl.wseg.bytes + int64(len(pl.buf))
	if !pl.wnew {
		pl.mu.Lock()
		n += pl.segs[len(pl.segs)-1].bytes
		pl.mu.Unlock()
	}
	return n
}

// open makes the writer append to the published tail segment, unless
// there is none, it is full, or fresh: then to a new segment named seq.
func (pl *ParkLog) open(seq uint64, fresh bool) error {
	pl.mu.Lock()
	var tail *parkSeg
	if n := len(pl.segs); n > 0 && !fresh && pl.segs[n-1].bytes < pl.l.opts.SegmentBytes {
		t := pl.segs[n-1]
		tail = &t
	}
	pl.mu.Unlock()
	var err error
	if tail != nil {
		pl.w, err = os.OpenFile(filepath.Join(pl.dir, tail.name()), os.O_WRONLY, pl.l.opts.FileMode)
		if err == nil {
			_, err = pl.w.Seek(tail.bytes, io.SeekStart)
		}
		pl.wseg, pl.wnew = parkSeg{}, false
	} else {
		pl.w, err = os.OpenFile(filepath.Join(pl.dir, SegmentName(seq)), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, pl.l.opts.FileMode)
		pl.wseg, pl.wnew = parkSeg{first: seq}, true
	}
	if err != nil {
		if pl.w != nil {
			pl.w.Close()
			pl.w = nil
		}
		return fmt.Errorf("kafkawal: park %s: %w", pl.meta.Name(), err)
	}
	return nil
}

// flush writes the buffered records, reserving their room on disk.
func (pl *ParkLog) flush() error {
	if len(pl.buf) == 0 {
		return nil
	}
	n := int64(len(pl.buf))
	if err := pl.l.disk.reserveParked(n, pl.l.opts.SegmentBytes); err != nil {
		return err
	}
	pl.reserved += n
	if _, err := pl.w.Write(pl.buf); err != nil {
		return fmt.Errorf("kafkawal: park %s: write: %w", pl.meta.Name(), err)
	}
	pl.wseg.bytes += n
	pl.buf = pl.buf[:0]
	return nil
}

// Sync makes what was appended durable and readable.
func (pl *ParkLog) Sync() error {
	if pl.w == nil || pl.wseg.n == 0 {
		return nil
	}
	if err := pl.flush(); err != nil {
		return err
	}
	if err := syscall.Fdatasync(int(pl.w.Fd())); err != nil {
		return fmt.Errorf("kafkawal: park %s: fsync: %w", pl.meta.Name(), err)
	}
	if pl.wnew {
		if err := SyncDir(pl.dir); err != nil {
			return fmt.Errorf("kafkawal: park %s: %w", pl.meta.Name(), err)
		}
	}
	pl.mu.Lock()
	if pl.wnew {
		pl.segs = append(pl.segs, pl.wseg)
	} else {
		t := &pl.segs[len(pl.segs)-1]
		t.last = pl.wseg.last
		t.n += pl.wseg.n
		t.bytes += pl.wseg.bytes
	}
	pl.mu.Unlock()
	pl.l.disk.commit(pl.reserved)
	pl.reserved = 0
	pl.wseg, pl.wnew = parkSeg{}, false
	return nil
}

// Abort drops what was appended since the last Sync: the tail segment is
// cut back to its published size.
func (pl *ParkLog) Abort() {
	pl.buf = pl.buf[:0]
	if pl.reserved > 0 {
		pl.l.disk.release(pl.reserved)
		pl.reserved = 0
	}
	if pl.w != nil {
		name := pl.w.Name()
		pl.w.Close()
		pl.w = nil
		if pl.wnew {
			os.Remove(name)
		} else {
			pl.mu.Lock()
			size := pl.segs[len(pl.segs)-1].bytes
			pl.mu.Unlock()
			os.Truncate(name, size)
		}
	}
	pl.wseg, pl.wnew = parkSeg{}, false
}

// SetAcked persists acked (every parked record with a sequence <= acked
// is delivered) and deletes the segments wholly at or below it, but the
// one the writer appends to.
func (pl *ParkLog) SetAcked(acked uint64) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if acked <= pl.acked || pl.gone {
		return nil
	}
	// A park log publishes only what it synced, so its synced watermark is
	// never behind its cursor: the slot's second field carries acked too.
	if err := pl.cur.store(acked, acked); err != nil {
		return err
	}
	pl.acked = acked
	n := 0
	for n < len(pl.segs)-1 && pl.segs[n].last <= acked {
		n++
	}
	var freed int64
	for _, s := range pl.segs[:n] {
		if err := os.Remove(filepath.Join(pl.dir, s.name())); err != nil && !os.IsNotExist(err) {
			break
		}
		freed += s.bytes
	}
	pl.segs = slices.Delete(pl.segs, 0, n)
	if freed > 0 {
		pl.l.disk.free(freed)
		return SyncDir(pl.dir)
	}
	return nil
}

// Remove deletes the log, whose records must all be delivered. No Append
// may be under way.
func (pl *ParkLog) Remove() error {
	if pl.w != nil {
		pl.w.Close()
		pl.w = nil
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.gone {
		return nil
	}
	var freed int64
	for _, s := range pl.segs {
		freed += s.bytes
	}
	pl.segs = nil
	pl.gone = true
	err := os.RemoveAll(pl.dir)
	if err == nil {
		err = SyncDir(filepath.Dir(pl.dir))
	}
	pl.l.disk.free(freed)
	if err != nil {
		return fmt.Errorf("kafkawal: remove park log %s: %w", pl.meta.Name(), err)
	}
	return nil
}

func (pl *ParkLog) close() {
	if pl.w != nil {
		pl.w.Close()
		pl.w = nil
	}
}

// writeFileSynced writes name in dir through a temporary file, renamed
// over it once synced, and syncs dir.
func writeFileSynced(dir, name string, b []byte, perm os.FileMode) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("kafkawal: write %s: %w", tmp, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err == nil {
		err = SyncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("kafkawal: write %s: %w", filepath.Join(dir, name), err)
	}
	return nil
}

// openParks opens the park logs in the log's directory at Open: a torn
// last record is cut off (kept in quarantine/), segments wholly delivered
// are deleted, and a log with nothing undelivered is removed.
func (l *Log) openParks() (int64, error) {
	root := filepath.Join(l.dir, ParkDir)
	des, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("kafkawal: list park logs: %w", err)
	}
	var total int64
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		pl, err := l.openPark(filepath.Join(root, de.Name()))
		if err != nil {
			return 0, err
		}
		if pl == nil {
			continue
		}
		total += pl.Bytes()
		l.parks = append(l.parks, pl)
	}
	return total, nil
}

func (l *Log) openPark(dir string) (*ParkLog, error) {
	b, err := os.ReadFile(filepath.Join(dir, parkMetaFile))
	if os.IsNotExist(err) {
		// Created, and the crash came before its description was: it
		// never held a record.
		return nil, os.RemoveAll(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("kafkawal: park log %s: %w", dir, err)
	}
	meta, err := decodeParkMeta(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	cur, st, err := openCursor(dir, l.opts.FileMode)
	if err != nil {
		return nil, err
	}
	pl := &ParkLog{l: l, dir: dir, meta: meta, cur: cur, acked: st.Acked}
	segs, _, err := scanParkSegments(dir, st.Acked, func(name string, off int64, cut []byte) error {
		return l.quarantineParked(meta, name, off, cut)
	})
	if err != nil {
		return nil, err
	}
	pl.segs = segs
	// Segments wholly delivered (a crash between the cursor and their
	// deletion), and a log holding nothing undelivered, go now.
	for len(pl.segs) > 0 && pl.segs[0].last <= pl.acked {
		if err := os.Remove(filepath.Join(dir, pl.segs[0].name())); err != nil {
			return nil, fmt.Errorf("kafkawal: park log %s: %w", dir, err)
		}
		pl.segs = pl.segs[1:]
	}
	if len(pl.segs) == 0 {
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("kafkawal: park log %s: %w", dir, err)
		}
		return nil, SyncDir(filepath.Dir(dir))
	}
	return pl, nil
}

// quarantineParked keeps bytes cut off a park segment's tail.
func (l *Log) quarantineParked(meta ParkMeta, seg string, off int64, cut []byte) error {
	qdir := filepath.Join(l.dir, "quarantine")
	if err := os.MkdirAll(qdir, l.opts.DirMode); err != nil {
		return err
	}
	name := fmt.Sprintf("park-%s-%s-%d", meta.Name(), seg, off)
	if err := os.WriteFile(filepath.Join(qdir, name), cut, l.opts.FileMode); err != nil {
		return err
	}
	l.log.Warn().Str("park", meta.Name()).Str("segment", seg).Int64("offset", off).Int("bytes", len(cut)).
		Msg("wal: cut a torn record off a park log (kept in quarantine; it is still in the WAL)")
	return SyncDir(qdir)
}

// listParkSegments returns a park log's segment files in order.
func listParkSegments(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("kafkawal: list park segments: %w", err)
	}
	var names []string
	for _, de := range des {
		n := de.Name()
		if len(n) == 20 && !de.IsDir() && strings.Trim(n, "0123456789") == "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// scanParkSegments checks every record of a park log's segments, counting
// in each those above acked. A torn or damaged tail of the last segment is
// cut off (after cut keeps the bytes), or without cut returned as tail;
// damage elsewhere fails with ErrCorrupt naming the file and offset.
func scanParkSegments(dir string, acked uint64, cut func(name string, off int64, bytes []byte) error) (segs []parkSeg, tail, err error) {
	names, err := listParkSegments(dir)
	if err != nil {
		return nil, nil, err
	}
	var prev uint64
	for i, name := range names {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("kafkawal: park segment %s: %w", path, err)
		}
		s := parkSeg{}
		off := 0
		var bad error
		for off < len(data) {
			size, h := binary.Uvarint(data[off:])
			if h <= 0 || uint64(len(data)-off-h) < size {
				bad = fmt.Errorf("%w: park segment %s: frame at offset %d runs past the end", ErrCorrupt, path, off)
				break
			}
			seq, _, derr := DecodeParked(data[off+h : off+h+int(size)])
			if derr == nil && seq <= prev {
				derr = fmt.Errorf("%w: sequence %d after %d", ErrCorrupt, seq, prev)
			}
			if derr != nil {
				bad = fmt.Errorf("park segment %s offset %d: %w", path, off, derr)
				break
			}
			if s.n == 0 {
				s.first = seq
			}
			s.last, prev = seq, seq
			s.n++
			if seq > acked {
				s.above++
			}
			off += h + int(size)
		}
		if bad != nil {
			switch {
			case i != len(names)-1:
				return nil, nil, bad
			case cut == nil:
				tail = bad
			default:
				if err := cut(name, int64(off), bytes.Clone(data[off:])); err != nil {
					return nil, nil, err
				}
				if err := os.Truncate(path, int64(off)); err != nil {
					return nil, nil, fmt.Errorf("kafkawal: cut park segment %s: %w", path, err)
				}
			}
		}
		s.bytes = int64(off)
		if s.n == 0 {
			if cut != nil {
				if err := os.Remove(path); err != nil {
					return nil, nil, fmt.Errorf("kafkawal: park segment %s: %w", path, err)
				}
			}
			continue
		}
		if want := SegmentName(s.first); want != name {
			return nil, nil, fmt.Errorf("%w: park segment %s starts at sequence %d", ErrCorrupt, path, s.first)
		}
		segs = append(segs, s)
	}
	return segs, tail, nil
}

// ParkReport is what VerifyParks found in one park log.
type ParkReport struct {
	Meta     ParkMeta
	Dir      string
	Segments int
	Records  int   // in its files
	Bytes    int64 // of its files
	// Undelivered counts the records above its cursor: still to be
	// delivered.
	Undelivered int
	First, Last uint64
	Acked       uint64
	// TornTail is damage at the end of its last segment (a crash
	// mid-write): the next Open cuts it off, nothing is lost (the WAL
	// still holds those records).
	TornTail error
	// Err is damage elsewhere (ErrCorrupt, naming the file and offset), or
	// a file that cannot be read.
	Err           error
	CursorDamaged int
}

// VerifyParks checks every record of every park log in a log directory,
// read-only.
func VerifyParks(dir string) ([]ParkReport, error) {
	root := filepath.Join(dir, ParkDir)
	des, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kafkawal: list park logs: %w", err)
	}
	var out []ParkReport
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		r := ParkReport{Dir: filepath.Join(root, de.Name())}
		b, err := os.ReadFile(filepath.Join(r.Dir, parkMetaFile))
		if err == nil {
			r.Meta, err = decodeParkMeta(b)
		}
		if err != nil {
			r.Err = err
			out = append(out, r)
			continue
		}
		st, damaged, err := LoadCursor(r.Dir)
		if err != nil {
			r.Err = err
		}
		r.Acked, r.CursorDamaged = st.Acked, damaged
		segs, tail, err := scanParkSegments(r.Dir, st.Acked, nil)
		if err != nil && r.Err == nil {
			r.Err = err
		}
		r.TornTail = tail
		for _, s := range segs {
			r.Segments++
			r.Records += s.n
			r.Undelivered += s.above
			r.Bytes += s.bytes
			if r.First == 0 {
				r.First = s.first
			}
			r.Last = s.last
		}
		out = append(out, r)
	}
	return out, nil
}

// ParkedBytes returns the size of all park logs.
func (l *Log) ParkedBytes() int64 {
	var n int64
	for _, pl := range l.Parks() {
		n += pl.Bytes()
	}
	return n
}
