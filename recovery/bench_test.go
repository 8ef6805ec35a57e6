package recovery

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/kafkawal/kafkawal/wal"
)

// BenchmarkScan measures a full Scan (every entry's checksum and decode)
// of a log of RECOVERY_SCAN_BYTES (default 256 MiB) of 100-byte values in
// 8 MiB segments: from the page cache ("warm") and with each segment
// dropped from it first ("cold", reading the disk). Run:
//
//	RECOVERY_SCAN_BYTES=$((2<<30)) go test -run '^$' -bench Scan -benchtime 3x ./recovery/
func BenchmarkScan(b *testing.B) {
	size := int64(256 << 20)
	if s := os.Getenv("RECOVERY_SCAN_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	dir := b.TempDir()
	writeBenchLog(b, dir, size)
	for _, bc := range []struct {
		name string
		cold bool
		opts ScanOptions
	}{
		{"full/warm", false, ScanOptions{}},
		{"full/cold", true, ScanOptions{}},
		{"tail/warm", false, ScanOptions{TailOnly: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var bytes, cpu int64
			for i := 0; i < b.N; i++ {
				if bc.cold {
					b.StopTimer()
					dropCache(b, dir)
					b.StartTimer()
				}
				start := processCPU()
				rep, err := Scan(dir, bc.opts)
				cpu += processCPU() - start
				if err != nil {
					b.Fatal(err)
				}
				bytes += rep.CheckedBytes
			}
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(bytes)/secs/1e6, "MB/s")
			b.ReportMetric(float64(cpu)/float64(bytes)*(1<<30)/1e9, "cpu-s/GiB")
			if !bc.opts.TailOnly {
				b.ReportMetric(secs/float64(bytes)*float64(2<<30), "s/2GiB")
			}
		})
	}
}

func writeBenchLog(b *testing.B, dir string, size int64) {
	l, _, err := wal.Open(dir, wal.Options{Sync: wal.SyncNever, MaxDiskBytes: 2*size + 64<<20})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]wal.Record, 1000)
	for i := range batch {
		batch[i] = wal.Record{Topic: "bench", Partition: int32(i % 8), Key: []byte("k"), Value: make([]byte, 100)}
	}
	for written := int64(0); written < size; {
		if _, err := l.Append(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		written += int64(len(batch)) * int64(wal.EncodedLen(&batch[0])+1)
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

// dropCache asks the kernel to evict the segments from the page cache
// (posix_fadvise DONTNEED; they are clean after Close's fsync).
func dropCache(b *testing.B, dir string) {
	segs, err := wal.ListSegments(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range segs {
		f, err := os.Open(s.Path)
		if err != nil {
			b.Fatal(err)
		}
		const fadvDontNeed = 4
		_, _, errno := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0)
		f.Close()
		if errno != 0 {
			b.Fatal(errno)
		}
	}
}

// processCPU returns the CPU time the process has used (user and system),
// in nanoseconds: unlike elapsed time, it does not count the time this
// process waited for a CPU on a machine others load.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
