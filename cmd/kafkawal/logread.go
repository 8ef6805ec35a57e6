package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kafkawal/kafkawal/wal"
)

// damage is a part of the log that walkLog could not read as entries.
type damage struct {
	Segment string
	Offset  int64
	// Seq is the first sequence the damaged part held.
	Seq uint64
	// Tail is set when the damage runs to the end of the last segment: a
	// record being written right now, or one a crash cut short (wal.Open
	// repairs it). Anything else is corruption.
	Tail bool
	Err  error
}

func (d damage) Error() string {
	return fmt.Sprintf("segment %s offset %d (seq %d): %v", d.Segment, d.Offset, d.Seq, d.Err)
}

// walkLog calls visit with every entry whose sequence is >= from, in log
// order, until visit returns false or an error. Broken framing is passed to
// damaged and the walk goes on with the next segment, whose name says its
// first sequence. It returns I/O errors and visit's error.
func walkLog(segs []wal.SegmentFile, from uint64, visit func(seq uint64, entry []byte) (bool, error), damaged func(damage)) error {
	k := 0
	for i, s := range segs {
		if s.First <= from {
			k = i
		}
	}
	for i := k; i < len(segs); i++ {
		var next uint64 // first sequence of the following segment; 0 for the last
		if i+1 < len(segs) {
			next = segs[i+1].First
		}
		more, err := walkSegment(segs[i], next, from, visit, damaged)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

func walkSegment(seg wal.SegmentFile, next, from uint64, visit func(uint64, []byte) (bool, error), damaged func(damage)) (bool, error) {
	f, err := os.Open(seg.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("segment %s disappeared while reading (a producer holding the directory deleted acknowledged segments); run again", filepath.Base(seg.Path))
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	// The bytes the file has now: a producer appending meanwhile does not
	// move the end under the reader.
	sr := wal.NewSegmentReader(f, fi.Size(), nil)
	seq := seg.First
	for ; seq < from && sr.Skip(); seq++ {
	}
	for ; seq >= from && sr.Next(); seq++ {
		if more, err := visit(seq, sr.Entry()); err != nil || !more {
			return false, err
		}
	}
	var fe *wal.FrameError
	if errors.As(sr.Err(), &fe) {
		damaged(damage{Segment: seg.Path, Offset: fe.Offset, Seq: seq, Tail: fe.Tail && next == 0, Err: fe.Err})
		return true, nil
	}
	if err := sr.Err(); err != nil {
		return false, err
	}
	if next != 0 && seq != next {
		damaged(damage{Segment: seg.Path, Offset: sr.End(), Seq: min(seq, next),
			Err: fmt.Errorf("holds %d entries; the next segment's name implies %d", seq-seg.First, next-seg.First)})
	}
	return true, nil
}
