package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/wal"
)

// BenchmarkWriteAmplification: bytes written to disk per byte of value
// appended, over a run (30 s under KAFKAWAL_BENCH_FULL=1, 1 s otherwise)
// in which records are delivered as they are appended, so that the cursor
// advances and whole segments are deleted behind it, as in production.
//
//   - disk-B/value-B: this process's write_bytes - cancelled_write_bytes
//     (/proc/self/io) per value byte. It counts every page the process
//     dirtied, so a partly filled 4 KiB page rewritten after each group
//     commit counts each time. It does not see the filesystem journal
//     (written by jbd2, not by us).
//   - disk-B/wal-B: the same per byte of kafkawal's own framing (record
//     encoding + tidwall length prefix): the I/O amplification beyond the
//     format's overhead.
//   - dev-B/value-B: sectors written to the device holding the WAL
//     (/sys/dev/block/M:m/stat), journal included, but machine-wide: other
//     processes' writes land in it too.
//
// Beside it, bbolt-fsync: the peer queue (boltQueue) with a consumer
// deleting items as they are put, 1000 per transaction, as the Collector
// deletes dispatched items. x_bbolt is kafkawal's disk-B/value-B over
// bbolt's for the same shape. One op is one run.
func BenchmarkWriteAmplification(b *testing.B) {
	br := directBroker.get(b)
	dur := pick(30*time.Second, time.Second)
	for _, vs := range valueSizes {
		for _, s := range shapes {
			prefix := fmt.Sprintf("value=%d/%s", vs, s.name)
			key := "wamp/" + prefix
			b.Run(prefix+"/bbolt-fsync", func(b *testing.B) {
				recordPeer(b, key, benchBoltWriteAmp(b, vs, s, dur))
			})
			for _, m := range []struct {
				name string
				mode kafkawal.Durability
			}{{"SyncAlways", kafkawal.SyncAlways}, {"SyncPeriodic", kafkawal.SyncPeriodic}} {
				b.Run(prefix+"/kafkawal-"+m.name, func(b *testing.B) {
					amp := benchKafkawalWriteAmp(b, br.Bootstrap(), newTopic(b, br), vs, s, m.mode, dur)
					reportRatio(b, key, amp, "x_bbolt")
				})
			}
		}
	}
}

// driveFor is drive for a duration instead of a count; it returns the
// number of records put.
func driveFor[R any](s shape, d time.Duration, rs []R, put func([]R) error) (int64, error) {
	var total atomic.Int64
	var wg sync.WaitGroup
	var first atomic.Value
	deadline := time.Now().Add(d)
	for range s.appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && first.Load() == nil {
				if err := put(rs[:s.batch]); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
				total.Add(int64(s.batch))
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return total.Load(), err
	}
	return total.Load(), nil
}

// ioCounters reads this process's disk writes and the device's.
type ioCounters struct {
	proc, dev int64
}

// add adds the writes between before and after; the device's stay unknown
// (-1) once one reading is.
func (c *ioCounters) add(before, after ioCounters) {
	c.proc += after.proc - before.proc
	if before.dev < 0 || after.dev < 0 || c.dev < 0 {
		c.dev = -1
	} else {
		c.dev += after.dev - before.dev
	}
}

func readIO(b *testing.B, dir string) ioCounters {
	proc, err := diskWrites()
	if err != nil {
		b.Fatal(err)
	}
	return ioCounters{proc: proc, dev: deviceWrites(dir)}
}

// deviceWrites returns the bytes written to the block device holding dir
// (-1 if unknown: a device-mapper or network filesystem, no sysfs).
func deviceWrites(dir string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return -1
	}
	major, minor := (st.Dev>>8)&0xfff|(st.Dev>>32)&^0xfff, st.Dev&0xff|(st.Dev>>12)&^0xff
	raw, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/stat", major, minor))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(raw))
	if len(f) < 7 {
		return -1
	}
	sectors, err := strconv.ParseInt(f[6], 10, 64)
	if err != nil {
		return -1
	}
	return sectors * 512
}

func reportWriteAmp(b *testing.B, d ioCounters, valueBytes, walBytes int64) float64 {
	amp := float64(d.proc) / float64(valueBytes)
	b.ReportMetric(amp, "disk-B/value-B")
	if walBytes > 0 {
		b.ReportMetric(float64(d.proc)/float64(walBytes), "disk-B/wal-B")
	}
	if d.dev >= 0 {
		b.ReportMetric(float64(d.dev)/float64(valueBytes), "dev-B/value-B")
	}
	b.ReportMetric(float64(valueBytes)/(1<<20), "appended-MB")
	b.ReportMetric(0, "ns/op")
	return amp
}

func benchKafkawalWriteAmp(b *testing.B, bootstrap, topic string, valueSize int, s shape, mode kafkawal.Durability, d time.Duration) float64 {
	var sum ioCounters
	var values, walTotal int64
	rs := batchOf(topic, s.batch, valueSize)
	enc := wal.EncodedLen(&rs[0])
	framed := wal.FramedLen(enc)
	for range b.N {
		dir := b.TempDir()
		p := openProducer(b, producerConfig(dir, bootstrap, mode))
		ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
		if _, err := p.AppendBatch(ctx, rs[:1]); err != nil {
			b.Fatalf("warm-up append: %v", err)
		}
		if err := p.Flush(ctx); err != nil {
			b.Fatalf("warm-up flush: %v", err)
		}
		before := readIO(b, dir)
		n, err := driveFor(s, d, rs, func(rs []kafkawal.Record) error {
			_, err := p.AppendBatch(ctx, rs)
			return err
		})
		if err == nil {
			err = p.Flush(ctx)
		}
		if err != nil {
			b.Fatalf("append and deliver: %v", err)
		}
		// The cursor is persisted every 100ms and segments behind it are
		// deleted at most once a second: wait for the last deletion so
		// that the run ends as a steady state would. Segments that are
		// still there after 5 s would make the figure meaningless: fail.
		for wait := time.Now().Add(5 * time.Second); p.Stats().DiskBytes > 2*wal.DefaultSegmentBytes; {
			if time.Now().After(wait) {
				b.Fatalf("delivered segments not deleted after 5s: %d bytes on disk", p.Stats().DiskBytes)
			}
			time.Sleep(50 * time.Millisecond)
		}
		closeProducer(p, time.Minute)
		cancel()
		after := readIO(b, dir)
		sum.add(before, after)
		values += n * int64(valueSize)
		walTotal += n * framed
	}
	return reportWriteAmp(b, sum, values, walTotal)
}

func benchBoltWriteAmp(b *testing.B, valueSize int, s shape, d time.Duration) float64 {
	var sum ioCounters
	var values int64
	vals := make([][]byte, s.batch)
	v := value(valueSize)
	for i := range vals {
		vals[i] = v
	}
	for range b.N {
		dir := b.TempDir()
		q := openBoltQueue(b, dir, true, s.appenders > 1)
		before := readIO(b, dir)
		var consumed atomic.Int64
		stop := make(chan struct{})
		consumerErr := make(chan error, 1)
		go func() {
			var err error
			defer func() { consumerErr <- err }()
			for {
				var k int
				if k, err = q.consume(1000); err != nil {
					return
				}
				consumed.Add(int64(k))
				if k == 0 {
					select {
					case <-stop:
						if k, err = q.consume(1000); err != nil || k == 0 {
							return
						}
						consumed.Add(int64(k))
					case <-time.After(time.Millisecond):
					}
				}
			}
		}()
		n, err := driveFor(s, d, vals, q.put)
		close(stop)
		if cerr := <-consumerErr; err == nil {
			err = cerr
		}
		if err == nil && consumed.Load() != n {
			err = fmt.Errorf("consumed %d of %d items", consumed.Load(), n)
		}
		if cerr := q.close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatalf("bbolt: %v", err)
		}
		after := readIO(b, dir)
		sum.add(before, after)
		values += n * int64(valueSize)
	}
	return reportWriteAmp(b, sum, values, 0)
}
