package drill

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// Output says how the drill command reports.
type Output struct {
	// JSON prints the report as JSON instead of text.
	JSON bool
	// Verbose copies the children's stderr (kafkawal warnings) to stderr.
	Verbose bool
}

const usageText = `Usage: kafkawal drill [flags]

Proves kafkawal's contract on a broker: a child process appends records
through a kafkawal Producer and is SIGKILLed at random instants, over and
over, on the same WAL directory, while the broker is optionally killed and
the network cut; a last child must flush and close cleanly; then every
topic is read back and compared with the ledger of acknowledged appends.
Progress goes to stderr, the report to stdout.

With --power-cuts N the children run instead on a FUSE filesystem that
forgets, at each of N power cuts, what was not fsync'd (and, with --metadata
strict, directory entries whose directory was not fsync'd); each run ends
with a cut at a random instant or at a random operation (an append, a group
commit, a segment rotation, a truncation, a cursor or dead-letter write, a
repair at Open). Needs root and /dev/fuse. Under --durability always nothing
acknowledged may be lost; under periodic and never only records
acknowledged after the last completed fsync before their cut.

Exit status: 0 if nothing acknowledged was lost or reordered, every kill
happened and the drain succeeded; 1 if not; 2 if the drill could not run
(bad flags, broker, topics).

Flags:
`

// Usage writes the drill command's help to w.
func Usage(w io.Writer) {
	fs, _, _ := flagSet()
	fs.SetOutput(w)
	fmt.Fprint(w, usageText)
	fs.PrintDefaults()
}

// flagSet defines the drill command's flags over a Config and an Output.
func flagSet() (*flag.FlagSet, *Config, *Output) {
	cfg, out := &Config{}, &Output{}
	fs := flag.NewFlagSet("kafkawal drill", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&cfg.Broker, "broker", "embedded", "broker to start: embedded (kfake, in process) or real (Apache Kafka via scripts/kafka/kafka.sh)")
	fs.StringVar(&cfg.Bootstrap, "bootstrap", "", "use this cluster instead of starting one (no broker restarts or network cuts)")
	fs.StringVar(&cfg.Listener, "listener", "plaintext", "listener to produce through: plaintext, or on a secure broker ssl, mtls, sasl_ssl (SCRAM-SHA-512), sasl_plaintext (PLAIN)")
	fs.Func("topics", "comma-separated topics to create and produce to (default \""+DefaultTopic+"\")", func(s string) error {
		cfg.Topics = strings.Split(s, ",")
		return nil
	})
	fs.IntVar(&cfg.Partitions, "partitions", DefaultPartitions, "partitions per topic")
	fs.StringVar(&cfg.Dir, "dir", "", "WAL directory, the same for every child (default: a temporary directory, kept only if the drill finds a failure)")
	fs.Float64Var(&cfg.Rate, "rate", DefaultRate, "records appended per second")
	fs.IntVar(&cfg.Size, "size", DefaultSize, "value size in bytes")
	fs.StringVar(&cfg.Durability, "durability", "always", "always, periodic or never")
	fs.BoolVar(&cfg.ExactlyOnce, "exactly-once", false, "children deliver with Delivery ExactlyOnce; topics are read back with read_committed and any duplicate fails the drill")
	fs.DurationVar(&cfg.CommitInterval, "commit-interval", 0, "the children's CommitInterval with --exactly-once (default kafkawal's, 100ms)")
	fs.IntVar(&cfg.Kills, "kills", DefaultKills, "children to SIGKILL")
	fs.DurationVar(&cfg.KillAfterMin, "kill-after-min", DefaultKillAfterMin, "shortest time from a child's start to its SIGKILL")
	fs.DurationVar(&cfg.KillAfterMax, "kill-after-max", DefaultKillAfterMax, "longest time from a child's start to its SIGKILL")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the kill and fault schedule (default: from the clock; the report prints it)")
	fs.IntVar(&cfg.BrokerRestarts, "broker-restarts", 0, "broker kills and restarts at random points")
	fs.DurationVar(&cfg.BrokerDown, "broker-down", DefaultBrokerDown, "how long a killed broker stays down")
	fs.IntVar(&cfg.NetCuts, "net-cuts", 0, "network blackholes through the fault proxy at random points")
	fs.DurationVar(&cfg.CutFor, "cut-for", DefaultCutFor, "length of each network cut")
	fs.IntVar(&cfg.PowerCuts, "power-cuts", 0, "power cuts instead of kills (needs root and /dev/fuse)")
	fs.StringVar(&cfg.Metadata, "metadata", "strict", "with --power-cuts: when directory changes are durable: strict (after an fsync of the directory) or immediate")
	fs.Int64Var(&cfg.SegmentBytes, "segment-bytes", 0, "WAL segment size of the children (default: kafkawal's, or 65536 with --power-cuts)")
	fs.IntVar(&cfg.DeadLetterEvery, "dead-letter-every", 0, "make every n-th record one Kafka refuses for good (default: none, or 500 with --power-cuts)")
	fs.IntVar(&cfg.StallPartition, "stall-partition", 0, "times partition 0 of the first topic stops accepting records at random points (on a real broker: one of two brokers is cut off from clients); the children park it and drain it while being killed")
	fs.DurationVar(&cfg.StallFor, "stall-for", DefaultStallFor, "length of each partition stall")
	fs.DurationVar(&cfg.StallTimeout, "stall-timeout", 0, "the children's PartitionStallTimeout (default 500ms with --stall-partition, else kafkawal's)")
	fs.DurationVar(&cfg.ParkAfter, "park-after", 0, "the children's ParkAfter (default 500ms with --stall-partition, else kafkawal's; not with --exactly-once, which never parks)")
	fs.IntVar(&cfg.DrainRecords, "drain-records", DefaultDrainRecords, "records the final child appends before it flushes and closes")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", DefaultDrainTimeout, "bound of the final child's Flush and Close")
	fs.DurationVar(&cfg.VerifyTimeout, "verify-timeout", DefaultVerifyTimeout, "bound of reading the topics back")
	fs.BoolVar(&out.JSON, "json", false, "print the report as JSON")
	fs.BoolVar(&out.Verbose, "v", false, "copy the children's stderr (kafkawal warnings, or the level KAFKAWAL_DRILL_CHILD_LOG names: info, debug) to stderr")
	return fs, cfg, out
}

// ParseArgs parses the arguments of `kafkawal drill` into a Config (without
// Command, Log and ChildStderr, which are the binary's to set) and the
// output options. It prints nothing; -h returns flag.ErrHelp (see Usage).
// Every error names its flag.
func ParseArgs(args []string) (Config, Output, error) {
	fs, cfg, out := flagSet()
	if err := fs.Parse(args); err != nil {
		return Config{}, Output{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, Output{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	// In Config a zero means "the default"; on the command line it is
	// more likely a mistake than a wish for the default.
	var zero error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "kills", "seed", "broker-restarts", "net-cuts", "stall-partition", "bootstrap", "dir", "json", "v", "listener",
			"power-cuts", "segment-bytes", "dead-letter-every", "exactly-once", "commit-interval":
			return
		}
		if g, ok := f.Value.(flag.Getter); ok && zero == nil {
			switch v := g.Get().(type) {
			case int:
				if v == 0 {
					zero = fmt.Errorf("--%s: 0, want > 0", f.Name)
				}
			case float64:
				if v == 0 {
					zero = fmt.Errorf("--%s: 0, want > 0", f.Name)
				}
			case time.Duration:
				if v == 0 {
					zero = fmt.Errorf("--%s: 0, want > 0", f.Name)
				}
			}
		}
	})
	if zero != nil {
		return Config{}, Output{}, zero
	}
	cfg.NoKills = cfg.Kills == 0
	var kills, deadLetters bool
	fs.Visit(func(f *flag.Flag) {
		kills = kills || f.Name == "kills"
		deadLetters = deadLetters || f.Name == "dead-letter-every"
	})
	if cfg.PowerCuts > 0 && kills {
		return Config{}, Output{}, errors.New("--kills and --power-cuts: choose one")
	}
	cfg.NoDeadLetters = deadLetters && cfg.DeadLetterEvery == 0
	// Flags that parse but cannot run are reported now.
	check := cfg.withDefaults()
	check.Command = noCommand
	if err := check.Validate(); err != nil {
		// The command prefixes its own name.
		return Config{}, Output{}, errors.New(strings.TrimPrefix(err.Error(), "drill: "))
	}
	return *cfg, *out, nil
}

// noCommand stands in for the Command that only the binary can build, so
// that ParseArgs can validate everything else.
func noCommand([]string) *exec.Cmd { return nil }
