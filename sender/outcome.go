package sender

import (
	"errors"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal/wal"
)

// newDeadLetter describes a record refused for good: the error's text and
// its code (so that an application can act on the code, not parse text),
// and the partition it was refused in, when it had one.
func newDeadLetter(seq uint64, r wal.Record, partition int32, cause error) wal.DeadLetter {
	dl := wal.DeadLetter{Seq: seq, Time: time.Now(), Err: cause.Error(), SentToPartition: wal.PartitionAny, Record: r}
	var ke kafka.Error
	if errors.As(cause, &ke) {
		dl.Code = int32(ke.Code())
	}
	if partition >= 0 {
		dl.SentToPartition = partition
	}
	return dl
}
