package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/kafkawal/kafkawal/internal/readloop"
)

// Benchmarks for the figures issue 2 asks for. Run:
//
//	go test -run '^$' -bench . -benchtime 3s ./wal/
//
// Each reports records/s and MB/s of 100-byte values; BenchmarkRawFdatasync
// is the disk's own limit on the same filesystem in the same run.

var benchValue = make([]byte, 100)

func BenchmarkAppendSyncAlways(b *testing.B) {
	for _, appenders := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			benchAppend(b, Options{Sync: SyncAlways}, appenders, 1)
		})
	}
	b.Run("batch=1000", func(b *testing.B) { benchAppend(b, Options{Sync: SyncAlways}, 1, 1000) })
}

func BenchmarkAppendSyncPeriodic(b *testing.B) {
	b.Run("appenders=64", func(b *testing.B) { benchAppend(b, Options{Sync: SyncPeriodic}, 64, 1) })
}

func benchAppend(b *testing.B, opts Options, appenders, batch int) {
	opts.MaxDiskBytes = 64 << 30 // measure the log, not the cap
	l, _, err := Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	recs := make([]Record, batch)
	for i := range recs {
		recs[i] = Record{Topic: "bench", Value: benchValue}
	}
	total := int64(b.N) * int64(batch)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for a := 0; a < appenders; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(int64(batch)) <= total {
				if _, err := l.Append(bg, recs); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(total)/secs, "records/s")
	b.ReportMetric(float64(total)*float64(len(benchValue))/secs/1e6, "MB/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRawFdatasync is the disk's limit: 64 KiB write + fdatasync in a
// loop on one file, no framing, no log.
func BenchmarkRawFdatasync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)*float64(len(buf))/secs/1e6, "MB/s")
	b.ReportMetric(float64(b.N)*float64(len(buf))/100/secs, "records/s") // in 100-byte records
}

// BenchmarkReadSealed reads records back from sealed segments, as the
// sender's read-ahead does once it is more than two segments behind the
// writer (tidwall caches two): through tidwall (readShared: it reads each
// segment file whole into a new buffer and indexes it) and from the files
// into three recycled buffers (ReadInto). One op is one record; the log
// holds 17 segments of 8 MiB; the 14 oldest are read round and round.
func BenchmarkReadSealed(b *testing.B) {
	for _, size := range []int{100, 1024} {
		dir := b.TempDir()
		l, _, err := Open(dir, Options{Sync: SyncNever, MaxDiskBytes: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		recs := make([]Record, 1000)
		for i := range recs {
			recs[i] = Record{Topic: "bench", Value: make([]byte, size)}
		}
		for l.Stats().Segments <= 16 {
			if _, err := l.Append(bg, recs); err != nil {
				b.Fatal(err)
			}
		}
		last := l.filesBelow() - 1
		for _, via := range []string{"tidwall", "files"} {
			b.Run(fmt.Sprintf("value=%d/%s", size, via), func(b *testing.B) {
				b.ReportAllocs()
				bufs := make([][]byte, 3)
				ents := make([]Entry, 0, 1024)
				cpu := processCPU()
				readloop.Run(b, 1, last+1, func(i int, seq uint64) (int, uint64, error) {
					var got []Entry
					var err error
					if via == "tidwall" {
						got, err = l.readShared(seq, ents[:0], 1<<20)
					} else {
						got, bufs[i%3], err = l.ReadInto(seq, ents[:0], bufs[i%3], 1<<20)
					}
					if len(got) == 0 {
						return 0, 0, err
					}
					return len(got), got[len(got)-1].Seq, err
				})
				b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/record")
				secs := b.Elapsed().Seconds()
				b.ReportMetric(float64(b.N)/secs, "records/s")
				b.ReportMetric(float64(b.N)*float64(size)/secs/1e6, "MB/s")
			})
		}
		l.Close()
	}
}

// processCPU returns the CPU time the process has used (user and system),
// in nanoseconds: unlike the time per op, it does not count the time this
// process waited for a CPU on a machine others load.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
