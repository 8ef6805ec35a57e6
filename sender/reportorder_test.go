package sender

import (
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Positional attribution (partition.go) is exact as long as librdkafka
// never reports a record's success before the report of a record produced
// earlier to the same partition. This drives a librdkafka producer,
// configured as the sender configures it, through broker errors on produce
// requests with later requests in flight (permanent ones, which fail
// records, and retriable ones, which librdkafka retries) and through a
// request held past message.timeout.ms and then written, and checks that
// property on every report (the reports carry their record's index as
// Opaque, the truth to compare with). Failures may overtake: a topic-level
// error fails every queued record of the partition while an earlier
// request is still in flight; the sender believes no positional success
// after a failure, and the test counts those overtakes.
func TestNoSuccessOvertakesAnEarlierReport(t *testing.T) {
	cases := []struct {
		name  string
		err   *kerr.Error // answer every fifth produce request with it
		stall bool        // or hold one request past message.timeout.ms, then write it
	}{
		{name: "invalid record", err: kerr.InvalidRecord},
		{name: "message too large", err: kerr.MessageTooLarge},
		{name: "topic authorization", err: kerr.TopicAuthorizationFailed},
		{name: "not enough replicas", err: kerr.NotEnoughReplicas},
		{name: "not leader", err: kerr.NotLeaderForPartition},
		{name: "timeout of a written request", stall: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "order"))
			if err != nil {
				t.Fatal(err)
			}
			// The held request's sleep ends with the test, and the cluster
			// closes only once the control function is past SleepControl:
			// kfake's run loop deadlocks (a goroutine goleak reports) if
			// Close ends a sleep that is being woken.
			var mu sync.Mutex
			requests := 0
			held, closing := false, false // under mu
			stop := make(chan struct{})
			woke := make(chan struct{})
			defer func() {
				mu.Lock()
				closing = true
				wait := held
				mu.Unlock()
				close(stop)
				if wait {
					select {
					case <-woke:
					case <-time.After(30 * time.Second):
						t.Error("the held request's control function did not wake")
					}
				}
				c.Close()
			}()
			c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				mu.Lock()
				requests++
				k := requests
				hold := tc.stall && k == 20 && !closing
				held = held || hold
				mu.Unlock()
				if tc.stall {
					if hold {
						c.SleepControl(func() {
							select {
							case <-time.After(4 * time.Second):
							case <-stop:
							}
						})
						close(woke)
					}
					return nil, nil, false
				}
				if k%5 != 3 {
					return nil, nil, false
				}
				return produceError(req.(*kmsg.ProduceRequest), tc.err), nil, true
			})
			kc := kafka.ConfigMap{"bootstrap.servers": c.ListenAddrs()[0],
				"batch.num.messages": 10, "retry.backoff.ms": 10, "retry.backoff.max.ms": 100}
			if tc.stall {
				kc["message.timeout.ms"] = 2000
				kc["request.timeout.ms"] = 1000
			}
			kcfg, err := Config{Kafka: kc}.KafkaConfig()
			if err != nil {
				t.Fatal(err)
			}
			delete(kcfg, "go.logs.channel.enable") // nobody reads them here
			p, err := kafka.NewProducer(&kcfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			topic := "order"
			const total = 2000
			for i := range total {
				m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0}, Value: []byte("v"), Opaque: i}
				if err := p.Produce(m, nil); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.After(60 * time.Second)
			reported := make([]bool, total)
			low := 0 // the earliest record not reported yet
			failed, overtakes := 0, 0
			for got := 0; got < total; {
				select {
				case ev := <-p.Events():
					m, ok := ev.(*kafka.Message)
					if !ok {
						continue
					}
					got++
					i := m.Opaque.(int)
					if reported[i] {
						t.Fatalf("record %d reported twice", i)
					}
					if m.TopicPartition.Error == nil && i != low {
						t.Fatalf("success of record %d reported before the report of record %d", i, low)
					}
					if m.TopicPartition.Error != nil {
						failed++
						if i != low {
							overtakes++
						}
					}
					reported[i] = true
					for low < total && reported[low] {
						low++
					}
				case <-deadline:
					t.Fatalf("%d reports of %d", got, total)
				}
			}
			if tc.stall || tc.err == kerr.InvalidRecord || tc.err == kerr.MessageTooLarge || tc.err == kerr.TopicAuthorizationFailed {
				if failed == 0 {
					t.Fatal("no record failed: the scenario did not happen")
				}
			}
			mu.Lock()
			defer mu.Unlock()
			t.Logf("%d requests, %d records failed, %d failures reported before an earlier record's report", requests, failed, overtakes)
		})
	}
}

// produceError answers every partition of req with e.
func produceError(req *kmsg.ProduceRequest, e *kerr.Error) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = e.Code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
