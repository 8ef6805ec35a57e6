package sender

import (
	"context"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

// lanePeekWithin waits for l's next record to produce, reading its
// reader's batches as they come.
func lanePeekWithin(t *testing.T, s *Sender, l *lane) *wal.Entry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if e := s.lanePeek(l); e != nil {
			return e
		}
		select {
		case <-s.laneReady:
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("the lane's reader sent no record within 10s")
	return nil
}

// TestLaneReseekKeepsItsUnproducedRecords: a lane that read records of
// its own it could not produce yet (its partition's share was full) and
// is then sent to read again (a park round ended, the topic's count
// changed) goes on from the first record it has not produced, not from
// where its reader had got to. Before, seekLane started the reader at the
// end of the batch it held (scanned) and dropped the batch: the records
// in it were never produced, and once the lane produced one after them
// its read position passed them and the watermark and WAL cursor went
// past records never delivered (one record lost in the real-broker crash
// drill, partition parked while the cluster restarted).
func TestLaneReseekKeepsItsUnproducedRecords(t *testing.T) {
	log, _, err := wal.Open(t.TempDir(), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	const n = 200
	recs := make([]wal.Record, n)
	for i := range recs {
		recs[i] = wal.Record{Topic: "t", Partition: int32(i % 2), Value: []byte("v")}
	}
	if _, err := log.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	s := &Sender{wal: log, rt: newRouter(consistent, 0), win: newWindow(n+1, 256), mode: normal, positional: true,
		laneReady: make(chan struct{}, 1), lg: Config{}.withDefaults().Logger}
	tr := s.rt.topic("t")
	tr.count = 2
	p := tr.part(0)
	l := s.newLane(tr, p)
	p.lane = l
	l.active, l.start, l.readPos = true, 1, 1
	defer s.stopReading(l)

	if e := lanePeekWithin(t, s, l); e.Seq != 1 {
		t.Fatalf("the lane's first record is %d; want 1", e.Seq)
	}
	if l.scanned <= 3 {
		t.Fatalf("the reader's batch ends at %d; the test needs one holding several of the lane's records", l.scanned)
	}
	// Nothing produced; the lane is sent to read again.
	l.reseek = true
	if e := lanePeekWithin(t, s, l); e.Seq != 1 {
		t.Fatalf("after a reseek the lane's next record is %d; want 1 (records read but not produced were skipped)", e.Seq)
	}
	// The same with one record produced: the next is the one after it.
	l.own(owned{seq: 1, size: 1, state: inFlight})
	l.readPos = 2
	l.pending = l.pending[1:]
	l.reseek = true
	if e := lanePeekWithin(t, s, l); e.Seq != 3 {
		t.Fatalf("after a reseek with 1 produced, the lane's next record is %d; want 3", e.Seq)
	}
}
