package sender

import (
	"errors"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// class is what the sender does about a failed record.
type class int

const (
	// transient: retry until delivered, however long it takes; never
	// dead-lettered.
	transient class = iota
	// permanent: this record can never be delivered as it is: dead-letter
	// it and move on.
	permanent
	// fatal: the producer instance is unusable (idempotence state lost,
	// fenced): rebuild it and re-send everything unacknowledged.
	fatal
	// purged: the record was purged by us (rebuild, close): re-send later.
	purged
)

func (c class) String() string {
	return [...]string{"transient", "permanent", "fatal", "purged"}[c]
}

// permanentCodes are errors Kafka (or librdkafka, before sending) returns
// for a record that no retry can fix. Anything not listed is transient: a
// wrong "transient" costs a stall an operator sees in Stats and logs; a
// wrong "permanent" would throw a record away.
var permanentCodes = map[kafka.ErrorCode]bool{
	kafka.ErrMsgSizeTooLarge:          true, // broker or local message.max.bytes
	kafka.ErrInvalidMsgSize:           true,
	kafka.ErrRecordListTooLarge:       true,
	kafka.ErrInvalidRecord:            true,
	kafka.ErrInvalidMsg:               true, // CORRUPT_MESSAGE: the broker's CRC check failed on a valid record
	kafka.ErrInvalidTimestamp:         true,
	kafka.ErrPolicyViolation:          true,
	kafka.ErrTopicAuthorizationFailed: true,
	kafka.ErrUnknownTopic:             true, // local: topic does not exist
	// In a delivery report (not a produce response, which librdkafka
	// retries itself) this means the topic still did not exist after
	// topic.metadata.propagation.max.ms: auto-create is off.
	kafka.ErrUnknownTopicOrPart: true,
	kafka.ErrUnknownPartition:   true, // local: explicit partition does not exist
	kafka.ErrInvalidArg:         true,
}

// fatalCodes lose the idempotent producer's state; librdkafka usually
// raises them as a fatal error first.
var fatalCodes = map[kafka.ErrorCode]bool{
	kafka.ErrFatal:                    true,
	kafka.ErrOutOfOrderSequenceNumber: true,
	kafka.ErrUnknownProducerID:        true,
	kafka.ErrInvalidProducerEpoch:     true,
	kafka.ErrProducerFenced:           true,
}

func classify(err error) class {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return transient
	}
	code := kerr.Code()
	switch {
	case kerr.IsFatal() || fatalCodes[code]:
		return fatal
	case code == kafka.ErrPurgeQueue || code == kafka.ErrPurgeInflight:
		return purged
	case permanentCodes[code]:
		return permanent
	}
	return transient
}
