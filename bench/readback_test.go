package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/kafkawal/kafkawal/internal/readloop"
	"github.com/kafkawal/kafkawal/wal"
)

// BenchmarkReadBack: the CPU the sender spends reading records back from
// the WAL when it is behind the appenders, as in every EndToEnd run of
// this suite (the appenders outrun Kafka). It reads sealed segments from
// their files, as the sender's read-ahead does once it is more than the
// two segments tidwall caches behind the writer: a pread from the page
// cache into one of three recycled buffers, the checksum of every record,
// and its decoding, in reads of up to 1024 records and 1 MiB (the
// read-ahead's). One op is one record; the WAL holds 12 segments of the
// default 8 MiB and the first 8 are read round and round.
//
// The bound that bench/table.sh derives for EndToEnd counts the plain
// producer's CPU and the WAL's appends (DurableAppend), not this: its
// cpu-us/record is the term that bound leaves out, and the table shows the
// bound with it added.
func BenchmarkReadBack(b *testing.B) {
	for _, vs := range valueSizes {
		b.Run(fmt.Sprintf("value=%d", vs), func(b *testing.B) {
			l, _, err := wal.Open(b.TempDir(), wal.Options{Sync: wal.SyncNever, MaxDiskBytes: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			recs := make([]wal.Record, 1000)
			for i := range recs {
				recs[i] = wal.Record{Topic: "bench", Partition: wal.PartitionAny, Value: value(vs)}
			}
			var readEnd uint64 // the first sequence past the 8th segment
			for l.Stats().Segments < 12 {
				first, err := l.Append(context.Background(), recs)
				if err != nil {
					b.Fatal(err)
				}
				if readEnd == 0 && l.Stats().Segments > 8 {
					readEnd = first // this batch may reach into the 9th
				}
			}
			bufs := make([][]byte, 3)
			ents := make([]wal.Entry, 0, 1024)
			b.ResetTimer()
			cpu := cpuTime()
			readloop.Run(b, 1, readEnd, func(i int, seq uint64) (int, uint64, error) {
				got, buf, err := l.ReadInto(seq, ents[:0], bufs[i%3], 1<<20)
				bufs[i%3] = buf
				if len(got) == 0 {
					return 0, 0, err
				}
				return len(got), got[len(got)-1].Seq, err
			})
			b.StopTimer()
			reportCPU(b, cpuTime()-cpu, int64(b.N))
			reportRate(b, int64(b.N), vs, b.Elapsed())
		})
	}
}
