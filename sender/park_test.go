package sender

import (
	"testing"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

// TestParkRoundWaitsForTheWindowsRecordsOfThePartition: while the window
// holds an unacknowledged record of a stalled partition that the
// partition's lane did not take over (sent with Opaque, so not among the
// partition's flights: global isolation), no park round starts: the park
// log would stand for that record after a crash (take: skipBelow) while
// it was never delivered. Once the record is acknowledged, the round
// starts.
func TestParkRoundWaitsForTheWindowsRecordsOfThePartition(t *testing.T) {
	log, _, err := wal.Open(t.TempDir(), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	s := &Sender{wal: log, rt: newRouter(consistent, 0), win: newWindow(1, 64), mode: normal, positional: true,
		cfg: Config{ParkAfter: time.Second}, park: &parker{jobs: make(chan parkJob, 1)}, partitioner: "consistent_random",
		lg: Config{}.withDefaults().Logger}
	tr := s.rt.topic("t")
	tr.count = 2
	p := tr.part(0)
	s.win.addTo(1, 10, time.Now().UnixNano(), p) // produced with Opaque: no flight of p
	l := s.deferPart(p)
	s.handOver(l, &wal.Entry{Seq: 2, Size: 10}) // the lane's own, to park
	p.stalled, p.since = true, time.Now().Add(-time.Minute)

	s.parkLanes(time.Now())
	if len(s.park.jobs) != 0 {
		t.Fatalf("a park round started while the window holds record 1 of the partition: %+v", <-s.park.jobs)
	}
	s.win.resolve(1, true)
	s.parkLanes(time.Now())
	if len(s.park.jobs) != 1 {
		t.Fatal("no park round once the window's record of the partition is acknowledged")
	}
	if job := <-s.park.jobs; job.l != l || job.from != 2 || job.to != 3 {
		t.Fatalf("park round %+v; want the lane's, records 2 up to 3", job)
	}
}
