package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
)

// BenchmarkDurableAppend: what durability costs on the way in. Per value
// size, in this order so that the references exist when kafkawal runs:
//
//   - rawdisk: the disk's own limit, 64 KiB write + fdatasync in a loop on
//     one file (records/s counts 64 KiB in records of the value size);
//   - rawdisk-stream: the same with 8 MiB per write + fdatasync (a default
//     segment's worth), the disk's streaming bandwidth: what a writer that
//     fsyncs seldom can reach (EndToEnd's of_disk is against it);
//   - bbolt-fsync, bbolt-nosync: the peer queue (see boltQueue), one
//     fsync'd (or not) transaction per put;
//   - kafkawal-SyncAlways, -SyncPeriodic, -SyncNever: Append through the
//     public API with the sender idle (the broker address is dead), so the
//     figure is the WAL path alone.
//
// Each in two shapes: 64 goroutines appending one record per call, and one
// goroutine appending batches of 1000 (AppendBatch; one bbolt transaction);
// kafkawal also in a third, async=1: one goroutine calling AppendAsync
// record after record, until every callback has run.
// kafkawal reports its records/s over bbolt's with the same fsync policy
// (x_bbolt; SyncPeriodic against nosync) and its MB/s over the raw disk's
// (of_disk), records/write: records per write(2), how much group commit
// groups, and cpu-us/record. One op is one record.
func BenchmarkDurableAppend(b *testing.B) {
	modes := []struct {
		name string
		mode kafkawal.Durability
		peer string // bbolt variant with the same fsync policy
	}{
		{"SyncAlways", kafkawal.SyncAlways, "bbolt-fsync"},
		{"SyncPeriodic", kafkawal.SyncPeriodic, "bbolt-nosync"},
		{"SyncNever", kafkawal.SyncNever, "bbolt-nosync"},
	}
	for _, vs := range valueSizes {
		b.Run(fmt.Sprintf("value=%d", vs), func(b *testing.B) {
			b.Run("rawdisk", func(b *testing.B) {
				recordPeer(b, fmt.Sprintf("disk/%d", vs), benchRawDisk(b, vs, 64<<10))
			})
			b.Run("rawdisk-stream", func(b *testing.B) {
				recordPeer(b, fmt.Sprintf("disk-stream/%d", vs), benchRawDisk(b, vs, 8<<20))
			})
			for _, fsync := range []bool{true, false} {
				name := map[bool]string{true: "bbolt-fsync", false: "bbolt-nosync"}[fsync]
				for _, s := range shapes {
					b.Run(name+"/"+s.name, func(b *testing.B) {
						recordPeer(b, fmt.Sprintf("%s/%d/%s", name, vs, s.name), benchBoltPut(b, vs, s, fsync))
					})
				}
			}
			for _, m := range modes {
				for _, s := range kafkawalShapes {
					b.Run("kafkawal-"+m.name+"/"+s.name, func(b *testing.B) {
						rps := benchAppend(b, vs, s, m.mode)
						reportRatio(b, fmt.Sprintf("%s/%d/%s", m.peer, vs, s.name), rps, "x_bbolt")
						reportRatio(b, fmt.Sprintf("disk/%d", vs), rps*float64(vs)/1e6, "of_disk")
					})
				}
			}
		})
	}
}

// benchRawDisk returns the disk's MB/s writing chunk bytes per write +
// fdatasync.
func benchRawDisk(b *testing.B, valueSize, chunk int) float64 {
	f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := value(chunk)
	b.ResetTimer()
	for range b.N {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	bytes := float64(b.N) * float64(len(buf))
	reportRate(b, int64(bytes/float64(valueSize)), valueSize, b.Elapsed())
	return bytes / b.Elapsed().Seconds() / 1e6
}

// benchBoltPut returns bbolt's records/s.
func benchBoltPut(b *testing.B, valueSize int, s shape, fsync bool) float64 {
	q := openBoltQueue(b, b.TempDir(), fsync, s.appenders > 1)
	defer q.close()
	vals := make([][]byte, s.batch)
	v := value(valueSize)
	for i := range vals {
		vals[i] = v
	}
	b.ResetTimer()
	cpu := cpuTime()
	if err := drive(s, int64(b.N), vals, q.put); err != nil {
		b.Fatalf("bbolt put: %v", err)
	}
	b.StopTimer()
	reportCPU(b, cpuTime()-cpu, int64(b.N))
	return reportRate(b, int64(b.N), valueSize, b.Elapsed())
}

// benchAppend returns kafkawal's records/s.
func benchAppend(b *testing.B, valueSize int, s shape, mode kafkawal.Durability) float64 {
	cfg := producerConfig(b.TempDir(), deadBootstrap(b), mode)
	// Nothing is delivered, so nothing is truncated: give the cap room
	// for the whole run (it is a limit, not an allocation).
	cfg.MaxDiskBytes = 64 << 30
	p := openProducer(b, cfg)
	defer closeProducer(p, 100*time.Millisecond)
	rs := batchOf("bench", s.batch, valueSize)
	ctx := context.Background()
	put := func(rs []kafkawal.Record) error {
		_, err := p.AppendBatch(ctx, rs)
		return err
	}
	var async *asyncAppender
	if s.async {
		actx, cancel := context.WithTimeout(ctx, e2eTimeout)
		defer cancel()
		async = newAsyncAppender(actx, p, int64(b.N))
		put = async.put
	}
	w0 := writeCalls()
	b.ResetTimer()
	cpu := cpuTime()
	err := drive(s, int64(b.N), rs, put)
	if err == nil && async != nil {
		err = async.wait()
	}
	b.StopTimer()
	if err != nil {
		b.Fatalf("append: %v", err)
	}
	reportCPU(b, cpuTime()-cpu, int64(b.N))
	// How well group commit groups: each write(2) is one group (the
	// cursor is not written while nothing is delivered).
	if w1 := writeCalls(); w0 >= 0 && w1 > w0 && b.N >= 1000 {
		b.ReportMetric(float64(b.N)/float64(w1-w0), "records/write")
	}
	return reportRate(b, int64(b.N), valueSize, b.Elapsed())
}
