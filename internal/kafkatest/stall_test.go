package kafkatest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A stalled partition refuses records with a retriable error while the
// topic's other partitions take them; healed, it takes them again. With
// several brokers the stalled partition sits alone on a broker.
func TestEmbeddedStallPartition(t *testing.T) {
	for _, brokers := range []int{1, 3} {
		t.Run(map[int]string{1: "one broker", 3: "three brokers"}[brokers], func(t *testing.T) {
			b := startEmbeddedT(t, Options{Brokers: brokers})
			ctx := testCtx(t)
			if err := b.CreateTopic(ctx, "st", 4, nil); err != nil {
				t.Fatal(err)
			}
			stalled, heal, err := b.StallPartition(ctx, "st", 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(stalled) != 1 || stalled[0] != 0 {
				t.Fatalf("stalled %v, want [0]", stalled)
			}
			if brokers > 1 {
				md := topicMetadata(t, b, "st")
				leader := md.Partitions[0].Leader
				for _, p := range md.Partitions.Sorted()[1:] {
					if p.Leader == leader {
						t.Fatalf("partition %d shares broker %d with the stalled partition", p.Partition, leader)
					}
				}
			}
			cl := newKgo(t, b.Bootstrap(), kgo.RecordPartitioner(kgo.ManualPartitioner()),
				kgo.RecordDeliveryTimeout(2*time.Second))
			for p := int32(0); p < 4; p++ {
				r := &kgo.Record{Topic: "st", Partition: p, Value: []byte("v")}
				err := cl.ProduceSync(ctx, r).FirstErr()
				switch {
				case p == 0 && err == nil:
					t.Fatal("the stalled partition took a record")
				case p == 0 && !errors.Is(err, kerr.NotEnoughReplicas) && !errors.Is(err, kgo.ErrRecordTimeout):
					t.Fatalf("stalled partition: %v, want NOT_ENOUGH_REPLICAS or a timeout", err)
				case p != 0 && err != nil:
					t.Fatalf("partition %d: %v", p, err)
				}
			}
			if err := heal(); err != nil {
				t.Fatal(err)
			}
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "st", Partition: 0, Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatalf("healed partition: %v", err)
			}
		})
	}
}

func TestEmbeddedDeleteTopicAndAddPartitions(t *testing.T) {
	b := startEmbeddedT(t, Options{})
	ctx := testCtx(t)
	if err := b.CreateTopic(ctx, "grow", 2, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPartitions(ctx, "grow", 5); err != nil {
		t.Fatal(err)
	}
	if n := len(topicMetadata(t, b, "grow").Partitions); n != 5 {
		t.Fatalf("%d partitions after growing to 5", n)
	}
	if err := b.DeleteTopic(ctx, "grow"); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(newKgo(t, b.Bootstrap()))
	details, err := adm.ListTopics(ctx, "grow")
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := details["grow"]; ok && d.Err == nil {
		t.Fatalf("deleted topic still listed: %+v", d)
	}
}

func topicMetadata(t *testing.T, b Broker, topic string) kadm.TopicDetail {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newKgo(t, b.Bootstrap()))
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := details[topic]
	if !ok || d.Err != nil {
		t.Fatalf("topic %s: %v", topic, d.Err)
	}
	return d
}
