package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kafkawal/kafkawal/wal"
)

// newFlagSet returns a flag set that reports errors to nobody: parseArgs
// turns them into one line on stderr.
func newFlagSet(name string) *flag.FlagSet {
	set := flag.NewFlagSet("kafkawal "+name, flag.ContinueOnError)
	set.SetOutput(io.Discard)
	set.Usage = func() {}
	return set
}

// parseArgs parses flags placed before or after the positional arguments
// ("dump DIR --from 5" and "dump --from 5 DIR" alike) and checks that
// exactly want positionals remain. On -h it prints the command's help to
// stdout. It returns the positionals, or the exit status to end with.
func parseArgs(set *flag.FlagSet, args []string, want int, synopsis, help string, stdout, stderr io.Writer) ([]string, int, bool) {
	flags, pos := splitArgs(set, args)
	err := set.Parse(flags)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "usage: kafkawal %s\n\n%s\n", synopsis, strings.TrimSpace(help))
		return nil, exitOK, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v; usage: kafkawal %s\n", set.Name(), err, synopsis)
		return nil, exitUsage, false
	}
	pos = append(set.Args(), pos...)
	if len(pos) != want {
		what := "missing DIR"
		if len(pos) > want {
			what = fmt.Sprintf("unexpected argument %q", pos[want])
		}
		fmt.Fprintf(stderr, "%s: %s; usage: kafkawal %s\n", set.Name(), what, synopsis)
		return nil, exitUsage, false
	}
	return pos, exitOK, true
}

// splitArgs moves flags (and the values of non-boolean flags given as a
// separate argument) ahead of positional arguments. Everything after "--"
// is positional.
func splitArgs(set *flag.FlagSet, args []string) (flags, pos []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return flags, append(pos, args[i+1:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := set.Lookup(name); f != nil && !isBoolFlag(f) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return flags, pos
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// checkDir makes sure dir looks like a kafkawal directory before any
// command reads it, so that a typo gets a clear answer instead of a
// list-segments error.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: no such directory", dir)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s: not a directory", dir)
	}
	seg := filepath.Join(dir, wal.SegmentsDir)
	fi, err = os.Stat(seg)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: not a kafkawal directory (no %s/ inside)", dir, wal.SegmentsDir)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s: not a kafkawal directory (%s is not a directory)", dir, seg)
	}
	return nil
}

// fail prints err as the one line an operator sees and returns status.
// The library's "kafkawal: " prefix is dropped: the command name replaces
// it.
func fail(stderr io.Writer, cmd string, err error, status int) int {
	msg := err.Error()
	for strings.HasPrefix(msg, "kafkawal: ") {
		msg = strings.TrimPrefix(msg, "kafkawal: ")
	}
	msg = strings.ReplaceAll(msg, "\n", " ")
	fmt.Fprintf(stderr, "kafkawal %s: %s\n", cmd, msg)
	return status
}

// humanBytes formats n in binary units: 512 B, 1.5 KiB, 8.0 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// partition is a record's partition as the CLI shows it: its number, or
// "any" for wal.PartitionAny (the partitioner chooses when the record is
// sent; the WAL does not know where it went).
type partition int32

func (p partition) String() string {
	if int32(p) == wal.PartitionAny {
		return "any"
	}
	return strconv.Itoa(int(p))
}

// MarshalJSON writes a number, or the string "any".
func (p partition) MarshalJSON() ([]byte, error) {
	if int32(p) == wal.PartitionAny {
		return []byte(`"any"`), nil
	}
	return strconv.AppendInt(nil, int64(p), 10), nil
}
