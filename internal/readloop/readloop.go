// Package readloop is the read-back loop that the WAL's benchmarks (package
// wal, which compares its read paths) and the suite's (package bench, whose
// figure bench/table.sh adds to the end-to-end bound) share, so that both
// measure the same reads.
package readloop

import "testing"

// Run reads from first round and round until b.N records are read. Each
// call read(i, seq) reads from seq (i counts the calls, for callers that
// recycle buffers by it) and returns the records read and the last one's
// sequence; the loop starts over at first once it reaches end. It fails b
// on an error or an empty read: a read-back that returns nothing would
// spin without measuring anything.
func Run(b *testing.B, first, end uint64, read func(i int, seq uint64) (n int, last uint64, err error)) {
	seq := first
	for n, i := 0, 0; n < b.N; i++ {
		got, last, err := read(i, seq)
		if err != nil || got == 0 {
			b.Fatalf("read from %d: %d records, %v", seq, got, err)
		}
		n += got
		if seq = last + 1; seq >= end {
			seq = first
		}
	}
}
