package kafkatest

import (
	"context"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkawal's default CheckpointTopic, and the partition count kafkawal
// creates it with (sender.checkpointPartitions).
const (
	checkpointTopic      = "kafkawal-checkpoints"
	checkpointPartitions = 25
)

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
	if err := b.CreateTopic(ctx, checkpointTopic, checkpointPartitions, map[string]string{"cleanup.policy": "compact"}); err != nil {
		return "", err
	}
	cl, err := kgo.NewClient(b.AdminOpts()...)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	td, err := adm.ListTopics(ctx, topic, checkpointTopic)
	if err != nil {
		return "", fmt.Errorf("kafkatest: list topics: %w", err)
	}
	stalled := td[topic].Partitions[partition].Leader
	ckpt := td[checkpointTopic].Partitions
	deadline := time.Now().Add(time.Minute)
	for i := 0; i < 200; {
		id := fmt.Sprintf("%s-%d", prefix, i)
		c := adm.FindTxnCoordinators(ctx, id)[id]
		if c.Err != nil {
			// The transaction state topic is made on first use: not
			// available for a moment.
			if time.Now().After(deadline) || ctx.Err() != nil {
				return "", fmt.Errorf("kafkatest: the transaction coordinator of %s: %v", id, c.Err)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		// The checkpoint's partition, as kafkawal picks it (CRC-32).
		p, ok := ckpt[int32(crc32.ChecksumIEEE([]byte(id))%checkpointPartitions)]
		if ok && c.NodeID != stalled && p.Leader != stalled {
			return id, nil
		}
		i++
	}
	return "", fmt.Errorf("kafkatest: no TransactionalID with its coordinator and checkpoint away from broker %d", stalled)
}
