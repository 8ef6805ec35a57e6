package sender

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
	"github.com/kafkawal/kafkawal/wal"
)

// partitionKeys are keys of every length up to 40 (the hashes' tails and
// word loops), empty, and high bytes (fnv1a's sign, murmur2's mask).
func partitionKeys() [][]byte {
	rnd := rand.New(rand.NewPCG(1, 2))
	keys := [][]byte{{}, []byte("kafka"), []byte("giberish123456789"), {0xff, 0xfe, 0x80}}
	for n := 1; n <= 40; n++ {
		for j := 0; j < 5; j++ {
			k := make([]byte, n)
			for i := range k {
				k[i] = byte(rnd.Uint32())
			}
			keys = append(keys, k)
		}
	}
	return keys
}

// Our partitioners give every key the partition librdkafka's give it:
// each key is produced with PartitionAny by a plain librdkafka producer
// configured with that partitioner, and its delivery report's partition
// compared with ours.
func TestPartitionerMatchesLibrdkafka(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const parts = 7
	keys := partitionKeys()
	for name, kind := range partitionerNames {
		if kind == random {
			continue // nothing to match: a random partition per record
		}
		topic := "hash-" + name
		if err := b.CreateTopic(ctx, topic, parts, nil); err != nil {
			t.Fatal(err)
		}
		p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": b.Bootstrap(), "partitioner": name,
			"go.delivery.report.fields": "none"})
		if err != nil {
			t.Fatal(err)
		}
		hashed := 0
		for i, k := range keys {
			want, ok := kind.hash(k, parts)
			if !ok {
				continue // keyless for this partitioner: the sticky partition
			}
			hashed++
			err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
				Key: k, Value: []byte("v"), Opaque: [2]int32{int32(i), want}}, nil)
			if err != nil {
				t.Fatal(err)
			}
		}
		for got := 0; got < hashed; got++ {
			select {
			case ev := <-p.Events():
				m, ok := ev.(*kafka.Message)
				if !ok {
					got--
					continue
				}
				if m.TopicPartition.Error != nil {
					t.Fatalf("%s: %v", name, m.TopicPartition.Error)
				}
				o := m.Opaque.([2]int32)
				if m.TopicPartition.Partition != o[1] {
					t.Errorf("%s: key %x: librdkafka chose partition %d, we choose %d", name, keys[o[0]], m.TopicPartition.Partition, o[1])
				}
			case <-ctx.Done():
				t.Fatalf("%s: %d of %d reports", name, got, hashed)
			}
		}
		p.Close()
		if hashed < len(keys)-1 {
			t.Fatalf("%s: only %d of %d keys hashed", name, hashed, len(keys))
		}
	}
}

// Which keys each partitioner hashes, and which go to the sticky (or
// random) partition, as librdkafka's rd_kafka_msg_partitioner decides.
func TestPartitionerKeyless(t *testing.T) {
	for name, kind := range partitionerNames {
		_, nilHashed := kind.hash(nil, 3)
		_, emptyHashed := kind.hash([]byte{}, 3)
		_, keyHashed := kind.hash([]byte("k"), 3)
		wantEmpty := kind != random && kind != consistentRandom
		if nilHashed || emptyHashed != wantEmpty || keyHashed != (kind != random) {
			t.Errorf("%s: nil key hashed %v, empty key %v, key %v", name, nilHashed, emptyHashed, keyHashed)
		}
	}
	if _, err := partitionerOf(kafka.ConfigMap{"partitioner": "crc"}); err == nil {
		t.Fatal("an unknown partitioner was accepted")
	}
}

// Keyless records stay on one partition for sticky.partitioning.linger.ms,
// then move; the random partitioner picks per record; both only among
// partitions with a leader when some have none, and never a partition that
// does not accept records (a stalled one) while another does.
func TestStickyAndRandomPartitions(t *testing.T) {
	r := newRouter(consistentRandom, 10*time.Millisecond)
	now := time.Unix(1000, 0)
	r.clock = func() time.Time { return now }
	r.tick()
	tr := r.topic("t")
	all := func(*topicRoute, int32) bool { return true }
	if _, ok := r.steer(tr, all); ok {
		t.Fatal("a partition chosen before the partition count is known")
	}
	r.setMeta("t", &kafka.TopicMetadata{Topic: "t", Partitions: []kafka.PartitionMetadata{
		{ID: 0, Leader: -1}, {ID: 1, Leader: 1}, {ID: 2, Leader: -1}, {ID: 3, Leader: 1}}}, nil, false)
	first, _ := r.steer(tr, all)
	seen := map[int32]bool{}
	for i := 0; i < 200; i++ {
		p, ok := r.steer(tr, all)
		if !ok || p != first {
			t.Fatalf("keyless record %d within the linger went to %d, not the sticky %d", i, p, first)
		}
		now = now.Add(11 * time.Millisecond)
		r.tick()
		p, _ = r.steer(tr, all)
		seen[p] = true
		first = p
	}
	if len(seen) != 2 || !seen[1] || !seen[3] {
		t.Fatalf("sticky partitions %v, want both partitions with a leader (1, 3)", seen)
	}
	// The sticky partition stops accepting: the next keyless record goes
	// to the other one at once, and to none when neither accepts.
	sticky, _ := r.steer(tr, all)
	other := map[int32]int32{1: 3, 3: 1}[sticky]
	notSticky := func(_ *topicRoute, p int32) bool { return p != sticky }
	for i := 0; i < 50; i++ {
		if p, ok := r.steer(tr, notSticky); !ok || p != other {
			t.Fatalf("with partition %d refusing, a keyless record went to %d (%v)", sticky, p, ok)
		}
	}
	if _, ok := r.steer(tr, func(*topicRoute, int32) bool { return false }); ok {
		t.Fatal("a partition chosen while none accepts")
	}
	r.kind = random
	seen = map[int32]bool{}
	for i := 0; i < 200; i++ {
		p, _ := r.steer(tr, all)
		seen[p] = true
	}
	if len(seen) != 2 || !seen[1] || !seen[3] {
		t.Fatalf("random partitions %v, want both partitions with a leader", seen)
	}
	r.setMeta("t", nil, errors.New("timed out"), false)
	if p, ok := r.steer(tr, all); !ok || p < 0 || p > 3 {
		t.Fatal("a failed metadata refresh dropped the known partition count")
	}
}

func TestFifoRing(t *testing.T) {
	var f fifo
	next, want := uint64(1), uint64(1)
	for round := 0; round < 50; round++ {
		for i := 0; i < round*7; i++ {
			f.push(flight{seq: next})
			next++
		}
		if f.n > 0 && f.front().seq != want {
			t.Fatalf("front %d, want %d", f.front().seq, want)
		}
		for i := 0; i < round*5; i++ {
			got, ok := f.pop()
			if !ok || got.seq != want {
				t.Fatalf("pop %d: %d %v", want, got.seq, ok)
			}
			want++
		}
	}
	for ; want < next; want++ {
		if got, ok := f.pop(); !ok || got.seq != want {
			t.Fatalf("pop %d: %d %v", want, got.seq, ok)
		}
	}
	if _, ok := f.pop(); ok {
		t.Fatal("pop from an empty ring")
	}
}

// positionalSender is a sender with records 1..n in flight, all produced
// to partition 0 of topic t without Opaque.
func positionalSender(t *testing.T, n int) *Sender {
	t.Helper()
	l, _ := openLogs(t)
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	s := &Sender{wal: l, p: p, win: newWindow(1, 64), rt: newRouter(consistentRandom, 0), positional: true,
		mode: normal, lg: Config{}.withDefaults().Logger, notify: make(chan struct{})}
	for seq := uint64(1); seq <= uint64(n); seq++ {
		if _, err := l.Append(context.Background(), []wal.Record{{Topic: "t", Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
		p := s.rt.topic("t").part(0)
		s.win.addTo(seq, 10, 0, p)
		s.pushFlight(p, flight{seq: seq, size: 10})
	}
	return s
}

func report(s *Sender, offset int64, err error) {
	topic := "t"
	s.report(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0, Offset: kafka.Offset(offset), Error: err}})
}

// Reports without Opaque go to the partition's records in produce order.
func TestPositionalReportsInOrder(t *testing.T) {
	s := positionalSender(t, 3)
	report(s, 10, nil)
	report(s, 11, nil)
	if s.win.low != 3 || s.win.produced != 1 {
		t.Fatalf("after 2 reports: low %d, in flight %d; want 3 and 1", s.win.low, s.win.produced)
	}
	report(s, 12, nil)
	if s.win.low != 4 || s.stats.anomalies.Load() != 0 {
		t.Fatalf("low %d anomalies %d", s.win.low, s.stats.anomalies.Load())
	}
	report(s, 13, nil) // nothing left in flight there
	if s.stats.anomalies.Load() != 1 || s.win.low != 4 {
		t.Fatalf("a report for no record: anomalies %d, low %d", s.stats.anomalies.Load(), s.win.low)
	}
}

// After a failure, no positional success is believed until the rewind: if
// librdkafka had reported a later record's failure first, the success that
// follows would be that record's, not the next one's.
func TestPositionalSuccessAfterFailureIsNotBelieved(t *testing.T) {
	s := positionalSender(t, 3)
	report(s, 0, kafka.NewError(kafka.ErrMsgTimedOut, "", false))
	if s.mode != draining {
		t.Fatalf("mode %v after a failure", s.mode)
	}
	report(s, 20, nil)
	report(s, 21, nil)
	s.maybeRewind()
	if s.mode != normal || s.win.low != 1 || s.win.next != 1 || s.stats.delivered.Load() != 0 {
		t.Fatalf("mode %v low %d next %d delivered %d; want every record re-sent", s.mode, s.win.low, s.win.next, s.stats.delivered.Load())
	}
	if s.win.nextDone() {
		t.Fatal("record 1 is marked done: it would be skipped")
	}
}

// The tripwire: a partition's success offsets must rise in report order.
// If not, the sender re-sends everything and stops trusting positions.
func TestPositionalTripwire(t *testing.T) {
	s := positionalSender(t, 3)
	report(s, 10, nil)
	report(s, 9, nil)
	if s.stats.anomalies.Load() != 1 || s.positional || s.mode != draining {
		t.Fatalf("anomalies %d positional %v mode %v", s.stats.anomalies.Load(), s.positional, s.mode)
	}
	if s.win.low != 2 {
		t.Fatalf("low %d, want 2: only the first report was believed", s.win.low)
	}
	e := wal.Entry{Seq: 4, Record: wal.Record{Topic: "t", Partition: 0}}
	if d := s.dest(&e, false); !d.opaque {
		t.Fatal("a record routed by position after the tripwire")
	}
}

// Through librdkafka and the embedded broker: PartitionAny records are
// partitioned by the sender (reports attributed by position) once the
// topic's metadata is in, keyed ones where librdkafka would put them.
func TestSenderPartitionsPartitionAny(t *testing.T) {
	b, ctx := brokerWithTopic(t, "any", 5)
	l, dl := openLogs(t)
	s, err := New(l, dl, Config{Kafka: kafka.ConfigMap{"bootstrap.servers": b.Bootstrap(), "partitioner": "murmur2_random"}})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	const n = 3000
	var acked []uint64
	for i := 1; i <= n; i++ {
		r := wal.Record{Topic: "any", Partition: wal.PartitionAny, Value: []byte(fmt.Sprint(i))}
		if i%2 == 0 {
			r.Key = []byte(fmt.Sprint("key-", i%17))
		}
		seq, err := l.Append(ctx, []wal.Record{r})
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, seq)
		if i == 10 {
			if err := s.Flush(ctx, seq); err != nil { // the first ones go by Opaque while metadata is fetched
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(ctx, l.LastSeq()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.ReportAnomalies != 0 || st.Resent != 0 {
		t.Fatalf("stats %+v", st)
	}
	if c := s.rt.topics["any"].count; c != 5 {
		t.Fatalf("partition count %d, want 5: the sender never partitioned", c)
	}
	recs, err := kafkatest.ReadAll(ctx, b.Bootstrap(), []string{"any"}, n)
	if err != nil {
		t.Fatal(err)
	}
	if rep := kafkatest.Verify(acked, recs, valueID, nil); !rep.OK() || rep.Duplicates != 0 {
		t.Fatalf("verify: %v", rep)
	}
	for _, r := range recs {
		if r.Key == nil {
			continue
		}
		if want, _ := murmur2Random.hash(r.Key, 5); r.Partition != want {
			t.Fatalf("key %s in partition %d, librdkafka's murmur2 gives %d", r.Key, r.Partition, want)
		}
	}
}

// At Close too, positional successes are believed until the first failure
// report and not after it.
func TestShutdownBelievesPositionalSuccessesUntilAFailure(t *testing.T) {
	s := positionalSender(t, 3)
	events := make(chan kafka.Event, 3)
	topic := "t"
	for i, err := range []error{nil, kafka.NewError(kafka.ErrPurgeInflight, "", false), nil} {
		events <- &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0, Offset: kafka.Offset(10 + i), Error: err}}
	}
	s.events = events
	s.meta = startMeta(s.p)
	s.shutdown()
	if s.win.low != 2 || s.win.at(3).state == done {
		t.Fatalf("low %d, record 3 %v: want record 1 delivered, records 2 and 3 not", s.win.low, s.win.at(3).state)
	}
	if c := s.wal.Cursor(); c != 1 {
		t.Fatalf("cursor %d, want 1", c)
	}
}

// The metadata goroutine answers, and closing it twice (a rebuild that
// failed to create its new producer closes the old one again) is safe.
func TestMetaFetcher(t *testing.T) {
	b, ctx := brokerWithTopic(t, "meta", 3)
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": b.Bootstrap()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f := startMeta(p)
	if !f.ask("meta") {
		t.Fatal("ask refused")
	}
	select {
	case a := <-f.out:
		if a.err != nil || a.md == nil || len(a.md.Partitions) != 3 {
			t.Fatalf("answer %+v", a)
		}
	case <-ctx.Done():
		t.Fatal("no answer")
	}
	f.close()
	f.close()
}
