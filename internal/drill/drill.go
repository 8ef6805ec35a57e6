// Package drill is the crash drill behind `kafkawal drill`: it proves
// kafkawal's delivery contract on a real broker by SIGKILLing a producing
// process at random instants, optionally killing the broker and cutting the
// network, and then comparing what Kafka holds with a ledger of every record
// whose Append returned nil.
//
// The parent (Run) owns the broker, the faults and the child processes. Each
// child (RunChild, reached through ChildMain) opens a kafkawal Producer on
// the same directory and appends records at a fixed rate; after each
// successful Append it writes the record ids to the ledger, a pipe to the
// parent (see ledger.go for the line protocol). A record the ledger names
// was acknowledged by kafkawal, so the ledger cannot claim more than the
// producer promised; a kill between Append and the ledger write only makes
// it claim less.
//
// Ids are run<<32 | counter, so they increase across restarts and never
// repeat, and records go round-robin over explicit partitions, so in every
// partition the first occurrence of each id must appear in increasing id
// order: that is the per-partition order check.
package drill

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// Defaults of Config's zero fields.
const (
	DefaultTopic        = "drill"
	DefaultPartitions   = 4
	DefaultRate         = 500
	DefaultSize         = 100
	DefaultKills        = 20
	DefaultKillAfterMin = 100 * time.Millisecond
	DefaultKillAfterMax = 2 * time.Second
	DefaultCutFor       = 3 * time.Second
	DefaultStallFor     = 10 * time.Second
	// Children of a drill with partition stalls find a stall within a
	// second and park after two: the kills then land while records are
	// parked, and while they drain.
	DefaultStallTimeout  = time.Second
	DefaultParkAfter     = 2 * time.Second
	DefaultBrokerDown    = time.Second
	DefaultDrainRecords  = 100
	DefaultDrainTimeout  = 2 * time.Minute
	DefaultVerifyTimeout = 2 * time.Minute

	// With PowerCuts: the children's WAL segment size, and how often a
	// record is one Kafka refuses (to put the dead-letter log under cuts).
	DefaultPowerCutSegmentBytes    = 64 << 10
	DefaultPowerCutDeadLetterEvery = 500
	// deadLetterTopicSuffix names the topic that refuses records, and the
	// sizes that make it refuse them.
	deadLetterTopicSuffix = "-refused"
	deadLetterMaxBytes    = 1024
	deadLetterValueSize   = 2048
)

// Config configures a drill. Every zero field but Command has a default.
type Config struct {
	// Broker is the broker the drill starts: "embedded" (kfake in this
	// process, default) or "real" (Apache Kafka via scripts/kafka/kafka.sh).
	// Ignored when Bootstrap is set.
	Broker string
	// Bootstrap, if set, is an existing cluster to use instead of starting
	// one; broker restarts and network cuts then cannot be injected. Its
	// topics must have at least Partitions partitions, and records of
	// other drills in them are ignored (each drill tags its records).
	Bootstrap string
	// Listener is the kind of listener the children produce through:
	// "plaintext" (default), or ssl, mtls, sasl_ssl, sasl_plaintext on a
	// Secure broker the drill starts (kafkatest.Options.Secure), as a
	// principal granted WRITE on the topics only. The read-back goes
	// through the broker's admin client.
	Listener string
	// Topics are created with Partitions partitions each. Default "drill".
	Topics []string
	// Partitions per topic; records go round-robin over topics and
	// partitions. Default 4.
	Partitions int
	// Dir is the WAL directory every child opens, kept after the drill.
	// Default: a temporary directory, kept only when the drill ran to the
	// end and failed (Report.Dir names it), removed otherwise.
	Dir string

	// Rate is the records appended per second by each child. Default 500.
	Rate float64
	// Size is each record's value size in bytes. Default 100.
	Size int
	// Durability is "always" (default), "periodic" or "never".
	Durability string
	// ExactlyOnce runs the children with Delivery ExactlyOnce (one
	// TransactionalID for the drill) and reads the topics back with
	// read_committed: then duplicates fail the drill too.
	ExactlyOnce bool
	// CommitInterval is the children's CommitInterval under ExactlyOnce.
	// Default kafkawal's (100ms).
	CommitInterval time.Duration

	// Kills is the number of children SIGKILLed. Default 20; set
	// NoKills for a drill without kills.
	Kills int
	// NoKills makes Kills 0 (only the drain run).
	NoKills bool
	// KillAfterMin and KillAfterMax bound the uniform random time from a
	// child's start to its SIGKILL. Default 100ms and 2s.
	KillAfterMin, KillAfterMax time.Duration
	// Seed seeds the kill and fault schedule; 0 picks one from the clock
	// (Report.Seed says which, to run the same schedule again).
	Seed uint64

	// BrokerRestarts is the number of broker kills (SIGKILL for a real
	// broker) and restarts at random points of the kill phase, each after
	// BrokerDown (default 1s) of downtime.
	BrokerRestarts int
	BrokerDown     time.Duration
	// NetCuts is the number of network blackholes, each CutFor long
	// (default 3s), through a fault proxy that the broker advertises.
	NetCuts int
	CutFor  time.Duration
	// StallPartition is the number of times partition 0 of the first
	// topic stops accepting records (kafkatest.Broker.StallPartition: on
	// a real cluster, one of two brokers is cut off from clients, and the
	// partitions it leads stall), each StallFor long (default 10s), at
	// random points of the kill phase. The children then use
	// StallTimeout (default 500ms) as PartitionStallTimeout and ParkAfter
	// (default 500ms), so that they park and drain while being killed.
	StallPartition int
	StallFor       time.Duration
	StallTimeout   time.Duration
	ParkAfter      time.Duration

	// DrainRecords is how many records the final child appends before it
	// flushes and closes. Default 100.
	DrainRecords int
	// DrainTimeout bounds the final child's Flush and Close. Default 2m.
	DrainTimeout time.Duration
	// VerifyTimeout bounds reading the topics back. Default 2m.
	VerifyTimeout time.Duration

	// Command builds the command line of a child from the arguments
	// ChildMain parses (for the CLI: its own binary with drill-child
	// first). Required. Run sets the command's ExtraFiles (the ledger is
	// fd 3), Stdout, Stderr and, on Linux, SysProcAttr.
	Command func(args []string) *exec.Cmd
	// Log receives one progress line per event. Default: discarded.
	Log io.Writer
	// ChildStderr, if set, receives every child's stderr (kafkawal's
	// warnings) as well as the tail kept for the report.
	ChildStderr io.Writer

	// PowerCuts, if > 0, replaces the kills with power cuts: every child
	// runs on a filesystem that forgets, at each cut, what was not
	// durable (package internal/powercut, mounted over Dir; the WAL is
	// Dir/wal), and each run ends with a cut at a random instant (within
	// KillAfterMin..KillAfterMax) or at an operation of a random kind (an
	// append, a group commit's fsync, a segment rotation, a truncation, a
	// cursor or dead-letter write, a repair at Open). Needs root and
	// /dev/fuse. Kills, broker restarts and network cuts do not mix with it.
	PowerCuts int
	// Metadata is the filesystem's model of namespace durability: "strict"
	// (default: durable after an fsync of the directory) or "immediate"
	// (durable at once, as ext4 does in practice).
	Metadata string
	// SegmentBytes is the children's WAL segment size. Default: kafkawal's,
	// or 64 KiB with PowerCuts, so that segments rotate and are deleted
	// within a run.
	SegmentBytes int64
	// DeadLetterEvery makes every n-th record one that Kafka refuses for
	// good (a value over its topic's max.message.bytes), so that it is
	// dead-lettered. Default 0, or 500 with PowerCuts (each costs the sender
	// a re-send of its window one record at a time); NoDeadLetters makes
	// it 0.
	DeadLetterEvery int
	NoDeadLetters   bool

	// onChildStart, if set, is called with each child's pid (tests).
	onChildStart func(run, pid int)
	// aim, if set, is the trigger kind of every power cut (tests).
	aim string
	// beforeNaming, if set, runs after each power-cut run's child started
	// and before the drill names it to the cut's killer; cutBegun closes
	// when the cut starts (tests).
	beforeNaming func(run int, cutBegun <-chan struct{})
}

func (c Config) withDefaults() Config {
	if len(c.Topics) == 0 {
		c.Topics = []string{DefaultTopic}
	}
	if c.Broker == "" {
		c.Broker = "embedded"
	}
	if c.Listener == "" {
		c.Listener = string(kafkatest.Plaintext)
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Durability == "" {
		c.Durability = kafkawal.SyncAlways.String()
	}
	if c.NoKills {
		c.Kills = 0
	} else if c.Kills == 0 {
		c.Kills = DefaultKills
	}
	if c.KillAfterMin == 0 {
		c.KillAfterMin = DefaultKillAfterMin
	}
	if c.KillAfterMax == 0 {
		c.KillAfterMax = max(DefaultKillAfterMax, c.KillAfterMin)
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())%1_000_000_000 + 1 // short enough to retype
	}
	if c.BrokerDown == 0 {
		c.BrokerDown = DefaultBrokerDown
	}
	if c.CutFor == 0 {
		c.CutFor = DefaultCutFor
	}
	if c.StallFor == 0 {
		c.StallFor = DefaultStallFor
	}
	if c.StallPartition > 0 && c.StallTimeout == 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	if c.StallPartition > 0 && c.ParkAfter == 0 && !c.ExactlyOnce {
		c.ParkAfter = DefaultParkAfter
	}
	if c.DrainRecords == 0 {
		c.DrainRecords = DefaultDrainRecords
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.VerifyTimeout == 0 {
		c.VerifyTimeout = DefaultVerifyTimeout
	}
	if c.PowerCuts > 0 {
		c.Kills = 0
		if c.Metadata == "" {
			c.Metadata = "strict"
		}
		if c.SegmentBytes == 0 {
			c.SegmentBytes = DefaultPowerCutSegmentBytes
		}
		if c.DeadLetterEvery == 0 {
			c.DeadLetterEvery = DefaultPowerCutDeadLetterEvery
		}
	}
	if c.NoDeadLetters {
		c.DeadLetterEvery = 0
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// Validate reports the first invalid field, by its flag name.
func (c Config) Validate() error {
	switch {
	case c.Command == nil:
		return errors.New("drill: Command: required")
	case c.Bootstrap == "" && c.Broker != "embedded" && c.Broker != "real":
		return fmt.Errorf("drill: --broker: %q is neither embedded nor real", c.Broker)
	case c.Bootstrap != "" && (c.BrokerRestarts > 0 || c.NetCuts > 0 || c.StallPartition > 0):
		return errors.New("drill: --broker-restarts, --net-cuts and --stall-partition need a broker the drill starts, not --bootstrap")
	case c.Bootstrap != "" && c.Listener != string(kafkatest.Plaintext):
		return errors.New("drill: --listener needs a broker the drill starts, not --bootstrap")
	case c.StallPartition > 0 && c.Listener != string(kafkatest.Plaintext) && c.Broker == "real":
		return errors.New("drill: --stall-partition on a real broker needs the PLAINTEXT --listener (two brokers, not Secure)")
	case c.Partitions < 1:
		return fmt.Errorf("drill: --partitions: %d, want at least 1", c.Partitions)
	case c.Rate <= 0:
		return fmt.Errorf("drill: --rate: %v, want > 0", c.Rate)
	case c.Size < 0:
		return fmt.Errorf("drill: --size: %d, want >= 0", c.Size)
	case c.Kills < 0:
		return fmt.Errorf("drill: --kills: %d, want >= 0", c.Kills)
	case c.KillAfterMin < 0 || c.KillAfterMax < c.KillAfterMin:
		return fmt.Errorf("drill: --kill-after-min %v and --kill-after-max %v: want 0 <= min <= max", c.KillAfterMin, c.KillAfterMax)
	case c.BrokerRestarts < 0 || c.NetCuts < 0 || c.StallPartition < 0:
		return errors.New("drill: --broker-restarts, --net-cuts and --stall-partition: want >= 0")
	case c.BrokerDown < 0 || c.CutFor < 0 || c.StallFor < 0 || c.StallTimeout < 0:
		return errors.New("drill: --broker-down, --cut-for, --stall-for and --stall-timeout: want >= 0")
	case c.DrainRecords < 0:
		return fmt.Errorf("drill: --drain-records: %d, want >= 0", c.DrainRecords)
	case c.DrainTimeout < 0 || c.VerifyTimeout < 0:
		return errors.New("drill: --drain-timeout and --verify-timeout: want >= 0")
	case c.PowerCuts < 0:
		return fmt.Errorf("drill: --power-cuts: %d, want >= 0", c.PowerCuts)
	case c.PowerCuts > 0 && (c.BrokerRestarts > 0 || c.NetCuts > 0):
		return errors.New("drill: --power-cuts does not mix with --broker-restarts or --net-cuts")
	case c.ParkAfter > 0 && c.ExactlyOnce:
		return errors.New("drill: --park-after does not apply with --exactly-once (stalled partitions are not parked under ExactlyOnce)")
	case c.PowerCuts > 0 && c.ExactlyOnce:
		return errors.New("drill: --power-cuts does not mix with --exactly-once (the power-cut check reads back at-least-once delivery)")
	case c.Metadata != "" && c.Metadata != "strict" && c.Metadata != "immediate":
		return fmt.Errorf("drill: --metadata: %q is neither strict nor immediate", c.Metadata)
	case c.SegmentBytes < 0 || c.DeadLetterEvery < 0:
		return errors.New("drill: --segment-bytes and --dead-letter-every: want >= 0")
	}
	for _, t := range c.Topics {
		if t == "" || strings.ContainsAny(t, " \t\n,") {
			return fmt.Errorf("drill: --topics: bad topic name %q", t)
		}
	}
	if (c.BrokerRestarts > 0 || c.NetCuts > 0 || c.StallPartition > 0) && c.Kills == 0 {
		return errors.New("drill: --broker-restarts, --net-cuts and --stall-partition happen during the kill phase: need --kills > 0")
	}
	if _, err := parseDurability(c.Durability); err != nil {
		return err
	}
	if _, err := kafkatest.ParseListener(c.Listener); err != nil {
		return fmt.Errorf("drill: --listener: %q is not plaintext, ssl, mtls, sasl_ssl or sasl_plaintext", c.Listener)
	}
	return nil
}

// parseDurability maps the --durability flag to kafkawal's mode.
func parseDurability(s string) (kafkawal.Durability, error) {
	for _, d := range []kafkawal.Durability{kafkawal.SyncAlways, kafkawal.SyncPeriodic, kafkawal.SyncNever} {
		if s == d.String() {
			return d, nil
		}
	}
	return 0, fmt.Errorf("drill: --durability: %q is not always, periodic or never", s)
}
