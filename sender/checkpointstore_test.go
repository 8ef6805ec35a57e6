package sender

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// ckptWriter is a transactional producer that writes records to the
// checkpoint topic directly, as other instances (or this one) would.
type ckptWriter struct {
	p     *kafka.Producer
	topic string
	part  int32
}

func newCkptWriter(t *testing.T, ctx context.Context, bootstrap, txnID, topic string, part int32) *ckptWriter {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": bootstrap, "transactional.id": txnID, "linger.ms": 1,
		"go.logs.channel.enable": true, "batch.num.messages": 500,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range p.Events() {
		}
	}()
	go func() {
		for range p.Logs() {
		}
	}()
	t.Cleanup(func() { p.Close(); <-done })
	if err := p.InitTransactions(ctx); err != nil {
		t.Fatalf("InitTransactions: %v", err)
	}
	return &ckptWriter{p: p, topic: topic, part: part}
}

func (w *ckptWriter) txn(t *testing.T, ctx context.Context, commit bool, kvs ...any) {
	t.Helper()
	if err := w.p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	w.put(t, kvs...)
	var err error
	if commit {
		err = w.p.CommitTransaction(ctx)
	} else {
		w.p.Flush(10_000)
		err = w.p.AbortTransaction(ctx)
	}
	if err != nil {
		t.Fatalf("end transaction (commit %v): %v", commit, err)
	}
}

// put produces key/value pairs (string, []byte) in the open transaction.
func (w *ckptWriter) put(t *testing.T, kvs ...any) {
	t.Helper()
	for i := 0; i < len(kvs); i += 2 {
		m := &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &w.topic, Partition: w.part},
			Key:            []byte(kvs[i].(string)), Value: kvs[i+1].([]byte),
		}
		for {
			err := w.p.Produce(m, nil)
			if err == nil {
				break
			}
			if ke, ok := err.(kafka.Error); !ok || ke.Code() != kafka.ErrQueueFull {
				t.Fatalf("Produce: %v", err)
			}
			w.p.Flush(100)
		}
	}
	if n := w.p.Flush(30_000); n != 0 {
		t.Fatalf("Flush: %d left", n)
	}
}

func ckpt(next uint64) []byte {
	c := Checkpoint{Writer: 7, Commit: next, Time: time.UnixMilli(int64(next)), Next: next}
	return c.encode()
}

// storeT is a checkpoint store for txnID on broker b, with an admin client.
func storeT(t *testing.T, b kafkatest.Broker, txnID, topic string) (*checkpointStore, *kafka.AdminClient) {
	t.Helper()
	cfg := Config{
		Kafka:           kafka.ConfigMap{"bootstrap.servers": b.Bootstrap()},
		ExactlyOnce:     true,
		TransactionalID: txnID,
		CheckpointTopic: topic,
	}.withDefaults()
	kcfg, err := cfg.KafkaConfig()
	if err != nil {
		t.Fatal(err)
	}
	adm, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": b.Bootstrap(), "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(adm.Close)
	cs := newCheckpointStore(cfg, kcfg)
	t.Cleanup(cs.closing.Wait)
	return cs, adm
}

// The store creates a missing topic compacted, with checkpointPartitions
// partitions, finds the key's partition in it, and reads nothing from it.
func TestCheckpointStoreCreatesTheTopic(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cs, adm := storeT(t, b, "orders-1", "ckpt-created")
	if err := cs.ensure(ctx, adm); err != nil {
		t.Fatalf("ensure: %v", err)
	}
	if want := checkpointPartition([]byte("orders-1"), checkpointPartitions); cs.partition != want {
		t.Fatalf("partition %d, want %d", cs.partition, want)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Bootstrap()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ka := kadm.NewClient(cl)
	td, err := ka.ListTopics(ctx, "ckpt-created")
	if err != nil || len(td["ckpt-created"].Partitions) != checkpointPartitions {
		t.Fatalf("topic has %d partitions (%v), want %d", len(td["ckpt-created"].Partitions), err, checkpointPartitions)
	}
	rc, err := ka.DescribeTopicConfigs(ctx, "ckpt-created")
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := rc.On("ckpt-created", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range cfgs.Configs {
		got[c.Key] = c.MaybeValue()
	}
	if got["cleanup.policy"] != "compact" || got["segment.ms"] != checkpointSegmentMs {
		t.Fatalf("cleanup.policy=%q segment.ms=%q, want compact and %s", got["cleanup.policy"], got["segment.ms"], checkpointSegmentMs)
	}
	// A second store finds the topic as it is.
	cs2, adm2 := storeT(t, b, "orders-2", "ckpt-created")
	if err := cs2.ensure(ctx, adm2); err != nil {
		t.Fatalf("ensure of an existing topic: %v", err)
	}
	if _, ok, err := cs2.read(ctx, adm2); ok || err != nil {
		t.Fatalf("read of an empty partition: found %v, %v; want none, nil", ok, err)
	}
}

// read returns the key's latest committed checkpoint: not an aborted one,
// not another key's, however far back it is, and not before every
// transaction open below the end of the partition has ended.
func TestCheckpointStoreReadsTheLatestCommitted(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	const topic = "ckpt-read"
	if err := b.CreateTopic(ctx, topic, 3, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	cs, adm := storeT(t, b, "me", topic)
	if err := cs.ensure(ctx, adm); err != nil {
		t.Fatal(err)
	}
	if cs.partition != checkpointPartition([]byte("me"), 3) {
		t.Fatalf("partition %d of an existing 3-partition topic", cs.partition)
	}
	mine := newCkptWriter(t, ctx, b.Bootstrap(), "me", topic, cs.partition)
	other := newCkptWriter(t, ctx, b.Bootstrap(), "other", topic, cs.partition)

	want := func(next uint64) {
		t.Helper()
		c, ok, err := cs.read(ctx, adm)
		if err != nil || !ok || c.Next != next {
			t.Fatalf("read = next %d, found %v, %v; want next %d", c.Next, ok, err, next)
		}
	}
	mine.txn(t, ctx, true, "me", ckpt(10))
	want(10)
	mine.txn(t, ctx, true, "other", ckpt(99), "me", ckpt(20), "other", ckpt(98))
	want(20)
	mine.txn(t, ctx, false, "me", ckpt(30))
	want(20)

	// Far behind the end: more than the first windows of other keys.
	var kvs []any
	for i := 0; i < 3*firstWindow+firstWindow*16; i++ {
		kvs = append(kvs, "other", ckpt(uint64(i)))
	}
	other.txn(t, ctx, true, kvs...)
	want(20)

	// Another id's open transaction below the end: the read waits.
	if err := other.p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	other.put(t, "other", ckpt(5))
	mine.txn(t, ctx, true, "me", ckpt(40))
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	_, ok, err := cs.read(short, adm)
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with a transaction open below the end = found %v, %v; want it to wait (deadline exceeded)", ok, err)
	}
	if err := other.p.AbortTransaction(ctx); err != nil {
		t.Fatal(err)
	}
	want(40)
}

// A checkpoint value this kafkawal cannot read is an error to act on, not
// a missing checkpoint (which would send everything again).
func TestCheckpointStoreRefusesAnUnreadableValue(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cs, adm := storeT(t, b, "me", "ckpt-bad")
	if err := cs.ensure(ctx, adm); err != nil {
		t.Fatal(err)
	}
	w := newCkptWriter(t, ctx, b.Bootstrap(), "me", "ckpt-bad", cs.partition)
	w.txn(t, ctx, true, "me", []byte{9, 1, 2})
	_, ok, err := cs.read(ctx, adm)
	if ok || !errors.Is(err, errNeedsOperator) {
		t.Fatalf("read = found %v, %v; want an error matching errNeedsOperator", ok, err)
	}
	t.Log(err)
	if msg := fmt.Sprint(err); !strings.Contains(msg, "version 9") || !strings.Contains(msg, "ckpt-bad") {
		t.Fatalf("error %q does not say the version and the topic", msg)
	}
}

// TestCheckpointPlacementAgreesWithKafkatest: the tests that place a
// TransactionalID's checkpoint away from a stalled broker
// (kafkatest.TxnIDAwayFrom) reckon with the sender's checkpoint topic,
// partition count and partition choice; they cannot import them.
func TestCheckpointPlacementAgreesWithKafkatest(t *testing.T) {
	if kafkatest.CheckpointTopic != DefaultCheckpointTopic || kafkatest.CheckpointPartitions != checkpointPartitions {
		t.Fatalf("kafkatest: %s of %d partitions; the sender: %s of %d", kafkatest.CheckpointTopic, kafkatest.CheckpointPartitions, DefaultCheckpointTopic, checkpointPartitions)
	}
	for i := range 1000 {
		id := fmt.Sprintf("txn-%d", i)
		if got, want := kafkatest.CheckpointPartition(id), checkpointPartition([]byte(id), checkpointPartitions); got != want {
			t.Fatalf("%s: kafkatest places its checkpoint in partition %d, the sender in %d", id, got, want)
		}
	}
}
