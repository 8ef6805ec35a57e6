package kafkawal

import (
	"os"

	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal/wal"
)

// txnIdentity loads the WAL directory's exactly-once identity (see
// wal.TxnIdentity), making it on first use, and records a change of
// TransactionalID: the new id has no checkpoint yet, so delivery resumes
// from the local cursor, at least once for the records between it and
// what the old id had committed.
func txnIdentity(cfg Config, mode os.FileMode, lg *zerolog.Logger) (wal.TxnIdentity, error) {
	id, ok, err := wal.LoadTxnIdentity(cfg.Dir)
	if err != nil {
		return id, err
	}
	switch {
	case !ok:
		if id, err = wal.NewTxnIdentity(cfg.TransactionalID); err != nil {
			return id, err
		}
	case id.TransactionalID != cfg.TransactionalID:
		lg.Warn().Str("transactional_id", cfg.TransactionalID).Str("previous", id.TransactionalID).
			Msg("kafkawal: TransactionalID changed for this WAL directory; delivery resumes from the local cursor, and records Kafka committed after it are sent again")
		id.TransactionalID, id.Committed = cfg.TransactionalID, false
	default:
		return id, nil
	}
	return id, wal.StoreTxnIdentity(cfg.Dir, id, mode)
}
