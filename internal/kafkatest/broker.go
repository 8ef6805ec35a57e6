// Package kafkatest provides the Kafka brokers that kafkawal's tests, examples
// and drills talk to: an embedded in-process broker (franz-go's kfake), a real
// Apache Kafka launched from Maven-resolved jars, and a TCP fault proxy that
// the broker advertises so that clients cannot bypass it.
//
// Tests choose the broker with one environment variable:
//
//	KAFKAWAL_BROKER=""|"embedded"  kfake in the test process (default)
//	KAFKAWAL_BROKER="real"         Apache Kafka 4.x (see scripts/kafka)
//
// A scenario that cannot reach its broker fails; it is never skipped.
package kafkatest

import (
	"context"
	"os"
	"time"
)

// EnvBroker names the environment variable that selects the broker kind.
const EnvBroker = "KAFKAWAL_BROKER"

// Options configures a broker started by Start.
type Options struct {
	// Partitions is the partition count of auto-created topics. Default 1.
	Partitions int32
	// AutoCreateTopics lets a produce to an unknown topic create it.
	// Default false: tests create their topics with CreateTopic.
	AutoCreateTopics bool
	// Proxy puts a fault proxy in front of the broker and makes the broker
	// advertise the proxy's address, so every client connection crosses it.
	Proxy bool
	// Ephemeral starts the broker without persistent data: Restart brings
	// it back empty. On the embedded broker an idempotent producer then
	// fails fatally; Apache Kafka 4.4 accepts it silently (docs/brokers.md).
	// Default false: data survives Kill/Restart.
	Ephemeral bool
}

// Broker is a running Kafka cluster of one node.
type Broker interface {
	// Bootstrap is the bootstrap.servers value for clients (the proxy's
	// address when Options.Proxy is set).
	Bootstrap() string
	// Kind is "embedded" or "real".
	Kind() string
	// CreateTopic creates a topic and waits until it accepts produces.
	// configs are topic configs such as max.message.bytes.
	CreateTopic(ctx context.Context, name string, partitions int32, configs map[string]string) error
	// Kill stops the broker abruptly (SIGKILL for a real broker).
	Kill() error
	// Restart starts a killed broker again on the same address and data.
	Restart(ctx context.Context) error
	// Proxy is the fault proxy in front of the broker, nil without Options.Proxy.
	Proxy() *Proxy
	// Close stops the broker and removes what it created.
	Close() error
}

// Kind returns the broker kind selected by KAFKAWAL_BROKER: "embedded" or "real".
func Kind() string {
	if os.Getenv(EnvBroker) == "real" {
		return "real"
	}
	return "embedded"
}

// waitTimeout bounds how long a broker may take to come up.
const waitTimeout = 90 * time.Second
