package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// partitionShapes are BenchmarkPartitions' topic layouts: the 4 partitions
// of every other benchmark, and the same records spread over 1,000
// partitions, of one topic or of 100 topics; and over 1,000 partitions
// with a hot key, which a quarter of the records carry (hot is the percent
// of records with the key that goes to one partition).
var partitionShapes = []struct {
	name                    string
	topics, partitions, hot int
}{
	{"topics=1/partitions=4", 1, 4, 0},
	{"topics=1/partitions=1000", 1, 1000, 0},
	{"topics=100/partitions=10", 100, 10, 0},
	{"topics=1/partitions=1000/hotkey=25pct", 1, 1000, 25},
}

// BenchmarkPartitions: end to end, as a new user would try it, with the
// records spread over many partitions: 100-byte values with distinct
// keys (but for a hot key in the hotkey shape), PartitionAny (the
// partitioner hashes the key), the topics in
// turn, kafkawal with its default Config (SyncAlways) and AppendBatch of
// 1000 then Flush, against the plain producer with the same librdkafka
// settings producing the same records from one goroutine. Both sides first
// deliver one record to every topic (metadata, connections, producer id).
// x_plain is kafkawal's records/s over the plain producer's;
// x_plain_of_4 is that over the x_plain of topics=1/partitions=4 in the
// same process (the goal: >= 0.9 at 1,000 partitions). One op is one
// record.
func BenchmarkPartitions(b *testing.B) {
	br := directBroker.get(b)
	const valueSize = 100
	for _, sh := range partitionShapes {
		key := "partitions/" + sh.name
		b.Run(sh.name+"/plain", func(b *testing.B) {
			topics := newTopics(b, br, sh.topics, sh.partitions)
			recordPeer(b, key+"/plain", benchPlainPartitions(b, br.Bootstrap(), topics, valueSize, sh.hot))
		})
		b.Run(sh.name+"/kafkawal", func(b *testing.B) {
			topics := newTopics(b, br, sh.topics, sh.partitions)
			rps := benchKafkawalPartitions(b, partitionsConfig(b, br.Bootstrap()), topics, valueSize, sh.hot)
			reportOf4(b, "partitions", sh.name, "plain", "x_plain", rps)
		})
	}
}

// reportOf4 reports rps over the records/s of the peer side of the same
// shape (recorded under prefix/shape/peer) as ratio, and that ratio over
// the 4-partition shape's in the same process as ratio_of_4.
func reportOf4(b *testing.B, prefix, shape, peer, ratio string, rps float64) {
	key := prefix + "/" + shape
	reportRatio(b, key+"/"+peer, rps, ratio)
	peers.Lock()
	p, ok := peers.m[key+"/"+peer]
	peers.Unlock()
	if ok && p.v > 0 {
		x := rps / p.v
		recordPeer(b, key+"/"+ratio, x)
		reportRatio(b, prefix+"/"+partitionShapes[0].name+"/"+ratio, x, ratio+"_of_4")
	}
}

// newTopics creates n topics of the given partitions, deleted when b ends.
func newTopics(b *testing.B, br kafkatest.Broker, n, partitions int) []string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%d-%d", os.Getpid(), topicSeq.Add(1))
		if err := br.CreateTopic(ctx, names[i], int32(partitions), nil); err != nil {
			b.Fatalf("create topic %s (%d partitions): %v", names[i], partitions, err)
		}
	}
	b.Cleanup(func() {
		for _, name := range names {
			deleteTopic(br.Bootstrap(), name)
		}
	})
	return names
}

// partitionKeys are the records' keys, distinct for every record of a run
// up to their number, then again.
var partitionKeys = func() [][]byte {
	ks := make([][]byte, 1<<16)
	for i := range ks {
		ks[i] = []byte("key-" + strconv.Itoa(i))
	}
	return ks
}()

// partitionKey is record j's key: the first key for hot records in every
// 100, else its own.
func partitionKey(j, hot int) []byte {
	if j%100 < hot {
		return partitionKeys[0]
	}
	return partitionKeys[j%len(partitionKeys)]
}

// partitionsConfig is kafkawal's default Config, as a new user tries it.
func partitionsConfig(b *testing.B, bootstrap string) kafkawal.Config {
	return kafkawal.Config{Dir: b.TempDir(), Kafka: kafka.ConfigMap{"bootstrap.servers": bootstrap}}
}

func benchKafkawalPartitions(b *testing.B, cfg kafkawal.Config, topics []string, valueSize, hot int) float64 {
	p := openProducer(b, cfg)
	defer closeProducer(p, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	v := value(valueSize)
	warm := make([]kafkawal.Record, len(topics))
	for i, t := range topics {
		warm[i] = kafkawal.Record{Topic: t, Partition: kafkawal.PartitionAny, Key: partitionKeys[i], Value: v}
	}
	if _, err := p.AppendBatch(ctx, warm); err != nil {
		b.Fatalf("warm-up append: %v", err)
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatalf("warm-up flush: %v", err)
	}
	rs := make([]kafkawal.Record, 1000)
	b.ResetTimer()
	cpu := cpuSplitNow(b)
	var err error
	for n := 0; n < b.N && err == nil; n += len(rs) {
		k := min(len(rs), b.N-n)
		for i := range k {
			j := n + i
			rs[i] = kafkawal.Record{Topic: topics[j%len(topics)], Partition: kafkawal.PartitionAny,
				Key: partitionKey(j, hot), Value: v}
		}
		_, err = p.AppendBatch(ctx, rs[:k])
	}
	if err == nil {
		err = p.Flush(ctx)
	}
	b.StopTimer()
	if err != nil {
		b.Fatalf("append and deliver %d records: %v", b.N, err)
	}
	reportCPUSplit(b, cpu, int64(b.N))
	// Partitions handed to a lane read their records back from the WAL:
	// a run that defers many says why it was slow.
	st := p.Stats()
	b.ReportMetric(float64(st.PartitionsDeferred), "deferred")
	if cfg.Delivery == kafkawal.ExactlyOnce {
		if st.DeadLettered > 0 || st.Fenced {
			b.Fatalf("stats: %+v", st)
		}
		b.ReportMetric(float64(st.Transactions), "commits")
	}
	return reportRate(b, int64(b.N), valueSize, b.Elapsed())
}

func benchPlainPartitions(b *testing.B, bootstrap string, topics []string, valueSize, hot int) float64 {
	pl := newPlain(b, plainConfig(b, bootstrap, nil), nil)
	defer pl.close()
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	v := value(valueSize)
	keyed := func(topic *string, key []byte) *kafka.Message {
		m := message(topic, v, nil)
		m.Key = key
		return m
	}
	for i := range topics {
		if err := pl.produce(keyed(&topics[i], partitionKeys[i])); err != nil {
			b.Fatalf("warm-up produce: %v", err)
		}
	}
	if err := pl.wait(ctx); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	b.ResetTimer()
	cpu := cpuSplitNow(b)
	var err error
	for j := 0; j < b.N && err == nil; j++ {
		err = pl.produce(keyed(&topics[j%len(topics)], partitionKey(j, hot)))
	}
	if err == nil {
		err = pl.wait(ctx)
	}
	b.StopTimer()
	if err != nil {
		b.Fatalf("produce and deliver %d records: %v", b.N, err)
	}
	reportCPUSplit(b, cpu, int64(b.N))
	return reportRate(b, int64(b.N), valueSize, b.Elapsed())
}

// BenchmarkPartitionsExactlyOnce: BenchmarkPartitions' shapes and records
// under Delivery ExactlyOnce, beside kafkawal at-least-once (the same
// side as BenchmarkPartitions' kafkawal) and a plain transactional
// confluent-kafka-go producer committing every DefaultCommitInterval, as
// BenchmarkExactlyOnce's plain-txn does. A transaction spans every
// partition produced to in its interval, and its commit writes a marker
// to each of them: the shapes measure what that costs both transactional
// sides. x_alo and x_plain_txn are kafkawal exactly-once's records/s over
// the other two sides'; x_plain_txn_of_4 is x_plain_txn over its value at
// topics=1/partitions=4 in the same process.
func BenchmarkPartitionsExactlyOnce(b *testing.B) {
	br := directBroker.get(b)
	const valueSize = 100
	for _, sh := range partitionShapes {
		key := "partitions-eos/" + sh.name
		b.Run(sh.name+"/kafkawal-AtLeastOnce", func(b *testing.B) {
			topics := newTopics(b, br, sh.topics, sh.partitions)
			recordPeer(b, key+"/alo", benchKafkawalPartitions(b, partitionsConfig(b, br.Bootstrap()), topics, valueSize, sh.hot))
		})
		b.Run(sh.name+"/plain-txn", func(b *testing.B) {
			topics := newTopics(b, br, sh.topics, sh.partitions)
			recordPeer(b, key+"/plain-txn", benchPlainTxnPartitions(b, br.Bootstrap(), topics, valueSize, sh.hot))
		})
		b.Run(sh.name+"/kafkawal-ExactlyOnce", func(b *testing.B) {
			topics := newTopics(b, br, sh.topics, sh.partitions)
			cfg := partitionsConfig(b, br.Bootstrap())
			cfg.Delivery = kafkawal.ExactlyOnce
			cfg.TransactionalID = fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), topicSeq.Add(1))
			rps := benchKafkawalPartitions(b, cfg, topics, valueSize, sh.hot)
			reportRatio(b, key+"/alo", rps, "x_alo")
			reportOf4(b, "partitions-eos", sh.name, "plain-txn", "x_plain_txn", rps)
		})
	}
}

// benchPlainTxnPartitions is benchPlainPartitions with a plainTxn: the
// same records, from one goroutine, in transactions of
// DefaultCommitInterval (held back a thousand records at a time).
func benchPlainTxnPartitions(b *testing.B, bootstrap string, topics []string, valueSize, hot int) float64 {
	pt := newPlainTxn(b, bootstrap)
	defer pt.close()
	v := value(valueSize)
	keyed := func(topic *string, key []byte) *kafka.Message {
		m := message(topic, v, nil)
		m.Key = key
		return m
	}
	warm := make([]*kafka.Message, len(topics))
	for i := range topics {
		warm[i] = keyed(&topics[i], partitionKeys[i])
	}
	if err := pt.warm(warm...); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu := cpuSplitNow(b)
	pt.start()
	var err error
	for n := 0; n < b.N && err == nil; n += 1000 {
		err = pt.hold(func() error {
			for j := n; j < min(n+1000, b.N); j++ {
				if err := pt.pl.produce(keyed(&topics[j%len(topics)], partitionKey(j, hot))); err != nil {
					return err
				}
			}
			return nil
		})
	}
	err = pt.finish(err)
	b.StopTimer()
	if err != nil {
		b.Fatalf("produce and commit %d records: %v", b.N, err)
	}
	reportCPUSplit(b, cpu, int64(b.N))
	pt.report(b)
	return reportRate(b, int64(b.N), valueSize, b.Elapsed())
}
