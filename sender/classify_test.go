package sender

import (
	"errors"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want class
	}{
		{kafka.NewError(kafka.ErrMsgSizeTooLarge, "", false), permanent},
		{kafka.NewError(kafka.ErrInvalidRecord, "", false), permanent},
		{kafka.NewError(kafka.ErrTopicAuthorizationFailed, "", false), permanent},
		{kafka.NewError(kafka.ErrUnknownTopic, "", false), permanent},
		{kafka.NewError(kafka.ErrMsgTimedOut, "", false), transient},
		{kafka.NewError(kafka.ErrAllBrokersDown, "", false), transient},
		{kafka.NewError(kafka.ErrNotLeaderForPartition, "", false), transient},
		{kafka.NewError(kafka.ErrUnknownTopicOrPart, "", false), permanent}, // reported only after topic.metadata.propagation.max.ms
		{kafka.NewError(kafka.ErrTransport, "", false), transient},
		{kafka.NewError(kafka.ErrRequestTimedOut, "", false), transient},
		{kafka.NewError(kafka.ErrOutOfOrderSequenceNumber, "", false), fatal},
		{kafka.NewError(kafka.ErrUnknownProducerID, "", false), fatal},
		{kafka.NewError(kafka.ErrProducerFenced, "", false), fatal},
		{kafka.NewError(kafka.ErrNoError, "", true), fatal}, // IsFatal
		{kafka.NewError(kafka.ErrPurgeQueue, "", false), purged},
		{kafka.NewError(kafka.ErrPurgeInflight, "", false), purged},
		{errors.New("not a kafka error"), transient},
	}
	for _, c := range cases {
		if got := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
