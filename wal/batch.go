package wal

import (
	"errors"
	"reflect"
	"unsafe"

	twal "github.com/tidwall/wal"
)

// tidwall's WriteBatch takes a Batch, into which Batch.Write copies every
// entry: a second copy of each record in user space, after the encoding
// and before tidwall's own copy into the tail segment. Most groups are one
// contiguous run of encoded records (one AppendBatch, or the AppendAsync
// calls gathered in the ring), so batchBuilder hands tidwall that memory
// itself and copies only a group whose records lie in several buffers (many
// single-record Appends). Like presizeTail it writes tidwall's unexported
// fields, found by name with reflect and checked to be exactly what it
// writes; if they are not, it copies through Batch.Write as before and
// TestTidwallLayoutFound fails.

// tidwallBatchEntry mirrors tidwall's batchEntry.
type tidwallBatchEntry struct {
	index uint64
	size  int
}

type tidwallBatchLayout struct {
	entries uintptr // offset of Batch.entries, a []batchEntry
	datas   uintptr // offset of Batch.datas, a []byte
}

var twBatch, twBatchErr = findTidwallBatch()

func findTidwallBatch() (tidwallBatchLayout, error) {
	bt := reflect.TypeFor[twal.Batch]()
	entries, ok := bt.FieldByName("entries")
	if !ok || entries.Type.Kind() != reflect.Slice || !sameLayout(entries.Type.Elem(), reflect.TypeFor[tidwallBatchEntry]()) {
		return tidwallBatchLayout{}, errors.New("tidwall Batch has no entries field of type []struct{index uint64; size int}")
	}
	datas, ok := bt.FieldByName("datas")
	if !ok || datas.Type != reflect.TypeFor[[]byte]() {
		return tidwallBatchLayout{}, errors.New("tidwall Batch has no datas field of type []byte")
	}
	return tidwallBatchLayout{entries: entries.Offset, datas: datas.Offset}, nil
}

// batchBuilder gathers the entries of one WriteBatch. Entries that follow
// each other in one buffer are handed over as they lie; at the first that
// does not, the run so far is copied into copied and the rest follow it
// there.
type batchBuilder struct {
	b          twal.Batch
	entries    []tidwallBatchEntry
	base       []byte // the buffer of the run
	start, end int    // the run: base[start:end]
	copied     []byte // or a copy of the entries
	copying    bool
}

func (bb *batchBuilder) len() int { return len(bb.entries) }

// add appends entry e, a slice of base (the buffer it was encoded into).
func (bb *batchBuilder) add(seq uint64, e, base []byte) {
	bb.entries = append(bb.entries, tidwallBatchEntry{seq, len(e)})
	if twBatchErr != nil {
		bb.b.Write(seq, e)
		return
	}
	off := -1
	if d := uintptr(unsafe.Pointer(unsafe.SliceData(e))) - uintptr(unsafe.Pointer(unsafe.SliceData(base))); len(e) > 0 && d <= uintptr(cap(base)-len(e)) {
		off = int(d)
	}
	switch {
	case bb.copying:
		bb.copied = append(bb.copied, e...)
	case off >= 0 && len(bb.entries) == 1:
		bb.base, bb.start, bb.end = base, off, off+len(e)
	case off >= 0 && off == bb.end && unsafe.SliceData(base) == unsafe.SliceData(bb.base):
		bb.end += len(e)
	default:
		bb.copied = append(append(bb.copied[:0], bb.base[bb.start:bb.end]...), e...)
		bb.copying = true
	}
}

// write hands the entries to tl.WriteBatch and clears the builder.
func (bb *batchBuilder) write(tl *twal.Log) error {
	if twBatchErr == nil {
		datas := bb.base[bb.start:bb.end]
		if bb.copying {
			datas = bb.copied
		}
		bb.setBatch(bb.entries, datas)
	}
	err := tl.WriteBatch(&bb.b)
	if twBatchErr == nil {
		bb.setBatch(nil, nil) // keep no reference to the appenders' memory
	} else {
		bb.b.Clear()
	}
	bb.entries, bb.base, bb.start, bb.end, bb.copied, bb.copying = bb.entries[:0], nil, 0, 0, bb.copied[:0], false
	return err
}

func (bb *batchBuilder) setBatch(entries []tidwallBatchEntry, datas []byte) {
	*(*[]tidwallBatchEntry)(unsafe.Add(unsafe.Pointer(&bb.b), twBatch.entries)) = entries
	*(*[]byte)(unsafe.Add(unsafe.Pointer(&bb.b), twBatch.datas)) = datas
}
