package recovery

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafkawal/kafkawal/wal"
)

// writeCursorSynced makes dir's cursor acked, with the synced watermark
// synced (a version-2 slot, as wal writes it), in the only slot.
func writeCursorSynced(t testing.TB, dir string, acked, synced uint64) {
	t.Helper()
	b := []byte("KWCU")
	b = append(b, 2)
	b = binary.BigEndian.AppendUint64(b, 1) // generation
	b = binary.BigEndian.AppendUint64(b, acked)
	b = binary.BigEndian.AppendUint64(b, synced)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	os.Remove(filepath.Join(dir, wal.CursorFiles[1]))
	writeFile(t, filepath.Join(dir, wal.CursorFiles[0]), b)
	if st, _, err := wal.LoadCursor(dir); err != nil || st.Acked != acked || !st.SyncedKnown || st.Synced != synced {
		t.Fatalf("writeCursorSynced: wal reads %+v, %v", st, err)
	}
}

// zeroEntries zeroes entries [from, to) of one segment: writes that never
// reached the disk before later ones that did (what the SyncPeriodic
// run left: "zero-filled: 1176 bytes" with intact records behind).
func zeroEntries(t testing.TB, es []pos, from, to int) {
	t.Helper()
	b := readFile(t, es[from].seg)
	start, end := es[from].off, es[to-1].off+es[to-1].framed
	clear(b[start:end])
	writeFile(t, es[from].seg, b)
}

// TestRepairUnsyncedDamage: damage in the last segment after the synced
// watermark is what a power loss leaves; Repair cuts it with everything
// behind it under every policy, keeps it in quarantine and counts the
// intact records it cut. The same damage in data the watermark says was
// fsync'd still fails Repair under FailOnCorruption, and without a
// watermark (a cursor written before it existed) damage is judged as
// before.
func TestRepairUnsyncedDamage(t *testing.T) {
	type tc struct {
		name string
		// damage breaks the last segment's entries es and returns the
		// index of the first damaged one.
		damage func(t *testing.T, es []pos) int
		// synced is the watermark as an index into es (-1: below the
		// segment; no watermark when noMark).
		synced int
		noMark bool
		// fails: FailOnCorruption refuses it.
		fails bool
	}
	zeroTwo := func(t *testing.T, es []pos) int { zeroEntries(t, es, 20, 22); return 20 }
	flipOne := func(t *testing.T, es []pos) int { flip(t, es[20].seg, es[20].off+es[20].framed-1, 0x01); return 20 }
	for _, c := range []tc{
		{name: "zeroed_entries_after_the_watermark", damage: zeroTwo, synced: 10},
		{name: "zeroed_entries_right_after_the_watermark", damage: zeroTwo, synced: 19},
		{name: "checksum_after_the_watermark", damage: flipOne, synced: 10},
		{name: "watermark_below_the_segment", damage: zeroTwo, synced: -1},
		{name: "zeroed_entries_at_the_watermark", damage: zeroTwo, synced: 20, fails: true},
		{name: "checksum_before_the_watermark", damage: flipOne, synced: 30, fails: true},
		{name: "no_watermark", damage: zeroTwo, noMark: true, fails: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := freshLog(t)
			g := bySegment(layout(t, dir))
			es := g[len(g)-1]
			switch {
			case c.noMark:
				writeCursor(t, dir, 0)
			case c.synced < 0:
				writeCursorSynced(t, dir, 0, es[0].seq-1)
			default:
				writeCursorSynced(t, dir, 0, es[c.synced].seq)
			}
			first := c.damage(t, es)
			before := snapshot(t, dir)
			rep, err := Repair(dir, Options{})
			if c.fails {
				var ce *CorruptionError
				if !errors.As(err, &ce) || ce.Unsynced || ce.Seq != es[first].seq {
					t.Fatalf("Repair: %v, want mid-log corruption at seq %d", err, es[first].seq)
				}
				sameFiles(t, snapshot(t, dir), before)
				return
			}
			if err != nil {
				t.Fatalf("Repair: %v", err)
			}
			behind := int64(len(es) - first - 1)
			if flipOne := c.name == "checksum_after_the_watermark"; !flipOne {
				behind = int64(len(es) - first - 2)
			}
			if rep.TornTailRepairs != 1 || rep.LostRecords != 0 || rep.UnsyncedRecords != behind ||
				rep.LastSeq != es[first].seq-1 || !rep.Damage[0].Unsynced {
				t.Fatalf("report %+v, want one unsynced cut at seq %d with %d records behind", rep, es[first].seq, behind)
			}
			if len(rep.Quarantined) != 1 || !strings.HasSuffix(rep.Quarantined[0], ".unsynced") {
				t.Fatalf("quarantined %v, want one .unsynced file", rep.Quarantined)
			}
			entries, err := readBack(t, dir, walOpts)
			if err != nil {
				t.Fatal(err)
			}
			checkEntries(t, entries, int(es[first].seq-1), nil)
			// Nothing is left to repair.
			if again, err := Repair(dir, Options{}); err != nil || repaired(again) {
				t.Fatalf("second Repair: %+v, %v", again, err)
			}
		})
	}
}
