package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit statuses shared by every command.
const (
	exitOK      = 0
	exitProblem = 1 // the command ran and found something wrong (corruption; ship: not all delivered)
	exitUsage   = 2 // bad flags or arguments, or an I/O error
)

// command is one subcommand: its synopsis, its help text and its entry
// point. Hidden commands are dispatched but not listed.
type command struct {
	name, synopsis, help string
	run                  func(args []string, stdout, stderr io.Writer) int
	hidden               bool
}

// commands is filled in init: the help command refers to it.
var commands []command

func init() {
	commands = []command{
		{name: "inspect", synopsis: "inspect DIR [--json]", help: inspectHelp, run: runInspect},
		{name: "verify", synopsis: "verify DIR", help: verifyHelp, run: runVerify},
		{name: "dump", synopsis: "dump DIR [--from SEQ] [--limit N] [--dead]", help: dumpHelp, run: runDump},
		{name: "ship", synopsis: shipSynopsis, help: shipHelp, run: runShip},
		{name: "drill", synopsis: "drill [flags]", help: "Run a crash drill against a scratch directory; see 'kafkawal drill -h'.", run: runDrill},
		{name: "drill-child", run: runDrillChild, hidden: true},
		{name: "help", synopsis: "help [COMMAND]", run: runHelp},
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	if c := lookup(args[0]); c != nil {
		return c.run(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "kafkawal: unknown command %q; run 'kafkawal help'\n", args[0])
	return exitUsage
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func runHelp(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		usage(stdout)
		return exitOK
	case len(args) > 1:
		fmt.Fprintln(stderr, "kafkawal help: too many arguments; usage: kafkawal help [COMMAND]")
		return exitUsage
	}
	c := lookup(args[0])
	if c == nil || c.hidden || c.help == "" {
		fmt.Fprintf(stderr, "kafkawal help: unknown command %q; run 'kafkawal help'\n", args[0])
		return exitUsage
	}
	fmt.Fprintf(stdout, "usage: kafkawal %s\n\n%s\n", c.synopsis, strings.TrimSpace(c.help))
	return exitOK
}

func usage(w io.Writer) {
	fmt.Fprint(w, `kafkawal: look at, check and ship a kafkawal write-ahead log directory.

usage:
`)
	for _, c := range commands {
		if !c.hidden {
			fmt.Fprintf(w, "  kafkawal %s\n", c.synopsis)
		}
	}
	fmt.Fprint(w, `
inspect, verify and dump only read: they take no lock and change nothing,
so they are safe while a producer has DIR open, and on a copy of DIR.
ship opens DIR as a producer (it takes the lock) and delivers its backlog.

exit status: 0 ok, 1 a problem found (corruption; ship: not everything
delivered), 2 bad usage or I/O error.
Run 'kafkawal help COMMAND' for details.
`)
}
