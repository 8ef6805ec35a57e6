package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/kafkawal/kafkawal/internal/drill"
)

// runDrill is `kafkawal drill`: the crash drill of package internal/drill,
// with this binary's hidden drill-child command as the load generator.
// Progress goes to stderr, the report to stdout.
func runDrill(args []string, stdout, stderr io.Writer) int {
	cfg, out, err := drill.ParseArgs(args)
	if errors.Is(err, flag.ErrHelp) {
		drill.Usage(stdout)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "kafkawal drill: %v; see 'kafkawal drill -h'\n", err)
		return exitUsage
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "kafkawal drill: find this binary to run its children: %v\n", err)
		return exitUsage
	}
	cfg.Command = func(childArgs []string) *exec.Cmd {
		return exec.Command(exe, append([]string{"drill-child"}, childArgs...)...)
	}
	cfg.Log = stderr
	if out.Verbose {
		cfg.ChildStderr = stderr
	}
	// Ctrl-C or SIGTERM ends the drill early; Run still kills its child and
	// stops its broker on the way out.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep, err := drill.Run(ctx, cfg)
	if rep != nil && (err == nil || len(rep.Runs) > 0) {
		write := rep.WriteText
		if out.JSON {
			write = rep.WriteJSON
		}
		if werr := write(stdout); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "kafkawal drill: %v\n", err)
		return exitUsage
	}
	if rep.ExitCode() != 0 {
		return exitProblem
	}
	return exitOK
}

// runDrillChild is the hidden `kafkawal drill-child`: one life of the
// drill's load generator, started by runDrill with its ledger on fd 3.
func runDrillChild(args []string, stdout, stderr io.Writer) int {
	return drill.ChildMain(args, stderr)
}
