package drill

import (
	"context"
	"fmt"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// placeTransactionalID chooses the children's TransactionalID for a
// drill with partition stalls under ExactlyOnce on a real cluster. There a
// stall cuts a whole broker off from clients (the first topic's partition
// 0's leader): if the transaction coordinator of the TransactionalID, or
// its checkpoint's partition, is on that broker, every commit stops, which
// is an outage, not the partial one the drill is for. Left to chance that
// was so in about three drills of four, and the partial stall's paths
// (deferred partitions, resumed lanes) went untested.
func (d *drill) placeTransactionalID(ctx context.Context, b kafkatest.Broker) error {
	if !d.cfg.ExactlyOnce || d.cfg.StallPartition == 0 || b.Kind() != "real" {
		return nil
	}
	id, err := kafkatest.TxnIDAwayFrom(ctx, b, "kafkawal-drill-"+d.rep.Nonce, d.cfg.Topics[0], 0)
	if err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	d.txnID = id
	d.logf("TransactionalID %s: its coordinator and checkpoint partition stay reachable when %s/0's broker is cut off", id, d.cfg.Topics[0])
	return nil
}
