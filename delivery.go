package kafkawal

import "fmt"

// Delivery says how many copies of a record Kafka may hold: see the
// constants, and the README's "Exactly-once" section.
type Delivery int

const (
	// AtLeastOnce: every record reaches Kafka; after a crash, a broker
	// failure or a rebuilt producer some are sent again and Kafka holds
	// them twice (Stats.Resent, Stats.Replayed). Default.
	AtLeastOnce Delivery = iota
	// ExactlyOnce: records are produced in Kafka transactions, and each
	// transaction also writes the WAL position it covers to the
	// CheckpointTopic, keyed by TransactionalID; the position Kafka
	// committed is where delivery resumes after any crash. Consumers with
	// isolation.level=read_committed (librdkafka's default, not the Java
	// client's) see each record once. Requires TransactionalID.
	ExactlyOnce
)

func (d Delivery) String() string {
	switch d {
	case AtLeastOnce:
		return "AtLeastOnce"
	case ExactlyOnce:
		return "ExactlyOnce"
	}
	return fmt.Sprintf("Delivery(%d)", int(d))
}

func (d Delivery) validate() error {
	if d != AtLeastOnce && d != ExactlyOnce {
		return fmt.Errorf("kafkawal: config: Delivery: unknown value %d", int(d))
	}
	return nil
}
