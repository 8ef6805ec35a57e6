package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parkMetaT(topic string, partition int32) ParkMeta {
	return ParkMeta{Topic: topic, Partition: partition, Count: 4, Partitioner: "consistent_random"}
}

// readPark reads every record of pl from seq on, a few at a time.
func readPark(t *testing.T, pl *ParkLog, seq uint64, per, maxBytes int) []Entry {
	t.Helper()
	r := pl.NewReader()
	defer r.Close()
	var out []Entry
	var buf []byte
	for {
		var ents []Entry
		var err error
		ents, buf, err = r.ReadInto(seq, make([]Entry, 0, per), buf, maxBytes)
		if err != nil {
			t.Fatalf("ReadInto(%d): %v", seq, err)
		}
		if len(ents) == 0 {
			return out
		}
		for _, e := range ents {
			e.Record = e.Record.Clone() // buf is reused
			out = append(out, e)
		}
		seq = ents[len(ents)-1].Seq + 1
	}
}

// Records appended to a park log are readable after Sync only, in order,
// with their original sequences, from any sequence on and across
// segments; its bytes count against the disk cap; the cursor deletes
// whole delivered segments; Remove deletes the log and frees its bytes.
func TestParkLogAppendReadAck(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{SegmentBytes: 64 << 10, MaxDiskBytes: 1 << 30})
	defer l.Close()
	pl, err := l.CreatePark(parkMetaT("t", 2))
	if err != nil {
		t.Fatal(err)
	}
	disk0 := l.Stats().DiskBytes
	var seqs []uint64
	for i := 0; i < 2000; i++ {
		seq := uint64(10 + 3*i) // sparse, like one partition's records
		r := rec("t", i)
		r.Value = bytes.Repeat([]byte{byte(i)}, 100+i%50)
		if err := pl.Append(seq, &r); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
		if i == 999 {
			// A full segment is synced before the next; the rest of the
			// records wait for Sync.
			if got := readPark(t, pl, 0, 7, 4096); len(got) >= 1000 {
				t.Fatalf("%d records readable before Sync", len(got))
			}
			if err := pl.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := pl.Append(seqs[len(seqs)-1], &Record{Topic: "t"}); err == nil {
		t.Fatal("a record appended out of sequence order")
	}
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, from := range []uint64{0, 10, 11, 3000, seqs[1999], seqs[1999] + 1} {
		got := readPark(t, pl, from, 13, 2000)
		want := 0
		for i, s := range seqs {
			if s >= from {
				if want == 0 {
					want = len(seqs) - i
				}
				break
			}
		}
		if len(got) != want {
			t.Fatalf("from %d: %d records, want %d", from, len(got), want)
		}
		for j, e := range got {
			i := len(seqs) - want + j
			if e.Seq != seqs[i] || len(e.Record.Value) != 100+i%50 || e.Record.Value[0] != byte(i) || e.Record.Partition != int32(i%3) {
				t.Fatalf("from %d: record %d is seq %d (%d bytes), want seq %d", from, j, e.Seq, len(e.Record.Value), seqs[i])
			}
		}
	}
	names, _ := listParkSegments(pl.Dir())
	if len(names) < 3 {
		t.Fatalf("%d park segments of at most 64 KiB for 2000 records of ~150 B", len(names))
	}
	records, parked, first, last, _ := pl.Stats()
	if records != 2000 || first != 10 || last != seqs[1999] || l.Stats().DiskBytes != disk0+parked {
		t.Fatalf("stats: %d records %d..%d, %d bytes; disk %d, was %d", records, first, last, parked, l.Stats().DiskBytes, disk0)
	}
	rec5, err := pl.Lookup(seqs[5])
	if err != nil || rec5.Value[0] != 5 {
		t.Fatalf("Lookup: %v %v", rec5, err)
	}
	if _, err := pl.Lookup(seqs[5] + 1); err == nil {
		t.Fatal("Lookup found a sequence the log does not hold")
	}

	if err := pl.SetAcked(seqs[1500]); err != nil {
		t.Fatal(err)
	}
	after, _ := listParkSegments(pl.Dir())
	if len(after) >= len(names) {
		t.Fatalf("%d segments after acknowledging three quarters, were %d", len(after), len(names))
	}
	if got := readPark(t, pl, 0, 100, 1<<20); len(got) == 0 || got[0].Seq > seqs[1501] || got[len(got)-1].Seq != seqs[1999] {
		t.Fatalf("after SetAcked: %d records from %d", len(got), got[0].Seq)
	}
	if err := pl.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pl.Dir()); !os.IsNotExist(err) {
		t.Fatalf("park dir after Remove: %v", err)
	}
	if d := l.Stats().DiskBytes; d != disk0 {
		t.Fatalf("disk %d after Remove, want %d", d, disk0)
	}
	if len(l.Parks()) != 0 {
		t.Fatal("a removed park log is still listed")
	}
}

// A park log is found again by Open with what was synced; a torn tail is
// cut off and kept in quarantine; segments at or below its cursor are gone
// and a log with nothing undelivered is removed.
func TestParkLogReopen(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, pl *ParkLog) // after 300 records synced, 100 more unsynced
		acked  uint64
		want   int // records found at Open
	}{
		{"clean", func(*testing.T, *ParkLog) {}, 0, 300},
		{"torn tail", func(t *testing.T, pl *ParkLog) {
			names, _ := listParkSegments(pl.Dir())
			f, err := os.OpenFile(filepath.Join(pl.Dir(), names[len(names)-1]), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f.Write([]byte{0x80, 0x10, 1, 2, 3}) // a frame cut short
		}, 0, 300},
		{"zeroed tail", func(t *testing.T, pl *ParkLog) {
			names, _ := listParkSegments(pl.Dir())
			f, err := os.OpenFile(filepath.Join(pl.Dir(), names[len(names)-1]), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f.Write(make([]byte, 64))
		}, 0, 300},
		{"all delivered", func(*testing.T, *ParkLog) {}, 3000, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, Options{SegmentBytes: 64 << 10})
			pl, err := l.CreatePark(parkMetaT("topic.with.dots", PartitionAny))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 400; i++ {
				r := rec("topic.with.dots", i)
				r.Partition = PartitionAny
				if err := pl.Append(uint64(i*7+1), &r); err != nil {
					t.Fatal(err)
				}
				if i == 299 {
					if err := pl.Sync(); err != nil {
						t.Fatal(err)
					}
				}
			}
			pl.Abort() // the last 100 were never synced
			if c.acked > 0 {
				if err := pl.SetAcked(c.acked); err != nil {
					t.Fatal(err)
				}
			}
			c.damage(t, pl)
			l.Close()
			if reps, err := VerifyParks(dir); c.want > 0 && (err != nil || len(reps) != 1 || reps[0].Err != nil ||
				(reps[0].TornTail != nil) != strings.Contains(c.name, "tail")) {
				t.Fatalf("VerifyParks before Open: %+v %v", reps, err)
			}

			l = openT(t, dir, Options{SegmentBytes: 64 << 10})
			defer l.Close()
			parks := l.Parks()
			if c.want == 0 {
				if len(parks) != 0 {
					t.Fatalf("%d park logs, want none", len(parks))
				}
				if _, err := os.Stat(filepath.Join(dir, ParkDir, "topic.with.dots.any")); !os.IsNotExist(err) {
					t.Fatalf("delivered park log still on disk: %v", err)
				}
				return
			}
			if len(parks) != 1 || parks[0].Meta() != parkMetaT("topic.with.dots", PartitionAny) {
				t.Fatalf("park logs %v", parks)
			}
			got := readPark(t, parks[0], 0, 50, 1<<20)
			if len(got) != c.want || got[c.want-1].Seq != uint64((c.want-1)*7+1) {
				t.Fatalf("%d records after reopening, want %d", len(got), c.want)
			}
			// It takes appends again after the cut.
			r := rec("topic.with.dots", 1)
			if err := parks[0].Append(5000, &r); err != nil {
				t.Fatal(err)
			}
			if err := parks[0].Sync(); err != nil {
				t.Fatal(err)
			}
			if got := readPark(t, parks[0], 4000, 10, 1<<20); len(got) != 1 || got[0].Seq != 5000 {
				t.Fatalf("after a new append: %v", got)
			}
			reps, err := VerifyParks(dir)
			if err != nil || len(reps) != 1 || reps[0].Err != nil || reps[0].TornTail != nil || reps[0].Records != c.want+1 || reps[0].Undelivered != c.want+1 {
				t.Fatalf("VerifyParks: %+v %v", reps, err)
			}
		})
	}
}

// Damage inside a park log (not its tail) is found by VerifyParks and
// fails Open, naming the file.
func TestParkLogDamage(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{SegmentBytes: 64 << 10})
	pl, err := l.CreatePark(parkMetaT("t", 0))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1500; i++ {
		r := rec("t", i)
		r.Value = bytes.Repeat([]byte("v"), 100)
		if err := pl.Append(uint64(i+1), &r); err != nil {
			t.Fatal(err)
		}
	}
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	names, _ := listParkSegments(pl.Dir())
	if len(names) < 2 {
		t.Fatalf("%d segments", len(names))
	}
	path := filepath.Join(pl.Dir(), names[0])
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0x40
	os.WriteFile(path, b, 0o600)
	reps, err := VerifyParks(dir)
	if err != nil || len(reps) != 1 || !errors.Is(reps[0].Err, ErrCorrupt) {
		t.Fatalf("VerifyParks: %+v %v", reps, err)
	}
	_, _, err = Open(dir, Options{SegmentBytes: 64 << 10})
	if !errors.Is(err, ErrCorrupt) || !bytes.Contains([]byte(fmt.Sprint(err)), []byte(names[0])) {
		t.Fatalf("Open: %v, want ErrCorrupt naming %s", err, names[0])
	}
}

// The codec's parked version carries the sequence under the checksum.
func TestParkedCodec(t *testing.T) {
	r := rec("t", 1)
	b := AppendEncodeParked(nil, 1<<40+3, &r)
	seq, got, err := DecodeParked(b)
	if err != nil || seq != 1<<40+3 || got.Topic != "t" || string(got.Value) != "value-1" {
		t.Fatalf("DecodeParked: %d %+v %v", seq, got, err)
	}
	if len(b) != EncodedLen(&r)+8 {
		t.Fatalf("%d bytes, want EncodedLen+8 = %d", len(b), EncodedLen(&r)+8)
	}
	b[7] ^= 1 // in the sequence
	if _, _, err := DecodeParked(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a flipped sequence bit: %v", err)
	}
	if _, err := Decode(AppendEncodeParked(nil, 1, &r)); !errors.Is(err, ErrCorrupt) {
		t.Fatal("a parked record decoded as a WAL record")
	}
	if _, _, err := DecodeParked(Encode(&r)); !errors.Is(err, ErrCorrupt) {
		t.Fatal("a WAL record decoded as a parked record")
	}
}
