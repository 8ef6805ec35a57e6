package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDrillUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runDrill([]string{"-h"}, &out, &errb); code != exitOK || errb.Len() != 0 ||
		!strings.Contains(out.String(), "Usage: kafkawal drill") || !strings.Contains(out.String(), "-kill-after-max") {
		t.Errorf("drill -h: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	for _, args := range [][]string{{"--rate", "0"}, {"--durability", "sometimes"}, {"--no-such-flag"}, {"stray"}} {
		out.Reset()
		errb.Reset()
		code := runDrill(args, &out, &errb)
		if code != exitUsage || out.Len() != 0 || strings.Count(errb.String(), "\n") != 1 || !strings.HasPrefix(errb.String(), "kafkawal drill: ") {
			t.Errorf("drill %q: exit %d, stdout %q, stderr %q; want exit 2 and one line on stderr", args, code, out.String(), errb.String())
		}
	}
	errb.Reset()
	if code := runDrillChild(nil, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "required") {
		t.Errorf("drill-child without flags: exit %d, stderr %q", code, errb.String())
	}
}

// buildKafkawal builds this command into a temporary directory: the drill
// re-executes its own binary as the child, which a test binary is not.
func buildKafkawal(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "kafkawal")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", exe, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

// TestDrillCommand runs the built binary: a short drill passes with exit 0
// and a JSON report, and a drain that cannot finish fails with exit 1.
func TestDrillCommand(t *testing.T) {
	exe := buildKafkawal(t)
	drill := func(args ...string) (int, []byte, string) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, exe, append([]string{"drill", "--json"}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("kafkawal drill %q: %v", args, err)
		}
		return cmd.ProcessState.ExitCode(), stdout.Bytes(), stderr.String()
	}
	type report struct {
		OK         bool     `json:"ok"`
		Kills      int      `json:"kills"`
		Lost       int      `json:"lost"`
		Acked      int      `json:"acknowledged"`
		Drained    bool     `json:"drained"`
		Failures   []string `json:"failures"`
		Dir        string   `json:"dir"`
		DirKept    bool     `json:"dir_kept"`
		OrderViols int      `json:"order_violations"`
	}
	parse := func(out []byte, stderr string) report {
		var r report
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("report is not JSON: %v\n%s\nstderr:\n%s", err, out, stderr)
		}
		return r
	}

	code, out, stderr := drill("--kills", "2", "--rate", "100", "--kill-after-min", "200ms", "--kill-after-max", "600ms", "--seed", "3")
	r := parse(out, stderr)
	if code != exitOK || !r.OK || r.Kills != 2 || r.Lost != 0 || r.OrderViols != 0 || r.Acked == 0 || !r.Drained || r.DirKept {
		t.Fatalf("exit %d, report %+v\nstderr:\n%s", code, r, stderr)
	}

	code, out, stderr = drill("--kills", "0", "--drain-timeout", "1ns")
	r = parse(out, stderr)
	if code != exitProblem || r.OK || r.Drained || !r.DirKept {
		t.Fatalf("drain with no time to flush: exit %d, report %+v\nstderr:\n%s", code, r, stderr)
	}
	if _, err := os.Stat(r.Dir); err != nil {
		t.Fatalf("the failed drill's WAL directory: %v", err)
	}
	os.RemoveAll(r.Dir)
}

// TestDrillCommandInterrupt: Ctrl-C (SIGINT to the drill alone: its child
// has a process group of its own) ends the drill with exit 2, and the
// child it was running does not outlive it.
func TestDrillCommandInterrupt(t *testing.T) {
	exe := buildKafkawal(t)
	cmd := exec.Command(exe, "drill", "--kills", "1", "--kill-after-min", "1h", "--kill-after-max", "1h")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		cmd.Wait()
		close(exited)
	}()

	deadline := time.Now().Add(time.Minute)
	var child int
	for child == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no drill-child process appeared within a minute")
		}
		child = childOf(cmd.Process.Pid, "drill-child")
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	var out []string
	for l := range lines {
		out = append(out, l)
	}
	select {
	case <-exited:
	case <-time.After(time.Minute):
		t.Fatal("the drill did not exit within a minute of SIGINT")
	}
	if code := cmd.ProcessState.ExitCode(); code != exitUsage || !strings.Contains(strings.Join(out, "\n"), "context canceled") {
		t.Fatalf("exit %d after SIGINT, stderr:\n%s", code, strings.Join(out, "\n"))
	}
	if err := syscall.Kill(child, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("drill-child %d outlived the drill (kill 0: %v)", child, err)
	}
}

// childOf returns the pid of a child process of parent whose command line
// contains word, or 0.
func childOf(parent int, word string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		rest := stat[bytes.LastIndexByte(stat, ')')+1:]
		f := strings.Fields(string(rest))
		if len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte(word)) {
			return pid
		}
	}
	return 0
}
