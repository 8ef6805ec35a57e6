package kafkawal

import (
	"errors"
	"fmt"
)

// Validate reports the first invalid field, by name: a value out of range,
// settings that contradict each other (MaxRecordBytes above librdkafka's
// message.max.bytes; a finite message.timeout.ms without
// AllowWeakerDelivery), and what librdkafka itself refuses in Kafka (an
// unknown key, a bad value). For the last it builds a librdkafka
// producer without bootstrap.servers, which connects nowhere, and
// destroys it (some tens of milliseconds). Open calls it before it
// touches Dir, so an invalid Config changes nothing.
func (c Config) Validate() error {
	if err := c.validate(); err != nil {
		return err
	}
	return c.checkLibrdkafka()
}

// validate is Validate without asking librdkafka.
func (c Config) validate() error {
	if c.Dir == "" {
		return errors.New("kafkawal: config: Dir: required")
	}
	if c.CorruptionPolicy != FailOnCorruption && c.CorruptionPolicy != QuarantineCorruption {
		return fmt.Errorf("kafkawal: config: CorruptionPolicy: unknown policy %d", c.CorruptionPolicy)
	}
	if err := c.Delivery.validate(); err != nil {
		return err
	}
	if err := c.contradictions(); err != nil {
		return err
	}
	if err := c.walOptions().Validate(); err != nil {
		return err
	}
	return c.senderConfig().Validate()
}

// checkLibrdkafka asks librdkafka whether it accepts the configuration the
// sender would give it (sender.Config.Probe: no connection is opened).
func (c Config) checkLibrdkafka() error { return c.senderConfig().Probe() }
