package sender

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"
)

// checkpointPartitions is the partition count of a checkpoint topic that
// kafkawal creates: Kafka Connect's offsets topic has as many. Instances
// are spread over the partitions by TransactionalID, so that reading one's
// checkpoint at start rarely waits on another's open transaction.
const checkpointPartitions = 25

// checkpointSegmentMs bounds the topic's active segment, which compaction
// never touches, to an hour of checkpoints: a full read of a partition
// (an instance idle for long) then costs at most that hour plus one record
// per key.
const checkpointSegmentMs = "3600000"

// firstWindow is how many offsets before the end of its partition a
// checkpoint is looked for first; each further window is 16 times larger,
// up to the start of the partition.
const firstWindow = 1024

// errNeedsOperator marks errors of exactly-once delivery that retrying
// cannot fix (no authorization, a checkpoint value this kafkawal cannot
// read, another WAL's checkpoint): the operator must act.
var errNeedsOperator = errors.New("kafkawal: exactly-once delivery cannot go on")

// checkpointStore finds, creates and reads the checkpoint topic. Its
// methods block; the sender calls them off its goroutine (txninit.go).
type checkpointStore struct {
	topic     string
	key       []byte
	partition int32 // of key, known after ensure
	ccfg      kafka.ConfigMap
	lg        *zerolog.Logger
	// closing counts readers being closed in the background (a consumer's
	// Close takes tens of milliseconds that the start need not wait for).
	closing sync.WaitGroup
}

func newCheckpointStore(cfg Config, kcfg kafka.ConfigMap) *checkpointStore {
	return &checkpointStore{
		topic:     cfg.CheckpointTopic,
		key:       []byte(cfg.TransactionalID),
		partition: -1,
		ccfg:      readerConfig(kcfg),
		lg:        cfg.Logger,
	}
}

// checkpointPartition is where key's checkpoint lives in a topic of n
// partitions. kafkawal chooses it (CRC-32 of the key, librdkafka's
// consistent partitioner) rather than leaving it to a configurable
// partitioner, so that the writer and the reader always agree.
func checkpointPartition(key []byte, n int) int32 {
	return int32(crc32.ChecksumIEEE(key) % uint32(n))
}

// ensure creates the topic if it is missing and finds the key's partition.
func (cs *checkpointStore) ensure(ctx context.Context, adm *kafka.AdminClient) error {
	n, err := cs.describe(ctx, adm)
	if err != nil {
		return err
	}
	if n == 0 {
		if err := cs.create(ctx, adm); err != nil {
			return err
		}
		for n == 0 {
			if n, err = cs.describe(ctx, adm); err != nil {
				return err
			}
			if n == 0 {
				select {
				case <-ctx.Done():
					return fmt.Errorf("kafkawal: checkpoint topic %q created but not visible yet: %w", cs.topic, ctx.Err())
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}
	cs.partition = checkpointPartition(cs.key, n)
	return nil
}

// describe returns the topic's partition count, 0 if it does not exist.
func (cs *checkpointStore) describe(ctx context.Context, adm *kafka.AdminClient) (int, error) {
	res, err := adm.DescribeTopics(ctx, kafka.NewTopicCollectionOfTopicNames([]string{cs.topic}))
	if err != nil {
		return 0, fmt.Errorf("kafkawal: describe checkpoint topic %q: %w", cs.topic, err)
	}
	if len(res.TopicDescriptions) != 1 {
		return 0, fmt.Errorf("kafkawal: describe checkpoint topic %q: %d answers", cs.topic, len(res.TopicDescriptions))
	}
	d := res.TopicDescriptions[0]
	switch d.Error.Code() {
	case kafka.ErrNoError:
	case kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic:
		return 0, nil
	case kafka.ErrTopicAuthorizationFailed:
		return 0, fmt.Errorf("%w: topic %q: not authorized to describe it: %v (grant Describe, Read and Write on it to this producer's principal, and Create unless you create it, compacted)", errNeedsOperator, cs.topic, d.Error)
	default:
		return 0, fmt.Errorf("kafkawal: describe checkpoint topic %q: %w", cs.topic, d.Error)
	}
	for _, p := range d.Partitions {
		if p.Leader == nil {
			return 0, fmt.Errorf("kafkawal: checkpoint topic %q: partition %d has no leader", cs.topic, p.Partition)
		}
	}
	return len(d.Partitions), nil
}

func (cs *checkpointStore) create(ctx context.Context, adm *kafka.AdminClient) error {
	res, err := adm.CreateTopics(ctx, []kafka.TopicSpecification{{
		Topic:             cs.topic,
		NumPartitions:     checkpointPartitions,
		ReplicationFactor: -1, // the broker's default.replication.factor
		Config: map[string]string{
			"cleanup.policy": "compact",
			"segment.ms":     checkpointSegmentMs,
		},
	}})
	if err != nil {
		return fmt.Errorf("kafkawal: create checkpoint topic %q: %w", cs.topic, err)
	}
	for _, r := range res {
		switch r.Error.Code() {
		case kafka.ErrNoError, kafka.ErrTopicAlreadyExists:
			cs.lg.Info().Str("topic", cs.topic).Int("partitions", checkpointPartitions).
				Msg("sender: created the exactly-once checkpoint topic")
		case kafka.ErrTopicAuthorizationFailed, kafka.ErrClusterAuthorizationFailed, kafka.ErrPolicyViolation,
			kafka.ErrInvalidConfig, kafka.ErrInvalidReplicationFactor, kafka.ErrInvalidPartitions, kafka.ErrTopicException:
			return fmt.Errorf("%w: topic %q does not exist and cannot be created: %v (create it, compacted, or grant Create on it)", errNeedsOperator, cs.topic, r.Error)
		default:
			return fmt.Errorf("kafkawal: create checkpoint topic %q: %w", cs.topic, r.Error)
		}
	}
	return nil
}

// read returns the latest committed checkpoint of the key, ok false if the
// partition holds none. It reads with read_committed up to the partition's
// high watermark as it is now, so it waits for every transaction open below
// it to end (a read_committed read stops at the last stable offset): after
// InitTransactions, our own previous transaction has ended, but another
// TransactionalID's may hold the partition for up to its
// transaction.timeout.ms. It looks in the last firstWindow offsets first,
// then in 16 times larger windows further back: the latest record of the
// key is in the nearest window that has one.
func (cs *checkpointStore) read(ctx context.Context, adm *kafka.AdminClient) (c Checkpoint, ok bool, err error) {
	lo, hi, err := cs.watermarks(ctx, adm)
	if err != nil || lo >= hi {
		return c, false, err
	}
	r, err := cs.newReader()
	if err != nil {
		return c, false, err
	}
	defer func() {
		cs.closing.Add(1)
		go func() {
			defer cs.closing.Done()
			r.close()
		}()
	}()
	end, w := hi, int64(firstWindow)
	for end > lo {
		from := max(lo, end-w)
		v, found, err := r.scan(ctx, cs, from, end)
		if err != nil {
			return c, false, err
		}
		if found {
			if c, err = decodeCheckpoint(v); err != nil {
				return c, false, fmt.Errorf("%w: topic %q partition %d: %v", errNeedsOperator, cs.topic, cs.partition, err)
			}
			return c, true, nil
		}
		end, w = from, w*16
	}
	return c, false, nil
}

// watermarks lists the partition's first offset and its high watermark
// (read_uncommitted: the end of the log, open transactions included).
func (cs *checkpointStore) watermarks(ctx context.Context, adm *kafka.AdminClient) (lo, hi int64, err error) {
	if lo, err = cs.listOffset(ctx, adm, kafka.EarliestOffsetSpec); err != nil {
		return 0, 0, err
	}
	if hi, err = cs.listOffset(ctx, adm, kafka.LatestOffsetSpec); err != nil {
		return 0, 0, err
	}
	return lo, hi, nil
}

// listOffset returns the partition's offset for spec. A partition whose
// leader is moving (a topic just created, a leader just elected) is asked
// again after a pause: the admin client's metadata catches up within
// moments.
func (cs *checkpointStore) listOffset(ctx context.Context, adm *kafka.AdminClient, spec kafka.OffsetSpec) (int64, error) {
	tp := kafka.TopicPartition{Topic: &cs.topic, Partition: cs.partition}
	for attempt := 1; ; attempt++ {
		res, err := adm.ListOffsets(ctx, map[kafka.TopicPartition]kafka.OffsetSpec{tp: spec},
			kafka.SetAdminIsolationLevel(kafka.IsolationLevelReadUncommitted))
		if err != nil {
			return 0, fmt.Errorf("kafkawal: checkpoint topic %q partition %d: list offsets: %w", cs.topic, cs.partition, err)
		}
		if len(res.ResultInfos) != 1 {
			return 0, fmt.Errorf("kafkawal: checkpoint topic %q partition %d: list offsets: %d answers", cs.topic, cs.partition, len(res.ResultInfos))
		}
		for _, info := range res.ResultInfos {
			switch {
			case info.Error.Code() == kafka.ErrNoError:
				return int64(info.Offset), nil
			case !leaderMoving(info.Error) || attempt >= listOffsetsAttempts:
				return 0, cs.readError("list offsets", info.Error)
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
}

// listOffsetsAttempts bounds the retries of a ListOffsets answered with a
// leader that is moving (about 5 s in all).
const listOffsetsAttempts = 10

// leaderMoving reports an error that a partition's leader is not known
// where it was asked yet: it passes by itself.
func leaderMoving(err kafka.Error) bool {
	switch err.Code() {
	case kafka.ErrNotLeaderForPartition, kafka.ErrLeaderNotAvailable, kafka.ErrUnknownTopicOrPart:
		return true
	}
	return false
}

func (cs *checkpointStore) readError(what string, err kafka.Error) error {
	if err.Code() == kafka.ErrTopicAuthorizationFailed {
		return fmt.Errorf("%w: topic %q: not authorized to read it (%s): %v (grant Describe, Read and Write on it to this producer's principal)", errNeedsOperator, cs.topic, what, err)
	}
	return fmt.Errorf("kafkawal: checkpoint topic %q partition %d: %s: %w", cs.topic, cs.partition, what, err)
}

// checkpointReader is a read_committed consumer of the key's partition.
type checkpointReader struct {
	c    *kafka.Consumer
	done chan struct{} // log forwarding ended
}

func (cs *checkpointStore) newReader() (*checkpointReader, error) {
	cfg := kafka.ConfigMap{}
	for k, v := range cs.ccfg {
		cfg[k] = v
	}
	c, err := kafka.NewConsumer(&cfg)
	if err != nil {
		return nil, fmt.Errorf("kafkawal: checkpoint reader: %w", err)
	}
	r := &checkpointReader{c: c, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for e := range c.Logs() {
			logReaderLine(cs.lg, e)
		}
	}()
	return r, nil
}

func (r *checkpointReader) close() {
	r.c.Close()
	<-r.done
}

// scan reads offsets [from, to) of the key's partition and returns the
// value of the key's last record among them.
func (r *checkpointReader) scan(ctx context.Context, cs *checkpointStore, from, to int64) (value []byte, found bool, err error) {
	tp := kafka.TopicPartition{Topic: &cs.topic, Partition: cs.partition, Offset: kafka.Offset(from)}
	if err := r.c.Assign([]kafka.TopicPartition{tp}); err != nil {
		return nil, false, fmt.Errorf("kafkawal: checkpoint reader: assign: %w", err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, false, fmt.Errorf("kafkawal: read checkpoint topic %q partition %d up to offset %d: %w", cs.topic, cs.partition, to, err)
		}
		switch e := r.c.Poll(100).(type) {
		case *kafka.Message:
			off := int64(e.TopicPartition.Offset)
			if e.TopicPartition.Error != nil {
				continue
			}
			if off >= to {
				return value, found, nil
			}
			if bytes.Equal(e.Key, cs.key) {
				value, found = e.Value, true
			}
			if off == to-1 {
				return value, found, nil
			}
		case kafka.PartitionEOF:
			// At the last stable offset: the end once it has reached
			// the high watermark taken before the read.
			if int64(e.Offset) >= to {
				return value, found, nil
			}
		case kafka.Error:
			switch e.Code() {
			case kafka.ErrTopicAuthorizationFailed, kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic:
				return nil, false, cs.readError("fetch", e)
			}
			if e.IsFatal() {
				return nil, false, fmt.Errorf("kafkawal: checkpoint reader: %w", e)
			}
			cs.lg.Debug().Str("err", e.Error()).Msg("sender: checkpoint reader error event")
		}
	}
}

// readerConfig is the checkpoint reader's librdkafka configuration: the
// application's connection and security settings, without the producer's
// (a consumer warns about each) and kafkawal's go.* keys.
func readerConfig(kcfg kafka.ConfigMap) kafka.ConfigMap {
	m := kafka.ConfigMap{}
	for k, v := range kcfg {
		if strings.HasPrefix(k, "go.") || producerOnly[k] {
			continue
		}
		m[k] = v
	}
	m["group.id"] = "kafkawal-checkpoint-reader" // required by confluent-kafka-go; never joined, nothing committed
	m["enable.auto.commit"] = false
	m["enable.auto.offset.store"] = false
	m["enable.partition.eof"] = true
	m["isolation.level"] = "read_committed"
	m["auto.offset.reset"] = "earliest" // an offset compacted away: from the first one left
	m["fetch.wait.max.ms"] = 10         // the end is an empty fetch: wait little for it
	m["go.logs.channel.enable"] = true
	return m
}

// producerOnly lists librdkafka's producer properties (CONFIGURATION.md,
// "P").
var producerOnly = map[string]bool{
	"transactional.id": true, "transaction.timeout.ms": true, "enable.idempotence": true,
	"enable.gapless.guarantee": true, "queue.buffering.max.messages": true,
	"queue.buffering.max.kbytes": true, "queue.buffering.max.ms": true, "linger.ms": true,
	"message.send.max.retries": true, "retries": true, "queue.buffering.backpressure.threshold": true,
	"compression.codec": true, "compression.type": true, "compression.level": true,
	"batch.num.messages": true, "batch.size": true, "delivery.report.only.error": true,
	"sticky.partitioning.linger.ms": true, "request.required.acks": true, "acks": true,
	"request.timeout.ms": true, "message.timeout.ms": true, "delivery.timeout.ms": true,
	"partitioner": true, "queuing.strategy": true, "produce.offset.report": true,
	"dr_cb": true, "dr_msg_cb": true, "partitioner_cb": true, "msg_order_cmp": true,
}

// logReaderLine writes one of the checkpoint reader's librdkafka log lines
// to lg, at the level its syslog level maps to (as the producer's).
func logReaderLine(lg *zerolog.Logger, e kafka.LogEvent) {
	lvl := zerolog.DebugLevel
	switch {
	case e.Level <= 3:
		lvl = zerolog.ErrorLevel
	case e.Level == 4:
		lvl = zerolog.WarnLevel
	case e.Level == 5:
		lvl = zerolog.InfoLevel
	}
	lg.WithLevel(lvl).Str("source", "librdkafka").Str("tag", e.Tag).Str("client", "checkpoint reader").Msg(e.Message)
}
