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
//
// Options.Secure gives a broker TLS material generated at start (a CA,
// broker and client certificates, a rogue CA and client for failure
// tests), a SASL user and listeners for SSL, mutual TLS, SASL_SSL with
// SCRAM-SHA-512 and SASL_PLAINTEXT with PLAIN, with ACLs enforced.
// ClientConfig returns librdkafka settings for a listener, GrantProducer
// the ACLs a producer needs, AdminOpts a super user's kgo options.
package kafkatest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kgo"
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
	// Secure generates TLS material and SASL users for the broker
	// (Broker.Security) and gives it listeners beyond Plaintext. The real
	// broker gets every one of SecureListeners besides PLAINTEXT, and
	// enforces ACLs (StandardAuthorizer; the only super user is
	// User:ANONYMOUS, which PLAINTEXT and SSL clients are). The embedded
	// broker (kfake) has one listener only, Listener, and enforces ACLs on
	// SASL listeners (docs/brokers.md lists what it lacks). Default false.
	Secure bool
	// Listener is the listener Bootstrap returns and the proxy fronts.
	// Default Plaintext; any other needs Secure.
	Listener Listener
	// Brokers is the number of broker nodes. Default 1. A real cluster of
	// two or more puts each broker behind a fault proxy of its own (see
	// Proxies), so that one broker can be cut off from clients while the
	// cluster itself stays healthy: a partial outage. Several brokers are
	// not Secure.
	Brokers int
}

func (o Options) withDefaults() (Options, error) {
	if o.Partitions <= 0 {
		o.Partitions = 1
	}
	if o.Listener == "" {
		o.Listener = Plaintext
	}
	if _, err := ParseListener(string(o.Listener)); err != nil {
		return o, err
	}
	if o.Listener != Plaintext && !o.Secure {
		return o, fmt.Errorf("kafkatest: Options.Listener %s needs Options.Secure", o.Listener)
	}
	if o.Brokers <= 0 {
		o.Brokers = 1
	}
	if o.Brokers > 1 && o.Secure {
		return o, fmt.Errorf("kafkatest: Options.Brokers %d: a cluster of several brokers is not Secure", o.Brokers)
	}
	return o, nil
}

// Broker is a running Kafka cluster (one node unless Options.Brokers).
type Broker interface {
	// Bootstrap is the bootstrap.servers value for clients of
	// Options.Listener (the proxy's address when Options.Proxy is set).
	Bootstrap() string
	// ClientConfig returns librdkafka settings for a client of listener l:
	// bootstrap.servers and the security settings of the default client
	// identity (Security.User on SASL listeners, the client certificate on
	// MTLS). It fails if the broker has no such listener.
	ClientConfig(l Listener) (kafka.ConfigMap, error)
	// Security is the TLS material and users of a Secure broker, nil
	// otherwise.
	Security() *Security
	// AdminOpts are kgo options that reach the broker as a super user,
	// bypassing the proxy: for creating topics, granting ACLs and reading
	// records back (ReadAllWith).
	AdminOpts() []kgo.Opt
	// Kind is "embedded" or "real".
	Kind() string
	// CreateTopic creates a topic and waits until it accepts produces.
	// configs are topic configs such as max.message.bytes.
	CreateTopic(ctx context.Context, name string, partitions int32, configs map[string]string) error
	// Kill stops the broker abruptly (SIGKILL for a real broker).
	Kill() error
	// Restart starts a killed broker again on the same address and data.
	Restart(ctx context.Context) error
	// Proxy is the fault proxy in front of the broker, nil without
	// Options.Proxy and for a cluster of several brokers (see Proxies).
	Proxy() *Proxy
	// Proxies are the fault proxies in front of each broker, in node
	// order; nil without proxies.
	Proxies() []*Proxy
	// CPU is the CPU time (user and system) the brokers' own processes have
	// used since they last started, for benchmarks that count what a record
	// costs on both sides of the loopback: 0 for the embedded broker, whose
	// CPU is the calling process's own.
	CPU() (time.Duration, error)
	// StallPartition makes a partition stop accepting records while the
	// rest of the cluster goes on: the embedded broker answers its produce
	// requests with NOT_ENOUGH_REPLICAS (retriable), after moving it to a
	// broker of its own when there are several; a real cluster of two or
	// more brokers blackholes the proxy of the partition's leader, which
	// stalls every partition that broker leads. It returns the topic's
	// partitions that stall and a function that ends the stall.
	StallPartition(ctx context.Context, topic string, partition int32) (stalled []int32, heal func() error, err error)
	// DeleteTopic deletes a topic.
	DeleteTopic(ctx context.Context, name string) error
	// AddPartitions grows a topic to total partitions.
	AddPartitions(ctx context.Context, name string, total int32) error
	// Close stops the broker and removes what it created.
	Close() error
}

// Seeds splits a bootstrap.servers value (a Broker's Bootstrap) into the
// seed brokers franz-go takes.
func Seeds(bootstrap string) []string { return strings.Split(bootstrap, ",") }

// Kind returns the broker kind selected by KAFKAWAL_BROKER: "embedded" or "real".
func Kind() string {
	if os.Getenv(EnvBroker) == "real" {
		return "real"
	}
	return "embedded"
}

// waitTimeout bounds how long a broker may take to come up.
const waitTimeout = 90 * time.Second
