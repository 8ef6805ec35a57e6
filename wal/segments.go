package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// SegmentsDir is the subdirectory of a log directory that holds tidwall/wal
// segment files.
const SegmentsDir = "segments"

// SegmentFile describes one segment file on disk.
type SegmentFile struct {
	Path  string
	First uint64 // sequence of its first entry (from the file name)
	Bytes int64
}

// SegmentName is the file name tidwall/wal gives the segment whose first
// entry has sequence first.
func SegmentName(first uint64) string { return fmt.Sprintf("%020d", first) }

// ListSegments returns the segment files of a log directory in order. It
// reads names and sizes only.
func ListSegments(dir string) ([]SegmentFile, error) {
	segDir := filepath.Join(dir, SegmentsDir)
	des, err := os.ReadDir(segDir)
	if err != nil {
		return nil, fmt.Errorf("kafkawal: list segments: %w", err)
	}
	var segs []SegmentFile
	for _, de := range des {
		name := de.Name()
		if de.IsDir() || len(name) != 20 {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil || first == 0 {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			return nil, fmt.Errorf("kafkawal: stat segment %s: %w", name, err)
		}
		segs = append(segs, SegmentFile{Path: filepath.Join(segDir, name), First: first, Bytes: fi.Size()})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].First < segs[j].First })
	return segs, nil
}

// segTracker mirrors tidwall/wal's segment rotation so the writer knows which
// file holds the tail (to fsync it without tidwall's lock), which files a new
// batch created, and which sealed files lie wholly below the cursor. Its
// rules copy tidwall's writeBatch: rotate before a batch when the tail is
// over SegmentSize, and after any entry that brings it to SegmentSize or
// more. The writer checks each predicted file exists, so a wrong prediction
// fails loudly instead of silently.
type segTracker struct {
	dir   string
	limit int64
	segs  []SegmentFile
}

func (t *segTracker) tail() *SegmentFile { return &t.segs[len(t.segs)-1] }

func (t *segTracker) add(first uint64) {
	t.segs = append(t.segs, SegmentFile{Path: filepath.Join(t.dir, SegmentName(first)), First: first})
}

// apply records a batch of entries whose framed sizes are given, the first
// having sequence first, and returns how many segment files it created.
func (t *segTracker) apply(first uint64, framed []int64) (created int) {
	if t.tail().Bytes > t.limit {
		t.add(first)
		created++
	}
	for i, n := range framed {
		tl := t.tail()
		tl.Bytes += n
		if tl.Bytes >= t.limit {
			t.add(first + uint64(i) + 1)
			created++
		}
	}
	return created
}

// cuts appends to dst the count of entries (of these framed sizes) after
// which apply would create a segment, rotating after an entry: where a
// batch must be cut so that each new tail segment gets its buffers before
// its first entry (a rotation before the batch, when the tail is already
// over the limit, is not among them).
func (t *segTracker) cuts(framed []int64, dst []int) []int {
	n := t.tail().Bytes
	if n > t.limit {
		n = 0
	}
	for i, f := range framed {
		if n += f; n >= t.limit {
			dst = append(dst, i+1)
			n = 0
		}
	}
	return dst
}

// rotates reports whether apply would create a segment for a batch of
// entries of these framed sizes.
func (t *segTracker) rotates(framed []int64) bool {
	n := t.tail().Bytes
	if n > t.limit {
		return true
	}
	for _, f := range framed {
		n += f
	}
	return n >= t.limit
}

func (t *segTracker) totalBytes() int64 {
	var n int64
	for _, s := range t.segs {
		n += s.Bytes
	}
	return n
}

// segsChanged publishes the writer's segment list to readers (Stats and
// ReadInto).
func (l *Log) segsChanged() {
	segs := l.w.segs.segs
	firsts := make([]uint64, len(segs))
	for i, s := range segs {
		firsts[i] = s.First
	}
	l.segFirsts.Store(&firsts)
	l.publishSizes()
	l.segCount.Store(int64(len(segs)))
}
