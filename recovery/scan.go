package recovery

import (
	"fmt"
	"io"
	"iter"
	"os"
	"runtime"
	"sync"

	"github.com/kafkawal/kafkawal/wal"
)

// ScanOptions configures Scan. The zero value checks every segment.
type ScanOptions struct {
	// TailOnly checks entry by entry only the last segment (and, when it is
	// an empty file fresh from a rotation, the segments back to the last
	// non-empty one); sealed segments are listed but not read. Default
	// false: every segment is read and every entry checked.
	TailOnly bool
	// Progress, if set, is called after each checked segment with the
	// bytes checked so far and the bytes to check in all. Default none.
	Progress func(done, total int64)
}

// Scan checks the log in dir without changing anything: it reads every
// segment in order (only the tail with TailOnly), parses tidwall/wal's
// framing, checks every entry's checksum with wal.Decode (or wal.IsHole),
// and checks that each sealed segment holds exactly as many entries as the
// next segment's name implies. It returns the first damage found as a
// *CorruptionError (Report.Damage lists them all, each marked Delivered
// when it lies at or below the directory's durable cursor), or an I/O
// error.
//
// Scan of a directory an open Log is writing may report the record being
// written as a torn tail.
func Scan(dir string, opts ScanOptions) (Report, error) {
	segs, err := wal.ListSegments(dir)
	if err != nil {
		return Report{}, err
	}
	// A cursor that cannot be read does not stop a scan of the segments:
	// the damage is then judged as if all of it had been fsync'd.
	wm, _ := loadWatermark(dir)
	rep, _, err := check(segs, opts, wm)
	if err != nil {
		return rep, err
	}
	// A cursor that cannot be read does not stop a scan of the segments:
	// the damage is then reported as not delivered.
	_ = rep.judge(dir)
	if len(rep.Damage) > 0 {
		return rep, rep.Damage[0]
	}
	return rep, nil
}

// loadWatermark reads the synced watermark from dir's durable cursor.
func loadWatermark(dir string) (watermark, error) {
	cur, _, err := wal.LoadCursor(dir)
	if err != nil {
		return watermark{}, err
	}
	return watermark{seq: cur.Synced, known: cur.SyncedKnown}, nil
}

// check reads and checks the segments opts selects, the last one against
// the synced watermark wm, and fills a Report.
func check(segs []wal.SegmentFile, opts ScanOptions, wm watermark) (Report, []*segCheck, error) {
	var rep Report
	rep.Synced, rep.SyncedKnown = wm.seq, wm.known
	rep.Segments = len(segs)
	for _, s := range segs {
		rep.Bytes += s.Bytes
	}
	if len(segs) == 0 {
		return rep, nil, nil
	}
	rep.FirstSeq = segs[0].First
	from := 0
	if opts.TailOnly {
		from = len(segs) - 1
		for from > 0 && segs[from].Bytes == 0 {
			from--
		}
	}
	var total, done int64
	for _, s := range segs[from:] {
		total += s.Bytes
	}
	var checks []*segCheck
	for r := range checkAll(segs, from, wm) {
		if r.err != nil {
			return rep, checks, r.err
		}
		c := r.c
		checks = append(checks, c)
		rep.CheckedSegments++
		rep.CheckedBytes += c.size
		rep.Records += c.records
		rep.Holes += c.holes
		rep.Damage = append(rep.Damage, c.damage()...)
		done += c.size
		if opts.Progress != nil {
			opts.Progress(done, max(total, done))
		}
	}
	rep.LastSeq = checks[len(checks)-1].lastSeq()
	return rep, checks, nil
}

type checked struct {
	c   *segCheck
	err error
}

// checkAll checks segs[from:] on up to scanWorkers goroutines and yields
// the results in segment order. Each worker holds one segment in memory.
// Stopping the iteration early stops the workers before checkAll returns.
func checkAll(segs []wal.SegmentFile, from int, wm watermark) iter.Seq[checked] {
	return func(yield func(checked) bool) {
		n := len(segs) - from
		workers := min(runtime.GOMAXPROCS(0), scanWorkers, n)
		results := make([]chan checked, n)
		for i := range results {
			results[i] = make(chan checked, 1)
		}
		bufs := make(chan []byte, workers) // a free buffer is a free worker
		for range workers {
			bufs <- nil
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		defer wg.Wait()
		defer close(stop)
		wg.Go(func() {
			for i := range n {
				var buf []byte
				select {
				case buf = <-bufs:
				case <-stop:
					return
				}
				wg.Go(func() {
					seg := segs[from+i]
					var next uint64
					if from+i+1 < len(segs) {
						next = segs[from+i+1].First
					}
					buf, err := readSegment(seg.Path, buf)
					var r checked
					if err != nil {
						r.err = err
					} else {
						r.c = checkSegment(seg, buf, next, wm)
					}
					results[i] <- r
					bufs <- buf
				})
			}
		})
		for i := range n {
			if !yield(<-results[i]) {
				return
			}
		}
	}
}

// scanWorkers bounds the segments checked at once (and held in memory).
const scanWorkers = 4

// readSegment reads the file at path into buf, growing it as needed.
func readSegment(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, fmt.Errorf("kafkawal: read segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return buf, fmt.Errorf("kafkawal: read segment: %w", err)
	}
	n := int(fi.Size())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(f, buf); err != nil {
		return buf, fmt.Errorf("kafkawal: read segment %s: %w", path, err)
	}
	return buf, nil
}
