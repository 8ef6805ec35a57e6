package kafkatest

import (
	"context"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// CheckpointTopic is kafkawal's default CheckpointTopic, CheckpointPartitions
// the partition count kafkawal creates it with, and CheckpointPartition
// the partition a TransactionalID's checkpoint goes to. They are the
// sender's (which this package cannot import: the sender's own tests
// import it); sender's TestCheckpointPlacementAgreesWithKafkatest keeps
// them in step.
const (
	CheckpointTopic      = "kafkawal-checkpoints"
	CheckpointPartitions = 25
)

// CheckpointPartition returns the partition of the checkpoint topic (of
// CheckpointPartitions) that id's checkpoint goes to.
func CheckpointPartition(id string) int32 {
	return int32(crc32.ChecksumIEEE([]byte(id)) % CheckpointPartitions)
}

// TxnIDAwayFrom returns a TransactionalID, prefix-N, whose transaction
// coordinator and checkpoint partition (in kafkawal's default checkpoint
// topic, which it creates as kafkawal would) are on another broker than
// the leader of topic's partition. A real broker's StallPartition cuts
// that leader off from clients, and an exactly-once producer needs both
// to commit: with either on it, the stall would stop every partition, an
// outage instead of the partial one meant. On the embedded broker a stall
// fails produce requests only, so prefix itself will do.
func TxnIDAwayFrom(ctx context.Context, b Broker, prefix, topic string, partition int32) (string, error) {
	if b.Kind() != "real" {
		return prefix, nil
	}
	if err := b.CreateTopic(ctx, CheckpointTopic, CheckpointPartitions, map[string]string{"cleanup.policy": "compact"}); err != nil {
		return "", err
	}
	cl, err := kgo.NewClient(b.AdminOpts()...)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	td, err := adm.ListTopics(ctx, topic, CheckpointTopic)
	if err != nil {
		return "", fmt.Errorf("kafkatest: list topics: %w", err)
	}
	tp, ok := td[topic].Partitions[partition]
	if !ok {
		return "", fmt.Errorf("kafkatest: %s/%d is not in the cluster's metadata", topic, partition)
	}
	ckpt := td[CheckpointTopic].Partitions
	for i := range 200 {
		id := fmt.Sprintf("%s-%d", prefix, i)
		var c kadm.FindCoordinatorResponse
		// The transaction state topic is made on first use: not
		// available for a moment.
		wait, cancel := context.WithTimeout(ctx, time.Minute)
		err := poll(wait, func() (bool, error) {
			c = adm.FindTxnCoordinators(wait, id)[id]
			return c.Err == nil, c.Err
		})
		cancel()
		if err != nil {
			return "", fmt.Errorf("kafkatest: the transaction coordinator of %s: %w", id, err)
		}
		if cp, ok := ckpt[CheckpointPartition(id)]; ok && c.NodeID != tp.Leader && cp.Leader != tp.Leader {
			return id, nil
		}
	}
	return "", fmt.Errorf("kafkatest: no TransactionalID with its coordinator and checkpoint away from broker %d", tp.Leader)
}
