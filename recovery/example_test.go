package recovery_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kafkawal/kafkawal/recovery"
	"github.com/kafkawal/kafkawal/wal"
)

// Repair runs as wal's BeforeOpen hook, under the directory lock: a torn
// tail is cut (and kept in quarantine/) before tidwall/wal parses it.
func ExampleRepair() {
	dir, _ := os.MkdirTemp("", "kafkawal-example-")
	defer os.RemoveAll(dir)
	l, _, _ := wal.Open(dir, wal.Options{})
	for i := range 3 {
		l.Append(context.Background(), []wal.Record{{Topic: "orders", Value: []byte{byte(i)}}})
	}
	l.Close()
	// A crash in the middle of the third write.
	seg := filepath.Join(dir, wal.SegmentsDir, wal.SegmentName(1))
	fi, _ := os.Stat(seg)
	os.Truncate(seg, fi.Size()-5)

	var rep recovery.Report
	l, info, err := wal.Open(dir, wal.Options{BeforeOpen: func(dir string) error {
		var err error
		rep, err = recovery.Repair(dir, recovery.Options{})
		return err
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	fmt.Println("torn tails cut:", rep.TornTailRepairs, "last sequence:", info.LastSeq)
	// Output: torn tails cut: 1 last sequence: 2
}

// Scan is what `kafkawal verify` runs: every segment, every checksum,
// nothing changed.
func ExampleScan() {
	dir, _ := os.MkdirTemp("", "kafkawal-example-")
	defer os.RemoveAll(dir)
	l, _, _ := wal.Open(dir, wal.Options{})
	l.Append(context.Background(), []wal.Record{{Topic: "orders"}, {Topic: "payments"}})
	l.Close()

	rep, err := recovery.Scan(dir, recovery.ScanOptions{
		Progress: func(done, total int64) { fmt.Printf("checked %d of %d bytes\n", done, total) },
	})
	if err != nil {
		fmt.Println("damaged:", err)
	}
	fmt.Printf("%d segment(s), %d records, sequences %d..%d\n", rep.Segments, rep.Records, rep.FirstSeq, rep.LastSeq)
	// Output:
	// checked 58 of 58 bytes
	// 1 segment(s), 2 records, sequences 1..2
}
