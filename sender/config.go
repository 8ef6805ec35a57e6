package sender

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal/wal"
)

// Defaults.
const (
	// The window adapts to the partitions produced to unless MaxInFlight
	// (MaxInFlightBytes) is set: it holds InFlightPerPartition records
	// (InFlightBytesPerPartition bytes) for each partition of the topics the
	// sender has produced to since Open, at least DefaultMinInFlight
	// (DefaultMinInFlightBytes) and at most DefaultMaxInFlight
	// (DefaultMaxInFlightBytes). librdkafka batches per partition: with
	// the floor spread over 1,000 partitions, each would hold about 33
	// records, and its broker thread would wake for every few of them
	// (bench/HISTORY.md, "Many partitions"). The records' bound per
	// partition is four times the bytes' (512 records, 128 KiB: records
	// of 256 bytes) so that small records, bound by the count, get the
	// deeper queues that many partitions need (on Apache Kafka a partition
	// waits its turn for a request, and its batch is what it has queued
	// then), while the bytes librdkafka holds stay as they were.
	DefaultMinInFlight        = 32768
	DefaultMaxInFlight        = 524288
	DefaultMinInFlightBytes   = 32 << 20
	DefaultMaxInFlightBytes   = 128 << 20
	InFlightPerPartition      = 512
	InFlightBytesPerPartition = 128 << 10
	DefaultCursorSyncInterval = 100 * time.Millisecond
	// DefaultMessageTimeoutMs is librdkafka's message.timeout.ms unless the
	// application sets it: 0 = never time out. librdkafka then retries a
	// record until it is delivered or fails for good, keeping per-partition
	// order (idempotence), however long the outage; memory stays bounded
	// because only MaxInFlight records are ever handed to it, the backlog
	// waits in the WAL. A finite timeout makes librdkafka give records back
	// (ErrMsgTimedOut) during a long outage; the sender then purges what
	// librdkafka still holds and re-sends everything unacknowledged from the
	// WAL, in order: nothing is lost, and records that had reached Kafka
	// before the purge arrive twice (Stats.Resent).
	DefaultMessageTimeoutMs = 0
	// DefaultPartitionStallTimeout: a partition whose oldest record in
	// flight has waited this long is stalled. A leader election or a
	// broker restart ends well within it; a partition that waits longer is
	// not coming back soon.
	DefaultPartitionStallTimeout = 10 * time.Second
	// DefaultParkAfter: a partition stalled this long has its records
	// parked. Parking copies them once more; a stall that ends sooner costs
	// the disk its traffic instead.
	DefaultParkAfter = 30 * time.Second
)

// Config configures a Sender.
type Config struct {
	// Kafka is the librdkafka configuration; bootstrap.servers is required.
	// It is never logged (it may hold passwords). See Defaults and the
	// rejected settings in KafkaConfig.
	Kafka kafka.ConfigMap
	// MaxInFlight bounds the records handed to librdkafka and not yet
	// reported. Default DefaultMaxInFlight, the bound of a window that
	// adapts (see DefaultMinInFlight and kafkawal.Config.MaxInFlight).
	MaxInFlight int
	// MaxInFlightBytes bounds their encoded bytes. Default
	// DefaultMaxInFlightBytes, the bound of a window that adapts.
	MaxInFlightBytes int64
	// MinInFlight, when above 0 and below MaxInFlight, makes the window
	// adapt: it holds InFlightPerPartition records for each partition
	// of the topics produced to since Open, at least MinInFlight, at most MaxInFlight.
	// Default: DefaultMinInFlight when MaxInFlight is unset, else 0 (a
	// window of MaxInFlight).
	MinInFlight int
	// MinInFlightBytes is the same for the bytes, with
	// InFlightBytesPerPartition.
	MinInFlightBytes int64
	// CursorSyncInterval is how often the delivered watermark is persisted.
	// Default 100ms.
	CursorSyncInterval time.Duration
	// PartitionStallTimeout: a partition whose oldest record in flight has
	// waited this long, and that delivered none in that time, is stalled:
	// logged, listed in Stats, and left out for keyless records. Default
	// 10s.
	PartitionStallTimeout time.Duration
	// ParkAfter: a partition stalled this long has its unacknowledged
	// records parked (park.go), so that the WAL holds only its backlog.
	// Default 30s; negative: never. Never under ExactlyOnce (txnstall.go).
	ParkAfter time.Duration
	// AllowWeakerDelivery permits acks other than all and
	// enable.idempotence=false, which can lose or reorder records in Kafka
	// itself. Default false: Open rejects them. (kafkawal.Config also
	// checks message.timeout.ms against it.)
	AllowWeakerDelivery bool
	// Logger receives events. Default: none.
	Logger *zerolog.Logger
	// OnDelivered, if set, is called with each delivered sequence, in
	// report order, on the sender goroutine: keep it fast.
	OnDelivered func(seq uint64, topic string, partition int32, offset int64)
	// OnDeadLetter, if set, is called for each dead-lettered record after it
	// is in the dead-letter log, on the sender goroutine.
	OnDeadLetter func(wal.DeadLetter)
	// OnHole, if set, is called for each hole the sender skips (a record
	// recovery could not read; never sent), on the sender goroutine.
	OnHole func(seq uint64)
	// OnRing, if set, is called on the sender goroutine with the size of
	// the window's ring whenever it grows (from InitialRing: it grows with
	// the partitions produced to, up to ringSpan times MaxInFlight). The
	// window produces a record only once the one a ring's length before it
	// has left the window (reported, skipped, or handed to a lane), so a
	// ring of outcomes indexed by sequence and this long keeps the
	// outcomes of the last ring's length of records but for those of lanes.
	OnRing func(n int)
	// ObserveDelivery, if set, is called on the sender goroutine with the
	// time from each delivered record's timestamp to its delivery report
	// (records without a timestamp are not observed): it must be quick.
	// Default: none.
	ObserveDelivery func(time.Duration)
	// ObserveCommit, if set, is called on the sender goroutine with the
	// duration of each CommitTransaction under ExactlyOnce. Default: none.
	ObserveCommit func(time.Duration)

	// ExactlyOnce makes the sender transactional (see txn.go): records and
	// the WAL position covering them are committed to Kafka together.
	ExactlyOnce bool
	// TransactionalID is librdkafka's transactional.id and the key of the
	// checkpoint. Required with ExactlyOnce, refused without.
	TransactionalID string
	// CommitInterval: how long a transaction gathers records. Default
	// DefaultCommitInterval with ExactlyOnce; refused without.
	CommitInterval time.Duration
	// CheckpointTopic holds the committed positions. Default
	// DefaultCheckpointTopic with ExactlyOnce; refused without.
	CheckpointTopic string
	// Identity is the WAL directory's (wal.LoadTxnIdentity), with
	// ExactlyOnce; FileMode is the mode the sender rewrites it with.
	Identity wal.TxnIdentity
	FileMode os.FileMode
}

func (c Config) withDefaults() Config {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
		if c.MinInFlight == 0 {
			c.MinInFlight = DefaultMinInFlight
		}
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = DefaultMaxInFlightBytes
		if c.MinInFlightBytes == 0 {
			c.MinInFlightBytes = DefaultMinInFlightBytes
		}
	}
	if c.CursorSyncInterval == 0 {
		c.CursorSyncInterval = DefaultCursorSyncInterval
	}
	if c.PartitionStallTimeout == 0 {
		c.PartitionStallTimeout = DefaultPartitionStallTimeout
	}
	if c.ParkAfter == 0 {
		c.ParkAfter = DefaultParkAfter
		if c.ExactlyOnce {
			c.ParkAfter = -1 // not yet under exactly-once (txnstall.go)
		}
	}
	if c.Logger == nil {
		nop := zerolog.Nop()
		c.Logger = &nop
	}
	if c.ObserveDelivery == nil {
		c.ObserveDelivery = func(time.Duration) {}
	}
	if c.ObserveCommit == nil {
		c.ObserveCommit = func(time.Duration) {}
	}
	return c.txnWithDefaults()
}

// eventSlack is the room, beyond the window, in librdkafka's queue and in
// the events channel: for the exactly-once checkpoint record and for the
// events that are not delivery reports (errors, statistics).
const eventSlack = 1024

// InitialRing is the size of the window's ring at Open (see OnRing).
func (c Config) InitialRing() int { return c.withDefaults().initialRing() }

// MaxInFlightOrDefault is MaxInFlight, or its default when unset.
func (c Config) MaxInFlightOrDefault() int { return c.withDefaults().MaxInFlight }

// Validate reports the first invalid setting, naming it.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.MaxInFlight < 0:
		return fmt.Errorf("kafkawal: config: MaxInFlight: %d is negative", c.MaxInFlight)
	case c.MaxInFlightBytes < 0:
		return fmt.Errorf("kafkawal: config: MaxInFlightBytes: %d is negative", c.MaxInFlightBytes)
	case c.MinInFlight < 0:
		return fmt.Errorf("kafkawal: config: MinInFlight: %d is negative", c.MinInFlight)
	case c.MinInFlightBytes < 0:
		return fmt.Errorf("kafkawal: config: MinInFlightBytes: %d is negative", c.MinInFlightBytes)
	case c.CursorSyncInterval < 0:
		return fmt.Errorf("kafkawal: config: CursorSyncInterval: %v is negative", c.CursorSyncInterval)
	case c.PartitionStallTimeout < 0:
		return fmt.Errorf("kafkawal: config: PartitionStallTimeout: %v is negative", c.PartitionStallTimeout)
	}
	if err := c.validateTxn(); err != nil {
		return err
	}
	_, err := c.KafkaConfig()
	return err
}

// KafkaConfig returns the librdkafka configuration the sender uses: a copy
// of Config.Kafka with kafkawal's defaults for keys the application did not
// set, and the keys the sender needs forced. Settings that would break the
// delivery contract are rejected with an error naming the key. Values are
// never put in errors or logs.
func (c Config) KafkaConfig() (kafka.ConfigMap, error) {
	c = c.withDefaults()
	m := kafka.ConfigMap{}
	for k, v := range c.Kafka {
		m[k] = v
	}
	if s := fmt.Sprint(m["bootstrap.servers"]); m["bootstrap.servers"] == nil || strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("kafkawal: config: Kafka[bootstrap.servers]: required")
	}
	defaults := map[string]kafka.ConfigValue{
		"enable.idempotence": true,
		"acks":               "all",
		"linger.ms":          5,
		"message.timeout.ms": DefaultMessageTimeoutMs,
		// Enough room in librdkafka's own queue for our window, so that
		// Produce never sees ErrQueueFull in normal operation: the window
		// and the lanes never hold more than MaxInFlight records, and
		// librdkafka counts a record only until its report is polled.
		"queue.buffering.max.messages": max(c.MaxInFlight+eventSlack, 100000),
	}
	for k, v := range defaults {
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	if err := c.txnKafkaConfig(m); err != nil {
		return nil, err
	}
	if !c.AllowWeakerDelivery {
		if v, ok := m["enable.idempotence"]; ok && !truthy(v) {
			return nil, fmt.Errorf("kafkawal: config: Kafka[enable.idempotence]: false can reorder records in Kafka; set AllowWeakerDelivery to opt out")
		}
		if v := fmt.Sprint(m["acks"]); v != "all" && v != "-1" {
			return nil, fmt.Errorf("kafkawal: config: Kafka[acks]: only all (-1) keeps delivered records through a broker failure; set AllowWeakerDelivery to opt out")
		}
	}
	if proto := strings.ToUpper(fmt.Sprint(m["security.protocol"])); strings.HasPrefix(proto, "SASL_") && saslMechanism(m) == nil {
		return nil, fmt.Errorf("kafkawal: config: Kafka[sasl.mechanism]: required with security.protocol=%s (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, or GSSAPI for Kerberos)", proto)
	}
	for _, k := range []string{"transactional.id", "go.delivery.reports", "go.delivery.report.fields", "go.events.channel.size", "go.logs.channel.enable", "go.logs.channel"} {
		if _, ok := c.Kafka[k]; ok {
			return nil, fmt.Errorf("kafkawal: config: Kafka[%s]: set by kafkawal, must not be set", k)
		}
	}
	// The sender reads reports from Events() and needs only the topic,
	// partition and offset (and the Opaque where it set one, see
	// partition.go); the channel holds every
	// possible report of the window, so librdkafka's poller never blocks.
	// One report per record handed over, and never more than MaxInFlight
	// records unreported on a producer (a rewind waits for every report;
	// a rebuild drops the producer and its channel), so MaxInFlight slots
	// and eventSlack for the rest.
	m["go.delivery.reports"] = true
	m["go.delivery.report.fields"] = "none"
	m["go.events.channel.size"] = c.MaxInFlight + eventSlack
	m["go.logs.channel.enable"] = true
	return m, nil
}

// saslMechanism is sasl.mechanism or its alias sasl.mechanisms; nil when
// neither is set.
func saslMechanism(m kafka.ConfigMap) kafka.ConfigValue {
	if v, ok := m["sasl.mechanism"]; ok {
		return v
	}
	return m["sasl.mechanisms"]
}

// Probe asks librdkafka whether it accepts the configuration the sender
// would give it. Without bootstrap.servers the probe producer knows no
// broker, so it opens no connection; librdkafka still checks every key and
// value (and loads TLS material) as it will when the sender starts. Its
// errors name the setting and never echo a value.
func (c Config) Probe() error {
	kcfg, err := c.KafkaConfig()
	if err != nil {
		return err
	}
	probe := kafka.ConfigMap{}
	for k, v := range kcfg {
		probe[k] = v
	}
	delete(probe, "bootstrap.servers")
	delete(probe, "go.logs.channel.enable")
	probe["log_level"] = 0 // no "no bootstrap.servers" warning on stderr
	p, err := kafka.NewProducer(&probe)
	if err != nil {
		return configError(kcfg, err)
	}
	p.Close()
	return nil
}

// configError is the error for a configuration librdkafka refused. Its
// message names the setting ("ssl.ca.location failed: ...") and never
// echoes a value; the error names it the way kafkawal's own do, and for a
// file setting adds why the file cannot be read, which librdkafka reduces
// to "system lib".
func configError(m kafka.ConfigMap, err error) error {
	msg := err.Error()
	key := ""
	for k := range m {
		if len(k) > len(key) && strings.Contains(msg, k) {
			key = k
		}
	}
	if key == "" {
		return fmt.Errorf("kafkawal: config: Kafka: %w", err)
	}
	if strings.HasSuffix(key, ".location") || key == "sasl.kerberos.keytab" {
		if path, ok := m[key].(string); ok && path != "" && path != "probe" {
			f, ferr := os.Open(path)
			if ferr != nil {
				return fmt.Errorf("kafkawal: config: Kafka[%s]: %w (%v)", key, err, ferr)
			}
			f.Close()
		}
	}
	return fmt.Errorf("kafkawal: config: Kafka[%s]: %w", key, err)
}

func truthy(v kafka.ConfigValue) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return x == "true" || x == "1"
	case int:
		return x != 0
	}
	return true
}
