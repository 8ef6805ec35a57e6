package sender

import (
	"context"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

// lanePeekWithin waits for l's next record to produce, reading its
// reader's batches as they come; nil if none comes within 5 s.
func lanePeekWithin(s *Sender, l *lane) *wal.Entry {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if e := s.lanePeek(l); e != nil {
			return e
		}
		select {
		case <-s.laneReady:
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// laneOverWAL returns a sender over a WAL of n records of topic t,
// alternately of partitions 0 and 1, all handed over by its main stream,
// and the active lane of partition 0 reading from the first; the WAL and
// the lane's reader are closed when the test ends.
func laneOverWAL(t *testing.T, n int) (*Sender, *lane, []wal.Record) {
	t.Helper()
	log, _, err := wal.Open(t.TempDir(), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	recs := make([]wal.Record, n)
	for i := range recs {
		recs[i] = wal.Record{Topic: "t", Partition: int32(i % 2), Value: []byte("v")}
	}
	if _, err := log.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	s := &Sender{wal: log, rt: newRouter(consistent, 0), win: newWindow(uint64(n)+1, 256), mode: normal, positional: true,
		laneReady: make(chan struct{}, 1), lg: Config{}.withDefaults().Logger}
	tr := s.rt.topic("t")
	tr.count = 2
	p := tr.part(0)
	l := s.newLane(tr, p)
	p.lane = l
	l.active, l.start, l.readPos = true, 1, 1
	t.Cleanup(func() { s.stopReading(l) })
	return s, l, recs
}

// TestLaneReseekKeepsItsUnproducedRecords: a lane that read records of
// its own it could not produce yet (its partition's share was full) and
// is then sent to read again (a park round ended, the topic's count
// changed) goes on from the first record it has not produced, not from
// where its reader had got to. Before, seekLane started the reader at the
// end of the batch it held (scanned) and dropped the batch: the records
// in it were never produced, and once the lane produced one after them
// its read position passed them and the watermark and WAL cursor went
// past records never delivered. Found while tracing a record the crash
// drill on two Apache Kafka brokers lost (its partition parked while the
// cluster restarted).
func TestLaneReseekKeepsItsUnproducedRecords(t *testing.T) {
	const n = 200
	s, l, _ := laneOverWAL(t, n)

	if e := lanePeekWithin(s, l); e == nil || e.Seq != 1 {
		t.Fatalf("the lane's first record is %+v; want 1", e)
	}
	if l.scanned <= 3 {
		t.Fatalf("the reader's batch ends at %d; the test needs one holding several of the lane's records", l.scanned)
	}
	// Nothing produced; the lane is sent to read again.
	l.reseek = true
	if e := lanePeekWithin(s, l); e == nil || e.Seq != 1 {
		t.Fatalf("after a reseek the lane's next record is %+v; want 1 (records read but not produced were skipped)", e)
	}
	// The same with one record produced: the next is the one after it.
	l.own(owned{seq: 1, size: 1, state: inFlight})
	l.readPos = 2
	l.pending = l.pending[1:]
	l.reseek = true
	if e := lanePeekWithin(s, l); e == nil || e.Seq != 3 {
		t.Fatalf("after a reseek with 1 produced, the lane's next record is %+v; want 3", e)
	}
}

// TestParkRoundWhileTheLaneReadAhead: a park round ends (parkedRound)
// while the lane holds records it read beyond the round's end (the main
// stream's next when the round began); the lane then produces each of its
// records once, in order: those below the round's end from the park log,
// the rest from the WAL. Before, the records it held beyond the round's end
// were never produced.
func TestParkRoundWhileTheLaneReadAhead(t *testing.T) {
	const n, roundEnd = 200, 100
	s, l, recs := laneOverWAL(t, n)

	if e := lanePeekWithin(s, l); e == nil || e.Seq != 1 {
		t.Fatalf("the lane's first record is %+v; want 1", e)
	}
	if l.scanned <= roundEnd+2 {
		t.Fatalf("the reader's batch ends at %d; the test needs one beyond the round's end %d", l.scanned, roundEnd)
	}
	// The round copied the lane's records below its end; its outcome
	// comes in now.
	pl, err := s.wal.CreatePark(wal.ParkMeta{Topic: "t", Partition: 0, Count: 2, Partitioner: s.partitioner})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq < roundEnd; seq += 2 {
		if err := pl.Append(seq, &recs[seq-1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	l.park = &parked{log: pl, round: true}
	s.parkedRound(parkDone{parkJob: parkJob{l: l, log: pl, from: 1, to: roundEnd}})

	var got []uint64
	for len(got) < n/2 {
		e := lanePeekWithin(s, l)
		if e == nil {
			t.Fatalf("the lane produced %d of its %d records and has no next: %v", len(got), n/2, got)
		}
		got = append(got, e.Seq)
		l.readPos, l.pending = e.Seq+1, l.pending[1:]
	}
	for i, seq := range got {
		if want := uint64(2*i + 1); seq != want {
			t.Fatalf("the lane's record %d is %d; want %d (produced: %v)", i, seq, want, got)
		}
	}
}
