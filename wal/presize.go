package wal

import (
	"errors"
	"reflect"
	"unsafe"

	twal "github.com/tidwall/wal"
)

// tidwall/wal (v1.2.1, its latest release) keeps the tail segment's entries
// in one in-memory buffer, ebuf, and their positions in a second, epos.
// Both start empty with every new segment and grow by append: for an 8 MiB
// segment that is about 40 reallocations, each copying everything so far,
// and as many large allocations for the garbage collector. That was the
// largest cost of the append path; presizing more than halved the CPU per
// record appended (bench/HISTORY.md, "tidwall's tail buffers are sized once
// per segment").
//
// tidwall has no option to size them, so presizeTail replaces the tail's
// two buffers, once per segment, with copies that have their final capacity:
// same contents, same length, only room to grow. It reaches tidwall's
// unexported fields, so it relies on nothing it has not checked: the fields
// are found by name with reflect in the binary actually built (whatever
// tidwall version that is), and their types must be exactly what this code
// writes. If anything differs, twLayoutErr says what and presizing is off:
// tidwall grows its buffers as it always did, and TestTidwallLayoutFound
// fails so that the loss is noticed.

// tidwallPos mirrors tidwall's bpos (an entry's position in ebuf).
type tidwallPos struct{ pos, end int }

type tidwallLayout struct {
	segments uintptr // offset of Log.segments, a []*segment
	ebuf     uintptr // offset of segment.ebuf, a []byte
	epos     uintptr // offset of segment.epos, a []bpos
}

var twLayout, twLayoutErr = findTidwallLayout()

func findTidwallLayout() (tidwallLayout, error) {
	segs, ok := reflect.TypeFor[twal.Log]().FieldByName("segments")
	if !ok || segs.Type.Kind() != reflect.Slice || segs.Type.Elem().Kind() != reflect.Pointer ||
		segs.Type.Elem().Elem().Kind() != reflect.Struct {
		return tidwallLayout{}, errors.New("tidwall Log has no segments field of type []*struct")
	}
	seg := segs.Type.Elem().Elem()
	ebuf, ok := seg.FieldByName("ebuf")
	if !ok || ebuf.Type != reflect.TypeFor[[]byte]() {
		return tidwallLayout{}, errors.New("tidwall segment has no ebuf field of type []byte")
	}
	epos, ok := seg.FieldByName("epos")
	if !ok || epos.Type.Kind() != reflect.Slice || !sameLayout(epos.Type.Elem(), reflect.TypeFor[tidwallPos]()) {
		return tidwallLayout{}, errors.New("tidwall segment has no epos field of type []struct{pos, end int}")
	}
	return tidwallLayout{segments: segs.Offset, ebuf: ebuf.Offset, epos: epos.Offset}, nil
}

// sameLayout reports whether two struct types have the same fields (names,
// types, offsets) and size.
func sameLayout(a, b reflect.Type) bool {
	if a.Kind() != reflect.Struct || b.Kind() != reflect.Struct ||
		a.Size() != b.Size() || a.NumField() != b.NumField() {
		return false
	}
	for i := range a.NumField() {
		fa, fb := a.Field(i), b.Field(i)
		if fa.Name != fb.Name || fa.Type != fb.Type || fa.Offset != fb.Offset {
			return false
		}
	}
	return true
}

// tidwallTail returns pointers to the tail segment's ebuf and epos, or nils
// if the layout was not found or tidwall lists no segment.
func tidwallTail(tl *twal.Log) (*[]byte, *[]tidwallPos) {
	if twLayoutErr != nil {
		return nil, nil
	}
	// []*segment and []unsafe.Pointer have the same layout.
	segs := *(*[]unsafe.Pointer)(unsafe.Add(unsafe.Pointer(tl), twLayout.segments))
	if len(segs) == 0 || segs[len(segs)-1] == nil {
		return nil, nil
	}
	s := segs[len(segs)-1]
	return (*[]byte)(unsafe.Add(s, twLayout.ebuf)), (*[]tidwallPos)(unsafe.Add(s, twLayout.epos))
}

// presizeTail gives tidwall's tail segment buffers room for a whole segment:
// ebuf SegmentSize and headroom for the entry that crosses it (tidwall
// rotates after the entry that brings it to SegmentSize or more), epos
// entries positions, or an estimate from the tail's own entries when
// entries is 0. The caller must exclude every other use of tl: it holds
// tlMu exclusively, and only the writer goroutine (or Open) writes.
func (l *Log) presizeTail(entries int) {
	ebuf, epos := tidwallTail(l.tl)
	if ebuf == nil {
		return
	}
	segSize := l.tidwallSegmentBytes()
	// The headroom fits a largest record (a framed entry is its length as a
	// uvarint, at most 10 bytes, and the encoded record) unless that is
	// over an eighth of a segment: a buffer that large would stay in memory
	// with every cached segment, and one reallocation when such a record
	// crosses the end costs less.
	var freeEpos []tidwallPos
	if want := segSize + min(l.opts.MaxRecordBytes+10, segSize/8); cap(*ebuf) < want && len(*ebuf) < segSize {
		b, p := l.w.bufs.takeFree(want) // a sealed segment's, when nothing can read it any more
		if b == nil {
			b = make([]byte, 0, want)
		}
		*ebuf = append(b[:0], *ebuf...)
		freeEpos = p
	}
	if entries == 0 && len(*epos) > 0 && len(*ebuf) > 0 {
		// The tail's records so far, scaled to a whole segment.
		entries = int(int64(len(*epos)) * int64(segSize) / int64(len(*ebuf)))
	}
	// No record frames to fewer than 16 bytes (20 bytes of framing).
	entries = min(entries, segSize/16)
	// Room for records somewhat smaller than the estimate's; beyond that
	// append grows it as before.
	if want := entries + entries/8 + 64; entries > 0 && cap(*epos) < want {
		p := freeEpos[:0]
		if cap(p) < want {
			p = make([]tidwallPos, 0, want)
		}
		*epos = append(p, *epos...)
	}
	if segs := l.w.segs.segs; len(segs) > 0 {
		l.w.bufs.give(*ebuf, *epos, segs[len(segs)-1].First)
	}
}
