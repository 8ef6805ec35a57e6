package sender

import (
	"errors"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ErrFenced: under exactly-once delivery, another producer with the same
// TransactionalID has taken over (a second instance, or a copy of the WAL
// directory). This sender stopped delivering for good: everything not
// committed stays in the WAL, nothing is truncated past what Kafka
// committed. Re-exported as kafkawal.ErrFenced.
var ErrFenced = errors.New("kafkawal: fenced by another producer with the same TransactionalID")

// txnClass is what the sender does after a transactional call failed.
type txnClass int

const (
	txnOK txnClass = iota
	// txnRetry: call the same function again (IsRetriable: a timeout,
	// the coordinator not available yet).
	txnRetry
	// txnAbort: the transaction cannot commit (TxnRequiresAbort: a record
	// failed in it): abort it, rewind to the committed position, begin a
	// new one.
	txnAbort
	// txnFenced: ERR__FENCED (or the broker's PRODUCER_FENCED,
	// INVALID_PRODUCER_EPOCH): a newer instance took over, or the
	// coordinator aborted a transaction open longer than
	// transaction.timeout.ms. The producer is dead either way; the
	// transaction's age tells which (see txn.go).
	txnFenced
	// txnFatal: any other fatal error, or one of none of the classes:
	// destroy the producer, make a new one, InitTransactions, rewind.
	txnFatal
)

func (c txnClass) String() string {
	return [...]string{"ok", "retry", "abort", "fenced", "fatal"}[c]
}

var fencedCodes = map[kafka.ErrorCode]bool{
	kafka.ErrFenced:               true,
	kafka.ErrProducerFenced:       true,
	kafka.ErrInvalidProducerEpoch: true,
}

// classifyTxn sorts an error of InitTransactions, BeginTransaction,
// CommitTransaction or AbortTransaction (or a fatal error event) into the
// classes of confluent-kafka-go's documentation.
func classifyTxn(err error) txnClass {
	if err == nil {
		return txnOK
	}
	var ke kafka.Error
	if !errors.As(err, &ke) {
		return txnFatal
	}
	switch {
	case fencedCodes[ke.Code()]:
		return txnFenced
	case ke.IsFatal():
		return txnFatal
	case ke.TxnRequiresAbort():
		return txnAbort
	case ke.IsRetriable():
		return txnRetry
	}
	return txnFatal
}
