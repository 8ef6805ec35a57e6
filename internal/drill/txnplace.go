package drill

import (
	"context"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// The children's checkpoint topic (kafkawal's default CheckpointTopic) and
// the partition count kafkawal creates it with.
const (
	checkpointTopic      = "kafkawal-checkpoints"
	checkpointPartitions = 25
)

// placeTransactionalID chooses the children's TransactionalID for a
// drill with partition stalls under ExactlyOnce on a real cluster. There a
// stall cuts a whole broker off from clients (the first topic's partition
// 0's leader): if the transaction coordinator of the TransactionalID, or
// the partition of the checkpoint topic its checkpoint goes to, is on
// that broker, every commit stops, which is an outage, not the partial one
// the drill is for. Left to chance that was so in about three drills of
// four, and the partial stall's paths (deferred partitions, resumed lanes)
// went untested. So the checkpoint topic is made first, as kafkawal would
// make it, and the TransactionalID is one of the drill's whose coordinator
// and checkpoint partition are on the other broker.
func (d *drill) placeTransactionalID(ctx context.Context, b kafkatest.Broker) error {
	if !d.cfg.ExactlyOnce || d.cfg.StallPartition == 0 || b.Kind() != "real" {
		return nil
	}
	if err := b.CreateTopic(ctx, checkpointTopic, checkpointPartitions, map[string]string{"cleanup.policy": "compact"}); err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	cl, err := kgo.NewClient(b.AdminOpts()...)
	if err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	td, err := adm.ListTopics(ctx, d.cfg.Topics[0], checkpointTopic)
	if err != nil {
		return fmt.Errorf("drill: list topics: %w", err)
	}
	stalled := td[d.cfg.Topics[0]].Partitions[0].Leader
	ckpt := td[checkpointTopic].Partitions
	deadline := time.Now().Add(time.Minute)
	for i := 0; i < 200; {
		id := fmt.Sprintf("kafkawal-drill-%s-%d", d.rep.Nonce, i)
		c := adm.FindTxnCoordinators(ctx, id)[id]
		if c.Err != nil {
			// The transaction state topic is made on first use: not
			// available for a moment.
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("drill: the transaction coordinator of %s: %v", id, c.Err)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		p, ok := ckpt[int32(crc32.ChecksumIEEE([]byte(id))%checkpointPartitions)]
		if ok && c.NodeID != stalled && p.Leader != stalled {
			d.txnID = id
			d.logf("TransactionalID %s: its coordinator (broker %d) and checkpoint partition (broker %d) stay reachable when broker %d is cut off", id, c.NodeID, p.Leader, stalled)
			return nil
		}
		i++
	}
	return fmt.Errorf("drill: no TransactionalID with its coordinator and checkpoint away from broker %d", stalled)
}
