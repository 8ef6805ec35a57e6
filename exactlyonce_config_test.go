package kafkawal_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkawal/kafkawal"
)

// Exactly-once settings that cannot work are refused by Open with an error
// naming the field, before anything is created.
func TestExactlyOnceConfigErrors(t *testing.T) {
	kcfg := func(kv ...any) kafka.ConfigMap {
		m := kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	eos := func(mod func(*kafkawal.Config)) kafkawal.Config {
		c := kafkawal.Config{Kafka: kcfg(), Delivery: kafkawal.ExactlyOnce, TransactionalID: "orders-1"}
		mod(&c)
		return c
	}
	cases := []struct {
		name  string
		cfg   kafkawal.Config
		field string
	}{
		{"no TransactionalID", eos(func(c *kafkawal.Config) { c.TransactionalID = "" }), "TransactionalID"},
		{"AllowWeakerDelivery", eos(func(c *kafkawal.Config) { c.AllowWeakerDelivery = true }), "AllowWeakerDelivery"},
		{"idempotence off", eos(func(c *kafkawal.Config) { c.Kafka = kcfg("enable.idempotence", false) }), "Kafka[enable.idempotence]"},
		{"idempotence off as a string", eos(func(c *kafkawal.Config) { c.Kafka = kcfg("enable.idempotence", "false") }), "Kafka[enable.idempotence]"},
		{"user transactional.id", eos(func(c *kafkawal.Config) { c.Kafka = kcfg("transactional.id", "mine") }), "Kafka[transactional.id]"},
		{"acks 1", eos(func(c *kafkawal.Config) { c.Kafka = kcfg("acks", 1) }), "Kafka[acks]"},
		{"message timeout above transaction timeout", eos(func(c *kafkawal.Config) { c.Kafka = kcfg("message.timeout.ms", 70000) }), "Kafka[message.timeout.ms]"},
		{"message timeout above a set transaction timeout", eos(func(c *kafkawal.Config) {
			c.Kafka = kcfg("message.timeout.ms", 20000, "transaction.timeout.ms", 10000)
		}), "Kafka[message.timeout.ms]"},
		{"transaction timeout not a number", eos(func(c *kafkawal.Config) { c.Kafka = kcfg("transaction.timeout.ms", "soon") }), "Kafka[transaction.timeout.ms]"},
		{"negative CommitInterval", eos(func(c *kafkawal.Config) { c.CommitInterval = -time.Second }), "CommitInterval"},
		{"ParkAfter", eos(func(c *kafkawal.Config) { c.ParkAfter = time.Minute }), "ParkAfter"},
		{"bad CheckpointTopic", eos(func(c *kafkawal.Config) { c.CheckpointTopic = "no spaces" }), "CheckpointTopic"},
		{"CheckpointTopic too long", eos(func(c *kafkawal.Config) { c.CheckpointTopic = strings.Repeat("c", 250) }), "CheckpointTopic"},
		{"unknown Delivery", eos(func(c *kafkawal.Config) { c.Delivery = 7 }), "Delivery"},
		{"TransactionalID without ExactlyOnce", eos(func(c *kafkawal.Config) { c.Delivery = kafkawal.AtLeastOnce }), "TransactionalID"},
		{"CommitInterval without ExactlyOnce", kafkawal.Config{Kafka: kcfg(), CommitInterval: time.Second}, "CommitInterval"},
		{"CheckpointTopic without ExactlyOnce", kafkawal.Config{Kafka: kcfg(), CheckpointTopic: "c"}, "CheckpointTopic"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "wal")
			c.cfg.Dir = dir
			if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("Validate = %v, want an error naming %s", err, c.field)
			}
			p, err := kafkawal.Open(c.cfg)
			if err == nil {
				p.Close(context.Background())
				t.Fatal("Open accepted the config")
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Fatalf("Open error %q does not name %s", err, c.field)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("Open created %s (stat: %v); nothing should be opened", dir, err)
			}
		})
	}

	// The settings that are fine: 0 (never) and a finite message timeout
	// up to the transaction timeout.
	for _, m := range []kafka.ConfigMap{kcfg(), kcfg("message.timeout.ms", 0), kcfg("message.timeout.ms", 60000), kcfg("message.timeout.ms", 5000, "transaction.timeout.ms", 5000)} {
		c := eos(func(c *kafkawal.Config) { c.Kafka = m })
		c.Dir = t.TempDir()
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%v) = %v, want nil", m, err)
		}
	}
}
