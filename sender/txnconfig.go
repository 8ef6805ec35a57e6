package sender

import (
	"fmt"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Exactly-once defaults.
const (
	// DefaultCommitInterval is how long a transaction gathers records
	// before it is committed. It is the trade between latency (a record
	// becomes visible to read_committed consumers at the commit that
	// follows it) and throughput (each commit costs a round trip to the
	// transaction coordinator and markers in every partition written,
	// and no record is produced while it runs). Kafka Streams' exactly-once
	// commit.interval.ms is also 100 ms.
	DefaultCommitInterval = 100 * time.Millisecond
	// DefaultCheckpointTopic is the compacted topic that holds each
	// TransactionalID's committed WAL position.
	DefaultCheckpointTopic = "kafkawal-checkpoints"
	// defaultTransactionTimeoutMs is librdkafka's transaction.timeout.ms.
	defaultTransactionTimeoutMs = 60000
)

// txnWithDefaults fills the exactly-once defaults.
func (c Config) txnWithDefaults() Config {
	if !c.ExactlyOnce {
		return c
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = DefaultCommitInterval
	}
	if c.CheckpointTopic == "" {
		c.CheckpointTopic = DefaultCheckpointTopic
	}
	return c
}

// validateTxn checks the exactly-once settings, naming the field. Without
// ExactlyOnce they must be unset: a TransactionalID that does nothing is a
// misunderstanding, not a preference.
func (c Config) validateTxn() error {
	if !c.ExactlyOnce {
		switch {
		case c.TransactionalID != "":
			return fmt.Errorf("kafkawal: config: TransactionalID: set without Delivery ExactlyOnce")
		case c.CommitInterval != 0:
			return fmt.Errorf("kafkawal: config: CommitInterval: only used with Delivery ExactlyOnce")
		case c.CheckpointTopic != "":
			return fmt.Errorf("kafkawal: config: CheckpointTopic: only used with Delivery ExactlyOnce")
		}
		return nil
	}
	switch {
	case c.TransactionalID == "":
		return fmt.Errorf("kafkawal: config: TransactionalID: required with Delivery ExactlyOnce (stable for this WAL directory, unique among producers)")
	case c.AllowWeakerDelivery:
		return fmt.Errorf("kafkawal: config: AllowWeakerDelivery: cannot be combined with Delivery ExactlyOnce (transactions need acks=all and idempotence)")
	case c.CommitInterval < 0:
		return fmt.Errorf("kafkawal: config: CommitInterval: %v is negative", c.CommitInterval)
	case c.ParkAfter > 0:
		return fmt.Errorf("kafkawal: config: ParkAfter: %v: stalled partitions are not parked under Delivery ExactlyOnce (their records stay in the WAL); leave it unset", c.ParkAfter)
	}
	if err := validTopicName(c.CheckpointTopic); err != nil {
		return fmt.Errorf("kafkawal: config: CheckpointTopic: %w", err)
	}
	return nil
}

// validTopicName applies Kafka's rule for topic names.
func validTopicName(name string) error {
	if name == "" {
		return fmt.Errorf("empty")
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%q is not a valid topic name", name)
	}
	if len(name) > 249 {
		return fmt.Errorf("%d characters; Kafka allows 249", len(name))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%q: Kafka allows only ASCII letters, digits, '.', '_' and '-'", name)
		}
	}
	return nil
}

// txnKafkaConfig checks the librdkafka settings that exactly-once needs,
// before the generic checks (whose advice, AllowWeakerDelivery, does not
// apply here), and sets transactional.id. m is the application's settings
// with kafkawal's defaults filled in.
func (c Config) txnKafkaConfig(m kafka.ConfigMap) error {
	if !c.ExactlyOnce {
		return nil
	}
	if _, ok := c.Kafka["transactional.id"]; ok {
		return fmt.Errorf("kafkawal: config: Kafka[transactional.id]: set by kafkawal from TransactionalID, must not be set")
	}
	if v, ok := m["enable.idempotence"]; ok && !truthy(v) {
		return fmt.Errorf("kafkawal: config: Kafka[enable.idempotence]: false is not allowed with Delivery ExactlyOnce (transactions need idempotence)")
	}
	if v := fmt.Sprint(m["acks"]); v != "all" && v != "-1" {
		return fmt.Errorf("kafkawal: config: Kafka[acks]: only all (-1) is allowed with Delivery ExactlyOnce")
	}
	txnTimeout, err := msSetting(m, "transaction.timeout.ms", defaultTransactionTimeoutMs)
	if err != nil {
		return err
	}
	msgTimeout, err := msSetting(m, "message.timeout.ms", DefaultMessageTimeoutMs)
	if err != nil {
		return err
	}
	if msgTimeout != 0 && msgTimeout > txnTimeout {
		return fmt.Errorf("kafkawal: config: Kafka[message.timeout.ms]: %d ms is above transaction.timeout.ms (%d ms); librdkafka requires it to be at most that, or 0 (kafkawal's default)", msgTimeout, txnTimeout)
	}
	m["transactional.id"] = c.TransactionalID
	return nil
}

// msSetting reads an integer setting of m, def when unset.
func msSetting(m kafka.ConfigMap, key string, def int) (int, error) {
	v, ok := m[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(fmt.Sprint(v))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("kafkawal: config: Kafka[%s]: not a number of milliseconds", key)
	}
	return n, nil
}

// transactionTimeout is the producer's transaction.timeout.ms: past this
// age a transaction may have been aborted by the coordinator.
func transactionTimeout(m kafka.ConfigMap) time.Duration {
	ms, err := msSetting(m, "transaction.timeout.ms", defaultTransactionTimeoutMs)
	if err != nil {
		ms = defaultTransactionTimeoutMs
	}
	return time.Duration(ms) * time.Millisecond
}
