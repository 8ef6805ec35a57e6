package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The cursor is kept in two slots, cursor.0 and cursor.1, written in turn.
// Each holds a generation number, so the newest valid slot wins; a slot torn
// by a crash fails its checksum and the other slot (the previous value) is
// used. A cursor that is too old only costs duplicates, never loss.
//
// Version 2 (written since the power-cut drill) adds the synced watermark
// (synced.go): every sequence <= it was fsync'd when the slot was written.
//
//	offset size field
//	0      4    magic "KWCU"
//	4      1    version (2; 1 lacks the synced field)
//	5      8    generation, big endian
//	13     8    acked sequence: every sequence <= it is acknowledged
//	21     8    synced sequence: every sequence <= it was fsync'd (version 2)
//	29     4    crc32c of the bytes before it (21 in version 1, at 21)
const (
	cursorMagic     = "KWCU"
	cursorVersion   = 2
	cursorSize      = 33
	cursorV1        = 1
	cursorSizeV1    = 25
	cursorHeaderLen = 21 // magic, version, generation, acked
)

// CursorFiles are the names of the two cursor slots.
var CursorFiles = [2]string{"cursor.0", "cursor.1"}

type cursorFile struct {
	dir  string
	perm os.FileMode
	gen  uint64
	next int // slot to write next
}

// CursorState is what LoadCursor found.
type CursorState struct {
	Acked uint64 // 0 when no slot was valid
	// Synced is the synced watermark of the same slot; SyncedKnown is
	// false when that slot predates it (version 1) or no slot was valid.
	Synced      uint64
	SyncedKnown bool
	Gen         uint64
	// Damaged counts slots that exist but failed validation.
	Damaged int
	// Found is false when no valid slot exists (fresh directory or both torn).
	Found bool
}

func encodeCursor(gen, acked, synced uint64) []byte {
	b := make([]byte, 0, cursorSize)
	b = append(b, cursorMagic...)
	b = append(b, cursorVersion)
	b = binary.BigEndian.AppendUint64(b, gen)
	b = binary.BigEndian.AppendUint64(b, acked)
	b = binary.BigEndian.AppendUint64(b, synced)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// slot is one decoded cursor slot.
type slot struct {
	gen, acked, synced uint64
	syncedKnown        bool
}

// decodeCursor reads a slot of either version.
func decodeCursor(b []byte) (slot, bool) {
	var n int
	switch {
	case len(b) == cursorSize && len(b) > 4 && b[4] == cursorVersion:
		n = cursorSize - 4
	case len(b) == cursorSizeV1 && b[4] == cursorV1:
		n = cursorSizeV1 - 4
	default:
		return slot{}, false
	}
	if string(b[:4]) != cursorMagic || crc32.Checksum(b[:n], castagnoli) != binary.BigEndian.Uint32(b[n:]) {
		return slot{}, false
	}
	s := slot{gen: binary.BigEndian.Uint64(b[5:]), acked: binary.BigEndian.Uint64(b[13:])}
	if n > cursorHeaderLen {
		s.synced, s.syncedKnown = binary.BigEndian.Uint64(b[cursorHeaderLen:]), true
	}
	return s, true
}

// LoadCursor reads dir's cursor slots without modifying anything.
func LoadCursor(dir string) (CursorState, int, error) {
	var st CursorState
	newest := -1
	for i, name := range CursorFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return st, 0, fmt.Errorf("kafkawal: read cursor: %w", err)
		}
		sl, ok := decodeCursor(b)
		if !ok {
			st.Damaged++
			continue
		}
		if !st.Found || sl.gen > st.Gen {
			st.Found, st.Gen, st.Acked, newest = true, sl.gen, sl.acked, i
			st.Synced, st.SyncedKnown = sl.synced, sl.syncedKnown
		}
	}
	return st, (newest + 1) % 2, nil
}

func openCursor(dir string, perm os.FileMode) (*cursorFile, CursorState, error) {
	st, next, err := LoadCursor(dir)
	if err != nil {
		return nil, st, err
	}
	return &cursorFile{dir: dir, perm: perm, gen: st.Gen, next: next}, st, nil
}

// store writes acked and synced into the older slot and fsyncs it. The
// first write of each slot also fsyncs the directory so that the new name
// is durable.
func (c *cursorFile) store(acked, synced uint64) error {
	path := filepath.Join(c.dir, CursorFiles[c.next])
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, c.perm)
	if err != nil {
		return fmt.Errorf("kafkawal: write cursor: %w", err)
	}
	_, err = f.Write(encodeCursor(c.gen+1, acked, synced))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && os.IsNotExist(statErr) {
		err = SyncDir(c.dir)
	}
	if err != nil {
		return fmt.Errorf("kafkawal: write cursor %s: %w", path, err)
	}
	c.gen++
	c.next = (c.next + 1) % 2
	return nil
}

// SyncDir fsyncs a directory, making the creation, rename or removal of
// its entries durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
