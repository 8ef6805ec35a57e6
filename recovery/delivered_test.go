package recovery

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kafkawal/kafkawal/wal"
)

// writeCursor stores acked as dir's durable cursor, encoded as wal/cursor.go
// lays it out (written here independently of package wal).
func writeCursor(t testing.TB, dir string, acked uint64) {
	t.Helper()
	b := []byte("KWCU")
	b = append(b, 1)
	b = binary.BigEndian.AppendUint64(b, 1) // generation
	b = binary.BigEndian.AppendUint64(b, acked)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	// The only slot: the log's own (a newer generation, with a synced
	// watermark) would win.
	os.Remove(filepath.Join(dir, wal.CursorFiles[1]))
	writeFile(t, filepath.Join(dir, wal.CursorFiles[0]), b)
	if st, _, err := wal.LoadCursor(dir); err != nil || !st.Found || st.Acked != acked {
		t.Fatalf("writeCursor: wal reads %+v, %v", st, err)
	}
}

// TestRepairDeliveredDamage: damage that lies wholly at or below the
// durable cursor held records Kafka already has. Under the default policy
// (FailOnCorruption) Repair quarantines it anyway, replaces it by holes,
// counts nothing lost, and the log opens; with the cursor one record short
// of the damage, the same damage still fails Repair and changes nothing.
func TestRepairDeliveredDamage(t *testing.T) {
	for _, c := range midLogCases {
		t.Run(c.name, func(t *testing.T) {
			for _, full := range []bool{true, false} {
				if !full && !c.tail {
					continue
				}
				t.Run(fmt.Sprintf("fullscan=%v", full), func(t *testing.T) {
					testDelivered(t, c, full)
				})
			}
		})
	}
}

func testDelivered(t *testing.T, c damageCase, full bool) {
	probe := freshLog(t)
	lay := layout(t, probe)
	w := c.damage(t, lay, bySegment(lay))
	// The last sequence the damage touches: the last lost record, or, for
	// damage that held no record (bytes inserted between records), the
	// record before it.
	var through uint64
	for _, p := range lay {
		if p.seg == w.seg && p.off < w.off {
			through = p.seq
		}
	}
	for _, s := range w.lost {
		through = max(through, s)
	}
	if w.recovered > 0 {
		through++ // the record behind the damaged prefix
	}

	t.Run("cursor_below", func(t *testing.T) {
		if through == 0 {
			t.Skip("damage before the first record: no cursor lies below it")
		}
		dir := freshLog(t)
		mine := layout(t, dir)
		c.damage(t, mine, bySegment(mine))
		writeCursor(t, dir, through-1)
		before := snapshot(t, dir)
		rep, err := Repair(dir, Options{FullScan: full})
		var ce *CorruptionError
		if !errors.As(err, &ce) || ce.Delivered {
			t.Fatalf("Repair with the cursor at %d, below the damage: %v, want undelivered corruption", through-1, err)
		}
		if rep.Cursor != through-1 {
			t.Fatalf("Report.Cursor %d, want %d", rep.Cursor, through-1)
		}
		sameFiles(t, snapshot(t, dir), before)
	})

	t.Run("cursor_at", func(t *testing.T) {
		dir := freshLog(t)
		mine := layout(t, dir)
		c.damage(t, mine, bySegment(mine))
		writeCursor(t, dir, through)
		rep, err := Repair(dir, Options{FullScan: full})
		if w.cutFrom > 0 {
			// A range of unknown size in the last segment: the records
			// cut with it cannot be numbered, so the cursor cannot vouch
			// for them.
			if !errors.Is(err, wal.ErrCorrupt) {
				t.Fatalf("Repair of a range of unknown size: %v, want ErrCorrupt", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Repair of damage at or below the cursor: %v", err)
		}
		if ce := rep.Corruption(); ce == nil || !ce.Delivered || rep.Undelivered() != nil {
			t.Fatalf("damage %v: want it found and marked delivered", rep.Damage)
		}
		if rep.LostRecords != 0 || rep.DeliveredRecords != int64(len(w.lost)) || rep.RecoveredRecords != w.recovered {
			t.Fatalf("lost %d, delivered %d, recovered %d; want 0, %d, %d",
				rep.LostRecords, rep.DeliveredRecords, rep.RecoveredRecords, len(w.lost), w.recovered)
		}
		if rep.QuarantinedBytes != w.quarantined {
			t.Fatalf("QuarantinedBytes %d, want %d", rep.QuarantinedBytes, w.quarantined)
		}
		holes := map[uint64]bool{}
		for _, s := range w.lost {
			holes[s] = true
		}
		entries, err := readBack(t, dir, walOpts)
		if err != nil {
			t.Fatalf("after repair: %v", err)
		}
		checkEntries(t, entries, len(lay), holes)
		assertClean(t, dir)
	})
}

// TestRepairDeliveredUnnumberable: a sealed segment whose entries cannot be
// numbered is refused under every policy, unless the whole segment lies at
// or below the cursor: then every entry of it becomes a hole (none is
// needed again) and the whole file goes to quarantine.
func TestRepairDeliveredUnnumberable(t *testing.T) {
	dir := freshLog(t)
	g := bySegment(layout(t, dir))
	e := g[1][10]
	b := readFile(t, e.seg)
	writeFile(t, e.seg, slices.Concat(b[:e.off+e.framed], b[e.off:])) // an entry duplicated
	damaged := readFile(t, e.seg)
	segLast := g[1][len(g[1])-1].seq

	writeCursor(t, dir, segLast-1)
	before := snapshot(t, dir)
	if _, err := Repair(dir, Options{Policy: QuarantineCorruption, FullScan: true}); !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("cursor inside the segment: %v, want ErrCorrupt", err)
	}
	sameFiles(t, snapshot(t, dir), before)

	writeCursor(t, dir, segLast)
	rep, err := Repair(dir, Options{FullScan: true})
	if err != nil {
		t.Fatalf("cursor at the segment's end: %v", err)
	}
	if rep.LostRecords != 0 || rep.DeliveredRecords != int64(len(g[1])) || rep.QuarantinedBytes != int64(len(damaged)) {
		t.Fatalf("report %+v; want %d delivered records, %d bytes quarantined, none lost", rep, len(g[1]), len(damaged))
	}
	q := readFile(t, rep.Quarantined[0])
	if !slices.Equal(q, damaged) {
		t.Fatal("quarantine does not hold the whole damaged segment")
	}
	holes := map[uint64]bool{}
	for _, p := range g[1] {
		holes[p.seq] = true
	}
	entries, err := readBack(t, dir, walOpts)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range g {
		n += len(s)
	}
	checkEntries(t, entries, n, holes)
	assertClean(t, dir)
	if _, err := os.Stat(e.seg); err != nil {
		t.Fatal(err)
	}
}
