package recovery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal/wal"
)

// bySegment groups an undamaged log's layout by segment, in order.
func bySegment(lay []pos) [][]pos {
	var out [][]pos
	for i, p := range lay {
		if i == 0 || p.seg != lay[i-1].seg {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], p)
	}
	return out
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func flip(t testing.TB, path string, off int64, mask byte) {
	t.Helper()
	b := readFile(t, path)
	b[off] ^= mask
	writeFile(t, path, b)
}

func cut(t testing.TB, path string, n int64) {
	t.Helper()
	if err := os.Truncate(path, n); err != nil {
		t.Fatal(err)
	}
}

func appendTo(t testing.TB, path string, b []byte) {
	t.Helper()
	writeFile(t, path, append(readFile(t, path), b...))
}

// assertClean fails unless Repair now finds nothing to do and Scan finds
// nothing wrong: repair never runs twice.
func assertClean(t testing.TB, dir string) {
	t.Helper()
	before := snapshot(t, dir)
	rep, err := Repair(dir, Options{FullScan: true})
	if err != nil || repaired(rep) || len(rep.Damage) > 0 {
		t.Fatalf("second Repair: repaired=%v damage=%v err=%v", repaired(rep), rep.Damage, err)
	}
	sameFiles(t, snapshot(t, dir), before)
	if _, err := Scan(dir, ScanOptions{}); err != nil {
		t.Fatalf("Scan after repair: %v", err)
	}
}

// TestRepairTornTailEveryOffset cuts the last segment at every byte offset
// of its last two records, as a crash in the middle of a write would.
func TestRepairTornTailEveryOffset(t *testing.T) {
	lay := layout(t, templateLog(t))
	n := len(lay)
	a, b := lay[n-2], lay[n-1]
	if a.seg != b.seg || a.off+a.framed != b.off {
		t.Fatalf("template: the last two records are not adjacent in one segment")
	}
	if a.prefix != 2 || b.prefix != 2 {
		t.Fatalf("template: want two-byte length prefixes on the last two records")
	}
	name := filepath.Base(b.seg)
	end := b.off + b.framed
	for at := a.off; at < end; at++ {
		t.Run(fmt.Sprintf("cut=%d", at), func(t *testing.T) {
			t.Parallel()
			dir := freshLog(t)
			seg := filepath.Join(dir, wal.SegmentsDir, name)
			orig := readFile(t, seg)
			cut(t, seg, at)
			survivors := n - 2
			start := a.off
			if at >= b.off {
				survivors, start = n-1, b.off
			}
			torn := at != start // a cut on a record boundary leaves nothing torn

			rep, err := Repair(dir, Options{})
			if err != nil {
				t.Fatalf("Repair: %v", err)
			}
			if got := rep.TornTailRepairs; got != map[bool]int{true: 1}[torn] {
				t.Fatalf("TornTailRepairs %d, torn %v", got, torn)
			}
			if torn {
				if len(rep.Damage) != 1 || !rep.Damage[0].TornTail || rep.Damage[0].Offset != start ||
					rep.Damage[0].Segment != seg || rep.Damage[0].Seq != uint64(survivors+1) {
					t.Fatalf("damage %v, want a torn tail at %s offset %d seq %d", rep.Damage, seg, start, survivors+1)
				}
				q := filepath.Join(dir, QuarantineDir, fmt.Sprintf("%s.%d.torn", name, start))
				if got := readFile(t, q); !bytes.Equal(got, orig[start:at]) {
					t.Fatalf("quarantine holds %d bytes, want the %d cut", len(got), at-start)
				}
				if rep.QuarantinedBytes != at-start || !slices.Equal(rep.Quarantined, []string{q}) {
					t.Fatalf("report: quarantined %v, %d bytes", rep.Quarantined, rep.QuarantinedBytes)
				}
				if fi, err := os.Stat(q); err != nil || fi.Mode().Perm() != 0o600 {
					t.Fatalf("quarantine file mode: %v %v", fi.Mode(), err)
				}
			}
			if rep.LastSeq != uint64(survivors) || rep.LostRecords != 0 {
				t.Fatalf("LastSeq %d LostRecords %d, want %d and 0", rep.LastSeq, rep.LostRecords, survivors)
			}
			entries, err := readBack(t, dir, walOpts)
			if err != nil {
				t.Fatalf("after repair: %v", err)
			}
			checkEntries(t, entries, survivors, nil)
			assertClean(t, dir)
		})
	}
}

// TestRepairZeroFilledTail covers a file extended by a crash whose data
// never reached the disk: zeros, which tidwall/wal alone would load as
// empty entries.
func TestRepairZeroFilledTail(t *testing.T) {
	lay := layout(t, templateLog(t))
	n := len(lay)
	last := lay[n-1]
	cases := []struct {
		name      string
		zeros     int64
		overwrite bool // zero the end of the file instead of extending it
		survivors int
	}{
		{"append_1", 1, false, n},
		{"append_16", 16, false, n},
		{"append_4096", 4096, false, n},
		{"zero_last_record", last.framed, true, n - 1},
		{"zero_last_300_bytes", 300, true, countBefore(lay, last.off+last.framed-300)},
	}
	for _, c := range cases {
		for _, full := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/fullscan=%v", c.name, full), func(t *testing.T) {
				dir := freshLog(t)
				seg := filepath.Join(dir, wal.SegmentsDir, filepath.Base(last.seg))
				b := readFile(t, seg)
				if c.overwrite {
					clear(b[int64(len(b))-c.zeros:])
				} else {
					b = append(b, make([]byte, c.zeros)...)
				}
				writeFile(t, seg, b)
				good := lay[c.survivors-1].off + lay[c.survivors-1].framed

				rep, err := Repair(dir, Options{FullScan: full})
				if err != nil {
					t.Fatalf("Repair: %v", err)
				}
				if rep.TornTailRepairs != 1 || rep.QuarantinedBytes != int64(len(b))-good || rep.LostRecords != 0 {
					t.Fatalf("report %+v", rep)
				}
				if q := readFile(t, rep.Quarantined[0]); !bytes.Equal(q, b[good:]) {
					t.Fatalf("quarantine holds %d bytes, want the %d cut", len(q), int64(len(b))-good)
				}
				entries, err := readBack(t, dir, walOpts)
				if err != nil {
					t.Fatalf("after repair: %v", err)
				}
				checkEntries(t, entries, c.survivors, nil)
				assertClean(t, dir)
			})
		}
	}
}

// countBefore is how many records end at or before off.
func countBefore(lay []pos, off int64) int {
	seg := lay[len(lay)-1].seg
	n := 0
	for _, p := range lay {
		if p.seg != seg || p.off+p.framed <= off {
			n++
		}
	}
	return n
}

// TestRepairThroughBeforeOpen runs Repair the way the producer does: as
// wal's BeforeOpen hook, under the directory lock.
func TestRepairThroughBeforeOpen(t *testing.T) {
	dir := freshLog(t)
	lay := layout(t, dir)
	cut(t, lay[len(lay)-1].seg, lay[len(lay)-1].off+3)
	if _, err := readBack(t, dir, walOpts); !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("wal.Open on a torn tail without recovery: %v, want ErrCorrupt", err)
	}
	entries, err := readBack(t, dir, repairHook(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, entries, len(lay)-1, nil)

	// Appending after the repair continues the numbering.
	l, _, err := wal.Open(dir, repairHook(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	seq, err := l.Append(t.Context(), []wal.Record{testRecord(len(lay) - 1)})
	if err != nil || seq != uint64(len(lay)) {
		t.Fatalf("Append after repair: seq %d err %v, want %d", seq, err, len(lay))
	}
	l.Close()
	entries, err = readBack(t, dir, repairHook(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, entries, len(lay), nil)
}

// damageCase is one named damage to a log and what it must cost.
type damageCase struct {
	name string
	// tail is set when the damage is in the last segment, which Repair
	// checks even without FullScan.
	tail bool
	// damage breaks the log in dir (layout lay, grouped by segment in g)
	// and says what must be found and lost.
	damage func(t *testing.T, lay []pos, g [][]pos) want
}

type want struct {
	seg string // where FailOnCorruption reports the first damage
	off int64
	// lost are the sequences that come back as holes.
	lost []uint64
	// cutFrom, when set, is the first sequence a last-segment cut removes;
	// LostRecords is then a lower bound, lostAtLeast.
	cutFrom     uint64
	lostAtLeast int64
	// quarantined is how many bytes go to quarantine.
	quarantined int64
	// recovered counts records kept behind a rewritten length prefix.
	recovered int64
}

func seqs(ps []pos) []uint64 {
	var out []uint64
	for _, p := range ps {
		out = append(out, p.seq)
	}
	return out
}

var midLogCases = []damageCase{
	{"payload_bit_flip", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e := g[1][10]
		flip(t, e.seg, e.off+e.framed-1, 0x01)
		return want{seg: e.seg, off: e.off, lost: []uint64{e.seq}, quarantined: e.framed}
	}},
	{"checksum_byte_flip", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e := g[1][3]
		flip(t, e.seg, e.off+e.prefix, 0x10)
		return want{seg: e.seg, off: e.off, lost: []uint64{e.seq}, quarantined: e.framed}
	}},
	{"version_byte_flip", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e := g[1][4]
		flip(t, e.seg, e.off+e.prefix+4, 0x02)
		return want{seg: e.seg, off: e.off, lost: []uint64{e.seq}, quarantined: e.framed}
	}},
	{"length_prefix_low_bit", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e := g[1][10]
		flip(t, e.seg, e.off, 0x01)
		return want{seg: e.seg, off: e.off, quarantined: e.framed, recovered: 1}
	}},
	{"length_prefix_continuation_bit", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e := g[1][11]
		flip(t, e.seg, e.off, 0x80)
		return want{seg: e.seg, off: e.off, quarantined: e.framed, recovered: 1}
	}},
	{"length_prefix_and_payload", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e := g[1][12]
		flip(t, e.seg, e.off, 0x04)
		flip(t, e.seg, e.off+e.framed-2, 0x04)
		return want{seg: e.seg, off: e.off, lost: []uint64{e.seq}, quarantined: e.framed}
	}},
	{"two_payload_flips_one_segment", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e, f := g[1][10], g[1][15]
		flip(t, e.seg, e.off+e.framed-1, 0x01)
		flip(t, f.seg, f.off+f.framed-1, 0x01)
		return want{seg: e.seg, off: e.off, lost: []uint64{e.seq, f.seq}, quarantined: e.framed + f.framed}
	}},
	{"broken_framing_and_payload_flip_one_segment", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e, f := g[1][10], g[1][15]
		flip(t, e.seg, e.off, 0x01)
		flip(t, e.seg, e.off+e.framed-1, 0x01)
		flip(t, f.seg, f.off+f.framed-1, 0x01)
		return want{seg: e.seg, off: e.off, lost: []uint64{e.seq, f.seq}, quarantined: e.framed + f.framed}
	}},
	{"flips_in_two_segments", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e, f := g[0][5], g[2][7]
		flip(t, e.seg, e.off+e.framed-1, 0x40)
		flip(t, f.seg, f.off+f.framed-1, 0x40)
		return want{seg: e.seg, off: e.off, lost: []uint64{e.seq, f.seq}, quarantined: e.framed + f.framed}
	}},
	{"zeroed_sector_mid_segment", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e := g[1][10]
		from, to := e.off+5, e.off+5+512
		b := readFile(t, e.seg)
		clear(b[from:to])
		writeFile(t, e.seg, b)
		var lost []pos
		for _, p := range g[1] {
			if p.off < to && p.off+p.framed > from {
				lost = append(lost, p)
			}
		}
		last := lost[len(lost)-1]
		return want{seg: e.seg, off: e.off, lost: seqs(lost), quarantined: last.off + last.framed - e.off}
	}},
	{"sealed_segment_cut_mid_record", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e := g[1][20]
		cut(t, e.seg, e.off+7)
		return want{seg: e.seg, off: e.off, lost: seqs(g[1][20:]), quarantined: 7}
	}},
	{"sealed_segment_cut_at_record_boundary", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e := g[1][20]
		cut(t, e.seg, e.off)
		return want{seg: e.seg, off: e.off, lost: seqs(g[1][20:])}
	}},
	{"sealed_segment_zeroed", false, func(t *testing.T, lay []pos, g [][]pos) want {
		b := readFile(t, g[1][0].seg)
		writeFile(t, g[1][0].seg, make([]byte, len(b)))
		return want{seg: g[1][0].seg, off: 0, lost: seqs(g[1]), quarantined: int64(len(b))}
	}},
	{"sealed_segment_missing", false, func(t *testing.T, lay []pos, g [][]pos) want {
		if err := os.Remove(g[1][0].seg); err != nil {
			t.Fatal(err)
		}
		prev := g[0][len(g[0])-1]
		return want{seg: prev.seg, off: prev.off + prev.framed, lost: seqs(g[1])}
	}},
	{"garbage_appended_to_sealed_segment", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e := g[1][len(g[1])-1]
		appendTo(t, e.seg, bytes.Repeat([]byte{0xab}, 100))
		return want{seg: e.seg, off: e.off + e.framed, quarantined: 100}
	}},
	{"zeros_appended_to_sealed_segment", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e := g[1][len(g[1])-1]
		appendTo(t, e.seg, make([]byte, 16))
		return want{seg: e.seg, off: e.off + e.framed, quarantined: 16}
	}},
	{"bytes_inserted_between_records", false, func(t *testing.T, lay []pos, g [][]pos) want {
		e := g[1][10]
		b := readFile(t, e.seg)
		at := e.off + e.framed
		writeFile(t, e.seg, slices.Concat(b[:at], []byte{0xff, 0xff, 0xff, 1, 2, 3, 4}, b[at:]))
		return want{seg: e.seg, off: at, quarantined: 7}
	}},
	{"last_segment_payload_flip", true, func(t *testing.T, lay []pos, g [][]pos) want {
		last := g[len(g)-1]
		e := last[len(last)-5]
		flip(t, e.seg, e.off+e.framed-1, 0x01)
		return want{seg: e.seg, off: e.off, lost: []uint64{e.seq}, quarantined: e.framed}
	}},
	{"last_segment_zeroed_range_then_records", true, func(t *testing.T, lay []pos, g [][]pos) want {
		last := g[len(g)-1]
		e := last[len(last)-5]
		b := readFile(t, e.seg)
		clear(b[e.off : e.off+e.framed+10])
		writeFile(t, e.seg, b)
		// The zeroed range held two records; the three after it are intact.
		return want{seg: e.seg, off: e.off, cutFrom: e.seq, lostAtLeast: 1 + 3, quarantined: int64(len(b)) - e.off}
	}},
	{"last_segment_length_prefix_flip", true, func(t *testing.T, lay []pos, g [][]pos) want {
		last := g[len(g)-1]
		e := last[len(last)-5]
		flip(t, e.seg, e.off, 0x02)
		return want{seg: e.seg, off: e.off, quarantined: e.framed, recovered: 1}
	}},
}

// TestRepairMidLog damages the log in the middle and checks both policies:
// FailOnCorruption names the place and changes nothing; QuarantineCorruption
// loses exactly the damaged records, as holes, and every other record keeps
// its sequence.
func TestRepairMidLog(t *testing.T) {
	for _, c := range midLogCases {
		t.Run(c.name, func(t *testing.T) {
			t.Run("fail", func(t *testing.T) {
				dir := freshLog(t)
				lay := layout(t, dir)
				w := c.damage(t, lay, bySegment(lay))
				before := snapshot(t, dir)
				_, err := Repair(dir, Options{FullScan: true})
				var ce *CorruptionError
				if !errors.As(err, &ce) || !errors.Is(err, wal.ErrCorrupt) {
					t.Fatalf("Repair: %v, want a *CorruptionError matching wal.ErrCorrupt", err)
				}
				if ce.Segment != w.seg || ce.Offset != w.off || ce.TornTail {
					t.Fatalf("Repair: %v, want mid-log corruption in %s at offset %d", ce, w.seg, w.off)
				}
				sameFiles(t, snapshot(t, dir), before)
				if _, err := readBack(t, dir, repairHook(Options{FullScan: true})); !errors.As(err, &ce) {
					t.Fatalf("wal.Open with FailOnCorruption: %v, want the *CorruptionError", err)
				}
				sameFiles(t, snapshot(t, dir), before)
			})
			for _, full := range []bool{true, false} {
				if !full && !c.tail {
					continue
				}
				t.Run(fmt.Sprintf("quarantine/fullscan=%v", full), func(t *testing.T) {
					testQuarantine(t, c, full)
				})
			}
		})
	}
}

func testQuarantine(t *testing.T, c damageCase, full bool) {
	dir := freshLog(t)
	lay := layout(t, dir)
	w := c.damage(t, lay, bySegment(lay))
	rep, err := Repair(dir, Options{Policy: QuarantineCorruption, FullScan: full})
	if err != nil {
		t.Fatalf("Repair: %v", err)
	}
	wantLost := int64(len(w.lost))
	n := len(lay)
	if w.cutFrom > 0 {
		wantLost = w.lostAtLeast
		n = int(w.cutFrom) - 1
	}
	if rep.LostRecords != wantLost || rep.LostAtLeast != (w.cutFrom > 0) || rep.RecoveredRecords != w.recovered {
		t.Fatalf("LostRecords %d (at least: %v), recovered %d; want %d (%v), %d",
			rep.LostRecords, rep.LostAtLeast, rep.RecoveredRecords, wantLost, w.cutFrom > 0, w.recovered)
	}
	if rep.QuarantinedBytes != w.quarantined {
		t.Fatalf("QuarantinedBytes %d, want %d", rep.QuarantinedBytes, w.quarantined)
	}
	if rep.RewrittenSegments == 0 || rep.TornTailRepairs != 0 {
		t.Fatalf("report %+v", rep)
	}
	if rep.LastSeq != uint64(n) {
		t.Fatalf("LastSeq %d, want %d", rep.LastSeq, n)
	}
	holes := map[uint64]bool{}
	for _, s := range w.lost {
		holes[s] = true
	}
	entries, err := readBack(t, dir, walOpts)
	if err != nil {
		t.Fatalf("after repair: %v", err)
	}
	checkEntries(t, entries, n, holes)
	assertClean(t, dir)
}

// TestRepairTailOnlySkipsSealed shows what the Open-time default leaves to
// the reader: damage in a sealed segment is not read at Open, and reading
// it fails with ErrCorrupt instead of yielding the record.
func TestRepairTailOnlySkipsSealed(t *testing.T) {
	dir := freshLog(t)
	lay := layout(t, dir)
	e := bySegment(lay)[1][10]
	flip(t, e.seg, e.off+e.framed-1, 0x01)
	rep, err := Repair(dir, Options{})
	if err != nil || repaired(rep) || rep.CheckedSegments != 1 {
		t.Fatalf("tail-only Repair: %+v, %v", rep, err)
	}
	entries, err := readBack(t, dir, walOpts)
	if !errors.Is(err, wal.ErrCorrupt) || len(entries) != int(e.seq-1) {
		t.Fatalf("read past damage: %d entries, err %v; want %d and ErrCorrupt", len(entries), err, e.seq-1)
	}
}

// TestRepairRefusesUnnumberable: when a sealed segment's entries cannot be
// given their sequences, even QuarantineCorruption changes nothing.
func TestRepairRefusesUnnumberable(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, g [][]pos)
	}{
		{"entry_duplicated", func(t *testing.T, g [][]pos) {
			e := g[1][10]
			b := readFile(t, e.seg)
			writeFile(t, e.seg, slices.Concat(b[:e.off+e.framed], b[e.off:]))
		}},
		{"two_ranges_of_unknown_size", func(t *testing.T, g [][]pos) {
			for _, e := range []pos{g[1][10], g[1][20]} {
				b := readFile(t, e.seg)
				clear(b[e.off+3 : e.off+e.framed+5])
				writeFile(t, e.seg, b)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := freshLog(t)
			c.damage(t, bySegment(layout(t, dir)))
			before := snapshot(t, dir)
			for _, p := range []Policy{FailOnCorruption, QuarantineCorruption} {
				_, err := Repair(dir, Options{Policy: p, FullScan: true})
				if !errors.Is(err, wal.ErrCorrupt) {
					t.Fatalf("%v: Repair: %v, want ErrCorrupt", p, err)
				}
				sameFiles(t, snapshot(t, dir), before)
			}
		})
	}
}

// TestRepairQuarantineNames: the same offset torn by two crashes keeps both
// copies; a copy a crashed repair already wrote is reused.
func TestRepairQuarantineNames(t *testing.T) {
	dir := freshLog(t)
	lay := layout(t, dir)
	last := lay[len(lay)-1]
	end := last.off + last.framed
	name := filepath.Join(dir, QuarantineDir, fmt.Sprintf("%s.%d.torn", filepath.Base(last.seg), end))
	for i, tc := range []struct {
		garbage []byte
		file    string
	}{
		{[]byte{0x90}, name},
		{[]byte{0x91, 0x01}, name + ".1"},
		{[]byte{0x90}, name}, // same bytes as the first: reused
	} {
		appendTo(t, last.seg, tc.garbage)
		rep, err := Repair(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rep.Quarantined, []string{tc.file}) || !bytes.Equal(readFile(t, tc.file), tc.garbage) {
			t.Fatalf("round %d: quarantined %v", i, rep.Quarantined)
		}
	}
	des, _ := os.ReadDir(filepath.Join(dir, QuarantineDir))
	if len(des) != 2 {
		t.Fatalf("%d quarantine files, want 2", len(des))
	}
	if fi, err := os.Stat(filepath.Join(dir, QuarantineDir)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("quarantine dir mode %v, %v", fi.Mode(), err)
	}
}

// TestRepairNothingToDo: clean logs, new directories, empty trailing
// segments (left by a rotation) and temp files of a crashed rewrite.
func TestRepairNothingToDo(t *testing.T) {
	t.Run("clean", func(t *testing.T) {
		assertClean(t, freshLog(t))
	})
	t.Run("new_directory", func(t *testing.T) {
		dir := t.TempDir()
		rep, err := Repair(dir, Options{})
		if err != nil || repaired(rep) {
			t.Fatalf("%+v %v", rep, err)
		}
		entries, err := readBack(t, dir, repairHook(Options{}))
		if err != nil || len(entries) != 0 {
			t.Fatalf("%d entries, %v", len(entries), err)
		}
	})
	t.Run("empty_trailing_segment", func(t *testing.T) {
		dir := freshLog(t)
		writeFile(t, filepath.Join(dir, wal.SegmentsDir, wal.SegmentName(templateRecords+1)), nil)
		assertClean(t, dir)
		rep, err := Scan(dir, ScanOptions{TailOnly: true})
		if err != nil || rep.CheckedSegments != 2 || rep.LastSeq != templateRecords {
			t.Fatalf("tail scan: %+v %v", rep, err)
		}
		entries, err := readBack(t, dir, walOpts)
		if err != nil {
			t.Fatal(err)
		}
		checkEntries(t, entries, templateRecords, nil)
	})
	t.Run("stale_rewrite_temp", func(t *testing.T) {
		dir := freshLog(t)
		tmp := filepath.Join(dir, wal.SegmentsDir, wal.SegmentName(1)+tempSuffix)
		writeFile(t, tmp, []byte("half a rewrite"))
		if _, err := Repair(dir, Options{}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(tmp); !os.IsNotExist(err) {
			t.Fatalf("temp file still there: %v", err)
		}
		assertClean(t, dir)
	})
}

func TestScanReport(t *testing.T) {
	dir := freshLog(t)
	segs, err := wal.ListSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, s := range segs {
		total += s.Bytes
	}
	var calls []int64
	rep, err := Scan(dir, ScanOptions{Progress: func(done, all int64) {
		if all != total {
			t.Errorf("progress total %d, want %d", all, total)
		}
		calls = append(calls, done)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Segments != len(segs) || rep.CheckedSegments != len(segs) || rep.Bytes != total || rep.CheckedBytes != total ||
		rep.Records != templateRecords || rep.Holes != 0 || rep.FirstSeq != 1 || rep.LastSeq != templateRecords || len(rep.Damage) != 0 {
		t.Fatalf("report %+v", rep)
	}
	if len(calls) != len(segs) || !slices.IsSorted(calls) || calls[len(calls)-1] != total {
		t.Fatalf("progress calls %v", calls)
	}
	rep, err = Scan(dir, ScanOptions{TailOnly: true})
	if err != nil || rep.CheckedSegments != 1 || rep.Segments != len(segs) || rep.LastSeq != templateRecords {
		t.Fatalf("tail-only report %+v, %v", rep, err)
	}

	// Scan reports every damaged range, the first as its error, and
	// changes nothing.
	g := bySegment(layout(t, dir))
	e, f := g[0][1], g[len(g)-1][len(g[len(g)-1])-1]
	flip(t, e.seg, e.off+e.framed-1, 1)
	cut(t, f.seg, f.off+2)
	before := snapshot(t, dir)
	rep, err = Scan(dir, ScanOptions{})
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.Offset != e.off || ce.Seq != e.seq || ce.TornTail {
		t.Fatalf("Scan: %v", err)
	}
	if len(rep.Damage) != 2 || !rep.Damage[1].TornTail || rep.Damage[1].Seq != f.seq || rep.Corruption() != ce {
		t.Fatalf("damage %v", rep.Damage)
	}
	if rep.Records != templateRecords-2 || rep.LastSeq != templateRecords-1 {
		t.Fatalf("report %+v", rep)
	}
	sameFiles(t, snapshot(t, dir), before)
}

func TestOptionsValidate(t *testing.T) {
	if err := (Options{Policy: 7}).Validate(); err == nil {
		t.Fatal("unknown policy accepted")
	}
	if _, err := Repair(t.TempDir(), Options{FileMode: 0o1777}); err == nil {
		t.Fatal("FileMode with non-permission bits accepted")
	}
}

// TestRepairLogs: quiet when healthy; one event with stable message and
// fields per repair.
func TestRepairLogs(t *testing.T) {
	var buf bytes.Buffer
	logger := zerolog.New(&buf)
	dir := freshLog(t)
	if _, err := Repair(dir, Options{Logger: &logger, FullScan: true}); err != nil || buf.Len() > 0 {
		t.Fatalf("healthy log: err %v, logged %q", err, buf.String())
	}
	g := bySegment(layout(t, dir))
	e, f := g[1][2], g[len(g)-1][len(g[len(g)-1])-1]
	flip(t, e.seg, e.off+e.framed-1, 1)
	cut(t, f.seg, f.off+f.framed-1)
	if _, err := Repair(dir, Options{Logger: &logger, FullScan: true, Policy: QuarantineCorruption}); err != nil {
		t.Fatal(err)
	}
	var events []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var ev map[string]any
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		events = append(events, ev)
	}
	want := []struct {
		level, msg, seg string
		off             int64
	}{
		{"error", "recovery: corrupt entries replaced by holes", filepath.Base(e.seg), e.off},
		{"warn", "recovery: torn tail cut", filepath.Base(f.seg), f.off},
	}
	if len(events) != len(want) {
		t.Fatalf("logged %d events, want %d: %s", len(events), len(want), buf.String())
	}
	for i, w := range want {
		ev := events[i]
		if ev["level"] != w.level || ev["message"] != w.msg || ev["segment"] != w.seg || ev["offset"] != float64(w.off) ||
			ev["bytes"] == nil || ev["seq"] == nil || ev["quarantine"] == nil || ev["error"] == nil {
			t.Fatalf("event %d: %v, want %+v with bytes, seq, quarantine, error", i, ev, w)
		}
	}
}
