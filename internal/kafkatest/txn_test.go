package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The facts about Kafka transactions that kafkawal's exactly-once mode is
// built on, checked with the client it uses (confluent-kafka-go) on the
// broker the tier selects. docs/brokers.md lists them; a broker or client
// upgrade that changes one fails here first.

// txnProducer is a transactional confluent-kafka-go producer that has
// finished InitTransactions. Its reports and errors are drained (and
// counted) so that CommitTransaction and AbortTransaction can flush.
type txnProducer struct {
	*kafka.Producer
	topic string

	mu        sync.Mutex
	failed    []error // delivery reports with an error
	delivered int
}

func newTxnProducer(t *testing.T, ctx context.Context, bootstrap, txnID, topic string, extra kafka.ConfigMap) *txnProducer {
	t.Helper()
	cm := kafka.ConfigMap{
		"bootstrap.servers":      bootstrap,
		"transactional.id":       txnID,
		"linger.ms":              1,
		"go.logs.channel.enable": true,
	}
	for k, v := range extra {
		cm[k] = v
	}
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		t.Fatalf("NewProducer(%s): %v", txnID, err)
	}
	tp := &txnProducer{Producer: p, topic: topic}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range p.Events() {
			if m, ok := ev.(*kafka.Message); ok {
				tp.mu.Lock()
				if m.TopicPartition.Error != nil {
					tp.failed = append(tp.failed, m.TopicPartition.Error)
				} else {
					tp.delivered++
				}
				tp.mu.Unlock()
			}
		}
	}()
	go func() {
		for range p.Logs() {
		}
	}()
	t.Cleanup(func() { p.Close(); <-done })
	ictx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := p.InitTransactions(ictx); err != nil {
		t.Fatalf("InitTransactions(%s): %v", txnID, err)
	}
	return tp
}

// produce sends values to partition 0 of tp.topic and waits until
// librdkafka has their reports (delivered, not committed).
func (tp *txnProducer) produce(t *testing.T, values ...string) {
	t.Helper()
	for _, v := range values {
		err := tp.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &tp.topic, Partition: 0}, Value: []byte(v)}, nil)
		if err != nil {
			t.Fatalf("Produce(%q): %v", v, err)
		}
	}
	if n := tp.Flush(30_000); n != 0 {
		t.Fatalf("Flush: %d records still queued", n)
	}
}

func (tp *txnProducer) begin(t *testing.T) {
	t.Helper()
	if err := tp.BeginTransaction(); err != nil {
		t.Fatalf("BeginTransaction: %v", err)
	}
}

func txnCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// offsets returns the high watermark and the last stable offset of
// partition 0 of topic.
func offsets(t *testing.T, ctx context.Context, bootstrap, topic string) (hwm, lso int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	end, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("ListEndOffsets: %v", err)
	}
	stable, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("ListCommittedOffsets: %v", err)
	}
	e, _ := end.Lookup(topic, 0)
	s, _ := stable.Lookup(topic, 0)
	if e.Err != nil || s.Err != nil {
		t.Fatalf("list offsets of %s[0]: %v, %v", topic, e.Err, s.Err)
	}
	return e.Offset, s.Offset
}

// settled waits, up to d, until partition 0 of topic has no open
// transaction and every transaction marker is written (LSO == HWM), and
// returns the HWM.
func settled(t *testing.T, ctx context.Context, bootstrap, topic string, d time.Duration) int64 {
	t.Helper()
	waitCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var hwm int64
	err := poll(waitCtx, func() (bool, error) {
		var lso int64
		hwm, lso = offsets(t, ctx, bootstrap, topic)
		if lso != hwm {
			return false, fmt.Errorf("LSO %d, HWM %d", lso, hwm)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%s[0]: a transaction still open or a marker unwritten after %v: %v", topic, d, err)
	}
	return hwm
}

func values(recs []*kgo.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Value)
	}
	return out
}

func sameValues(got []*kgo.Record, want ...string) bool {
	v := values(got)
	if len(v) != len(want) {
		return false
	}
	for i := range v {
		if v[i] != want[i] {
			return false
		}
	}
	return true
}

func fencedCode(err error) bool {
	var ke kafka.Error
	return errors.As(err, &ke) && ke.Code() == kafka.ErrFenced && ke.IsFatal()
}

func TestTxnFacts(t *testing.T) {
	b := StartT(t, Options{})
	bs := b.Bootstrap()
	topicN := 0
	newTopic := func(t *testing.T) string {
		topicN++
		name := "kafkatest-txn-" + strconv.Itoa(topicN)
		if err := b.CreateTopic(txnCtx(t), name, 1, nil); err != nil {
			t.Fatalf("CreateTopic: %v", err)
		}
		return name
	}

	// Committed records are read by both isolation levels, aborted ones by
	// read_uncommitted only: a read-back can tell the two apart. A
	// transaction still open holds the last stable offset at its first
	// record, below the high watermark.
	t.Run("isolation levels and the last stable offset", func(t *testing.T) {
		ctx := txnCtx(t)
		topic := newTopic(t)
		p := newTxnProducer(t, ctx, bs, "facts-iso", topic, nil)
		p.begin(t)
		p.produce(t, "c1", "c2")
		if err := p.CommitTransaction(ctx); err != nil {
			t.Fatalf("CommitTransaction: %v", err)
		}
		p.begin(t)
		p.produce(t, "a1")
		if err := p.AbortTransaction(ctx); err != nil {
			t.Fatalf("AbortTransaction: %v", err)
		}
		// The abort's marker reaches the partition after AbortTransaction
		// returns; then no transaction is open and the LSO is the HWM.
		hwmClosed := settled(t, ctx, bs, topic, 30*time.Second)
		p.begin(t)
		p.produce(t, "o1")
		hwm, lso := offsets(t, ctx, bs, topic)
		if lso != hwmClosed || hwm <= lso {
			t.Fatalf("transaction open from offset %d: last stable offset %d, high watermark %d; want the LSO at the open transaction's first record, below the HWM", hwmClosed, lso, hwm)
		}
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		unc, err := ReadAll(rctx, bs, []string{topic}, 4)
		if err != nil || !sameValues(unc, "c1", "c2", "a1", "o1") {
			t.Fatalf("read_uncommitted read %v (%v), want c1 c2 a1 o1", values(unc), err)
		}
		if err := p.CommitTransaction(ctx); err != nil {
			t.Fatalf("CommitTransaction: %v", err)
		}
		com, err := ReadCommitted(rctx, bs, []string{topic}, 3)
		if err != nil || !sameValues(com, "c1", "c2", "o1") {
			t.Fatalf("read_committed read %v (%v), want c1 c2 o1", values(com), err)
		}
	})

	// InitTransactions of a newer instance with the same transactional.id
	// aborts the older one's open transaction, and returns only once the
	// abort is complete: the last stable offset has passed it. The older
	// instance's next commit fails with a fatal ERR__FENCED, and so does
	// everything it tries after.
	t.Run("a newer instance fences the older", func(t *testing.T) {
		ctx := txnCtx(t)
		topic := newTopic(t)
		older := newTxnProducer(t, ctx, bs, "facts-fence", topic, nil)
		older.begin(t)
		older.produce(t, "z1", "z2")
		newer := newTxnProducer(t, ctx, bs, "facts-fence", topic, nil)
		if hwm, lso := offsets(t, ctx, bs, topic); lso != hwm {
			t.Fatalf("after the newer InitTransactions: last stable offset %d, high watermark %d; want the older transaction completely aborted", lso, hwm)
		}
		err := older.CommitTransaction(ctx)
		if !fencedCode(err) {
			t.Fatalf("older CommitTransaction = %v, want a fatal %v", err, kafka.ErrFenced)
		}
		if err := older.BeginTransaction(); err == nil {
			t.Fatalf("older BeginTransaction after being fenced succeeded")
		}
		newer.begin(t)
		newer.produce(t, "n1")
		if err := newer.CommitTransaction(ctx); err != nil {
			t.Fatalf("newer CommitTransaction: %v", err)
		}
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if com, err := ReadCommitted(rctx, bs, []string{topic}, 1); err != nil || !sameValues(com, "n1") {
			t.Fatalf("read_committed read %v (%v), want n1 only", values(com), err)
		}
		if unc, err := ReadAll(rctx, bs, []string{topic}, 3); err != nil || !sameValues(unc, "z1", "z2", "n1") {
			t.Fatalf("read_uncommitted read %v (%v), want the aborted z1 z2, then n1", values(unc), err)
		}
	})

	// A transaction that the coordinator aborts because it stayed open
	// longer than transaction.timeout.ms (an outage does that) ends, for
	// the producer, in the same fatal ERR__FENCED as fencing by a newer
	// instance: the code cannot tell a timeout from a zombie; the age of
	// the transaction can (it was older than the timeout).
	t.Run("a timed-out transaction looks fenced", func(t *testing.T) {
		ctx := txnCtx(t)
		topic := newTopic(t)
		const timeout = 2000
		p := newTxnProducer(t, ctx, bs, "facts-timeout", topic, kafka.ConfigMap{"transaction.timeout.ms": timeout})
		p.begin(t)
		begun := time.Now()
		p.produce(t, "t1")
		// The coordinator's abort writes a marker: the LSO reaches the HWM.
		settled(t, ctx, bs, topic, 30*time.Second)
		err := p.CommitTransaction(ctx)
		if !fencedCode(err) {
			t.Fatalf("CommitTransaction after the coordinator's timeout abort = %v, want a fatal %v", err, kafka.ErrFenced)
		}
		if age := time.Since(begun); age < timeout*time.Millisecond {
			t.Fatalf("fenced after %v, before the transaction's timeout", age)
		}
	})

	// An open transaction survives a broker's kill and restart: the broker
	// still knows it, a newer instance's InitTransactions aborts it, and
	// the LSO is not stuck behind it.
	t.Run("an open transaction survives a broker restart", func(t *testing.T) {
		ctx := txnCtx(t)
		topic := newTopic(t)
		older := newTxnProducer(t, ctx, bs, "facts-restart", topic, nil)
		older.begin(t)
		older.produce(t, "k1")
		if hwm, lso := offsets(t, ctx, bs, topic); lso >= hwm {
			t.Fatalf("before the kill: LSO %d, HWM %d; want the transaction open", lso, hwm)
		}
		if err := b.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := b.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if hwm, lso := offsets(t, ctx, bs, topic); lso >= hwm {
			t.Fatalf("after the restart: LSO %d, HWM %d; want the transaction still open", lso, hwm)
		}
		newer := newTxnProducer(t, ctx, bs, "facts-restart", topic, nil)
		newer.begin(t)
		newer.produce(t, "k2")
		if err := newer.CommitTransaction(ctx); err != nil {
			t.Fatalf("newer CommitTransaction: %v", err)
		}
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if com, err := ReadCommitted(rctx, bs, []string{topic}, 1); err != nil || !sameValues(com, "k2") {
			t.Fatalf("read_committed read %v (%v), want k2 only", values(com), err)
		}
	})

	// A read_committed librdkafka consumer stops at the last stable offset:
	// its PartitionEOF there is below the high watermark while another
	// transactional id's transaction is open; once that ends, it reaches the
	// high watermark, past the trailing control records. So "read to the
	// end" must wait for an EOF at or past the high watermark taken after
	// InitTransactions, not for the first EOF.
	t.Run("read_committed consumer reaches the end only past open transactions", func(t *testing.T) {
		ctx := txnCtx(t)
		topic := newTopic(t)
		a := newTxnProducer(t, ctx, bs, "facts-eof-a", topic, nil)
		o := newTxnProducer(t, ctx, bs, "facts-eof-o", topic, nil)
		a.begin(t)
		a.produce(t, "a1")
		if err := a.CommitTransaction(ctx); err != nil {
			t.Fatal(err)
		}
		o.begin(t)
		o.produce(t, "o1")
		a.begin(t)
		a.produce(t, "a2")
		if err := a.CommitTransaction(ctx); err != nil {
			t.Fatal(err)
		}
		hwm, lso := offsets(t, ctx, bs, topic)
		c := newReadCommittedConsumer(t, bs, topic)
		seen, eof := c.untilEOF(t, 10*time.Second)
		if eof != lso || eof >= hwm || fmt.Sprint(seen) != "[a1]" {
			t.Fatalf("with a transaction open: read %v, EOF at %d; want [a1] and EOF at the LSO %d, below the HWM %d", seen, eof, lso, hwm)
		}
		if err := o.AbortTransaction(ctx); err != nil {
			t.Fatal(err)
		}
		// AbortTransaction returns once the coordinator has logged the
		// abort; the marker reaches the partition after that. The HWM to
		// expect is the one with every marker written (LSO == HWM).
		hwm = settled(t, ctx, bs, topic, 30*time.Second)
		seen, eof = c.untilEOF(t, 10*time.Second)
		if eof != hwm || fmt.Sprint(seen) != "[a2]" {
			t.Fatalf("after the abort: read %v, EOF at %d; want [a2] and EOF at the HWM %d", seen, eof, hwm)
		}
		pos, err := c.Position([]kafka.TopicPartition{{Topic: &topic, Partition: 0}})
		if err != nil || int64(pos[0].Offset) != hwm {
			t.Fatalf("Position = %v (%v), want the HWM %d: past the control records", pos, err, hwm)
		}
	})
}

type rcConsumer struct {
	*kafka.Consumer
}

func newReadCommittedConsumer(t *testing.T, bootstrap, topic string) rcConsumer {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":      bootstrap,
		"group.id":               "kafkatest-txn-facts", // required by confluent-kafka-go; never joined
		"enable.auto.commit":     false,
		"enable.partition.eof":   true,
		"isolation.level":        "read_committed",
		"go.logs.channel.enable": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range c.Logs() {
		}
	}()
	t.Cleanup(func() { c.Close() })
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	return rcConsumer{c}
}

// untilEOF returns the values read until the next PartitionEOF, and its
// offset.
func (c rcConsumer) untilEOF(t *testing.T, d time.Duration) (seen []string, eof int64) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			seen = append(seen, string(e.Value))
		case kafka.PartitionEOF:
			return seen, int64(e.Offset)
		}
	}
	t.Fatalf("no PartitionEOF within %v (read %v)", d, seen)
	return nil, 0
}
