package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// envChild makes the test binary act as the drill's child: the cheapest
// child there is, built already, with the race detector when the test has
// it.
const envChild = "KAFKAWAL_DRILL_TEST_CHILD"

// TestMain runs the binary as a drill child when asked to, and otherwise
// the tests, failing them if any goroutine outlives them.
func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		os.Exit(ChildMain(os.Args[1:], os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// testCommand runs this test binary as a drill child.
func testCommand(args []string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envChild+"=1")
	return cmd
}

// logWriter sends the drill's progress lines to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// pidRecorder remembers every child the drill started.
type pidRecorder struct {
	mu   sync.Mutex
	pids []int
}

func (r *pidRecorder) add(_, pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pids = append(r.pids, pid)
}

// checkDead fails t for each recorded child still alive. Run has reaped
// them, so a live pid would be a child it never waited for.
func (r *pidRecorder) checkDead(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pids) == 0 {
		t.Fatal("no child was started")
	}
	for _, pid := range r.pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("child pid %d outlived the drill (kill 0: %v)", pid, err)
		}
	}
}

// TestDrillShort is the crash drill in miniature: 5 SIGKILLs at random
// instants and a network cut (and, on the embedded broker, where it costs
// half a second rather than 13, a broker restart), on the broker that
// KAFKAWAL_BROKER selects. Nothing acknowledged may be lost or reordered.
func TestDrillShort(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var pids pidRecorder
	restarts := 1
	if kafkatest.Kind() == "real" {
		restarts = 0 // the long drill in .ci/run restarts the real broker
	}
	cfg := Config{
		Broker:         kafkatest.Kind(),
		Topics:         []string{"drill-a", "drill-b"},
		Partitions:     3,
		Rate:           300,
		Size:           64,
		Kills:          5,
		KillAfterMin:   300 * time.Millisecond,
		KillAfterMax:   time.Second,
		Seed:           42,
		NetCuts:        1,
		CutFor:         time.Second,
		BrokerRestarts: restarts,
		BrokerDown:     500 * time.Millisecond,
		DrainRecords:   50,
		DrainTimeout:   time.Minute,
		VerifyTimeout:  time.Minute,
		Command:        testCommand,
		Log:            logWriter{t},
		onChildStart:   pids.add,
	}
	start := time.Now()
	rep, err := Run(ctx, cfg)
	pids.checkDead(t)
	if rep != nil {
		var b strings.Builder
		rep.WriteText(&b)
		t.Logf("%s drill in %v:\n%s", kafkatest.Kind(), time.Since(start).Round(time.Millisecond), b.String())
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Lost != 0 || rep.OrderViolations != 0 || rep.Kills != 5 || !rep.Drained || !rep.OK {
		t.Fatalf("lost %d, order violations %d, kills %d, drained %v, ok %v: %v",
			rep.Lost, rep.OrderViolations, rep.Kills, rep.Drained, rep.OK, rep.Failures)
	}
	if rep.NetCuts != 1 || rep.BrokerRestarts != restarts {
		t.Fatalf("faults injected: %d net cuts, %d broker restarts; want 1 and %d", rep.NetCuts, rep.BrokerRestarts, restarts)
	}
	// The drill must have had something to prove.
	if rep.Acknowledged < 200 || len(rep.Runs) != 6 || rep.ExitCode() != 0 {
		t.Fatalf("acknowledged %d over %d runs, exit %d", rep.Acknowledged, len(rep.Runs), rep.ExitCode())
	}
	if rep.DirKept {
		t.Errorf("the temporary WAL directory %s was kept after a passing drill", rep.Dir)
	}
}

// TestDrillSecureListener: the drill in miniature through SASL_SSL with
// SCRAM-SHA-512, as a principal granted WRITE on its topic only, with a
// network cut through the proxy in front of that listener: nothing lost or
// reordered, and the credentials file is gone afterwards.
func TestDrillSecureListener(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var pids pidRecorder
	var files []string
	cfg := Config{
		Broker:        kafkatest.Kind(),
		Listener:      string(kafkatest.SASLSSL),
		Partitions:    2,
		Rate:          300,
		Size:          64,
		Kills:         3,
		KillAfterMin:  300 * time.Millisecond,
		KillAfterMax:  time.Second,
		Seed:          7,
		NetCuts:       1,
		CutFor:        time.Second,
		DrainRecords:  50,
		DrainTimeout:  time.Minute,
		VerifyTimeout: time.Minute,
		Command: func(args []string) *exec.Cmd {
			for i, a := range args {
				if a == "--kafka-config" && i+1 < len(args) {
					files = append(files, args[i+1])
				}
			}
			return testCommand(args)
		},
		Log:          logWriter{t},
		onChildStart: pids.add,
	}
	rep, err := Run(ctx, cfg)
	pids.checkDead(t)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var b strings.Builder
	rep.WriteText(&b)
	t.Logf("%s", b.String())
	if !rep.OK || rep.Lost != 0 || rep.OrderViolations != 0 || rep.Kills != 3 || rep.NetCuts != 1 || rep.Acknowledged < 100 {
		t.Fatalf("ok %v, lost %d, order violations %d, kills %d, net cuts %d, acknowledged %d: %v",
			rep.OK, rep.Lost, rep.OrderViolations, rep.Kills, rep.NetCuts, rep.Acknowledged, rep.Failures)
	}
	if rep.Listener != "sasl_ssl" || !strings.Contains(b.String(), "(sasl_ssl)") {
		t.Errorf("report listener %q, want sasl_ssl", rep.Listener)
	}
	if len(files) == 0 || files[0] == "" {
		t.Fatal("children got no --kafka-config")
	}
	if _, err := os.Stat(files[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the credentials file %s outlived the drill: %v", files[0], err)
	}
}

// TestDrillPartitionStall: children are SIGKILLed while partition 0 of
// the first topic is stalled, parked and drained (on a real cluster, while
// one of its two brokers is cut off from clients). Nothing acknowledged
// may be lost or reordered.
func TestDrillPartitionStall(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var pids pidRecorder
	cfg := Config{
		Broker:         kafkatest.Kind(),
		Topics:         []string{"stall-a", "stall-b"},
		Partitions:     4,
		Rate:           400,
		Size:           64,
		Kills:          10,
		KillAfterMin:   time.Second,
		KillAfterMax:   3 * time.Second,
		Seed:           7,
		StallPartition: 1,
		StallFor:       12 * time.Second,
		DrainRecords:   50,
		DrainTimeout:   2 * time.Minute,
		VerifyTimeout:  time.Minute,
		Command:        testCommand,
		Log:            logWriter{t},
		onChildStart:   pids.add,
	}
	rep, err := Run(ctx, cfg)
	pids.checkDead(t)
	if rep != nil {
		var b strings.Builder
		rep.WriteText(&b)
		t.Logf("%s drill:\n%s", kafkatest.Kind(), b.String())
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Lost != 0 || rep.OrderViolations != 0 || rep.Kills != 10 || !rep.Drained || !rep.OK || rep.PartitionStalls != 1 {
		t.Fatalf("lost %d, order violations %d, kills %d, drained %v, stalls %d, ok %v: %v",
			rep.Lost, rep.OrderViolations, rep.Kills, rep.Drained, rep.PartitionStalls, rep.OK, rep.Failures)
	}
	if rep.OpensWithParked == 0 {
		t.Fatal("no child opened with parked records: no kill landed while a partition was parked")
	}
}

// TestDrillPartitionStallExactlyOnce: the partition-stall drill under
// Delivery ExactlyOnce. Children are SIGKILLed while partition 0 of the
// first topic is stalled and out of the transactions (not parked: never
// under ExactlyOnce), and while it drains: each child resumes from the
// checkpoint's deferred partitions, so read back with read_committed
// nothing may be lost, reordered or read twice.
func TestDrillPartitionStallExactlyOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var pids pidRecorder
	cfg := Config{
		Broker:         kafkatest.Kind(),
		Topics:         []string{"eos-stall-a", "eos-stall-b"},
		Partitions:     4,
		Rate:           400,
		Size:           64,
		ExactlyOnce:    true,
		Kills:          10,
		KillAfterMin:   1500 * time.Millisecond,
		KillAfterMax:   3 * time.Second,
		Seed:           11,
		StallPartition: 1,
		StallFor:       12 * time.Second,
		DrainRecords:   50,
		DrainTimeout:   2 * time.Minute,
		VerifyTimeout:  time.Minute,
		Command:        testCommand,
		Log:            logWriter{t},
		onChildStart:   pids.add,
	}
	start := time.Now()
	rep, err := Run(ctx, cfg)
	pids.checkDead(t)
	if rep != nil {
		var b strings.Builder
		rep.WriteText(&b)
		t.Logf("%s drill in %v:\n%s", kafkatest.Kind(), time.Since(start).Round(time.Millisecond), b.String())
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !rep.ExactlyOnce || rep.Lost != 0 || rep.Duplicates != 0 || rep.OrderViolations != 0 || rep.Kills != 10 || !rep.Drained || !rep.OK || rep.PartitionStalls != 1 {
		t.Fatalf("exactly-once %v: lost %d, duplicates %d, order violations %d, kills %d, drained %v, stalls %d, ok %v: %v",
			rep.ExactlyOnce, rep.Lost, rep.Duplicates, rep.OrderViolations, rep.Kills, rep.Drained, rep.PartitionStalls, rep.OK, rep.Failures)
	}
	if rep.OpensWithParked != 0 {
		t.Fatalf("%d children opened with parked records under ExactlyOnce", rep.OpensWithParked)
	}
}

// TestDrillShortExactlyOnce is the short drill under Delivery ExactlyOnce:
// read back with read_committed, nothing may be lost, reordered or read
// twice; read with read_uncommitted, the aborted copies that the kills
// left must show, or the test could not tell the two modes apart. A
// transaction of the children stays open for a second, and the kills come
// after their start (which takes about a second on Apache Kafka), so that
// a kill finds records delivered and not committed.
func TestDrillShortExactlyOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var pids pidRecorder
	restarts := 1
	if kafkatest.Kind() == "real" {
		restarts = 0 // the long drill in .ci/run restarts the real broker
	}
	cfg := Config{
		Broker:         kafkatest.Kind(),
		Topics:         []string{"drill-a", "drill-b"},
		Partitions:     3,
		Rate:           300,
		Size:           64,
		ExactlyOnce:    true,
		CommitInterval: time.Second,
		Kills:          5,
		KillAfterMin:   1500 * time.Millisecond,
		KillAfterMax:   3 * time.Second,
		Seed:           43,
		NetCuts:        1,
		CutFor:         time.Second,
		BrokerRestarts: restarts,
		BrokerDown:     500 * time.Millisecond,
		DrainRecords:   50,
		DrainTimeout:   time.Minute,
		VerifyTimeout:  time.Minute,
		Command:        testCommand,
		Log:            logWriter{t},
		onChildStart:   pids.add,
	}
	start := time.Now()
	rep, err := Run(ctx, cfg)
	pids.checkDead(t)
	if rep != nil {
		var b strings.Builder
		rep.WriteText(&b)
		t.Logf("%s drill in %v:\n%s", kafkatest.Kind(), time.Since(start).Round(time.Millisecond), b.String())
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !rep.ExactlyOnce || rep.Lost != 0 || rep.Duplicates != 0 || rep.OrderViolations != 0 || rep.Kills != 5 || !rep.Drained || !rep.OK {
		t.Fatalf("exactly-once %v: lost %d, duplicates %d, order violations %d, kills %d, drained %v, ok %v: %v",
			rep.ExactlyOnce, rep.Lost, rep.Duplicates, rep.OrderViolations, rep.Kills, rep.Drained, rep.OK, rep.Failures)
	}
	if rep.Acknowledged < 200 {
		t.Fatalf("acknowledged %d, want >= 200", rep.Acknowledged)
	}
	// A killed run that had committed once (its first delivery) and was
	// killed more than 200 ms later died inside a transaction (they stay
	// open a second) holding delivered records: their copies must be
	// there for read_uncommitted.
	// (A start slower than every kill leaves none; the outage and zombie
	// tests in the root package check the copies without chance.)
	for _, r := range rep.Runs {
		if r.Killed && r.FirstDeliveryAfterMS != nil && *r.FirstDeliveryAfterMS < r.KillAfterMS-200 {
			if rep.UncommittedCopies == 0 {
				t.Fatalf("run %d committed at %v ms and was killed at %v ms, yet read_uncommitted sees no aborted copy", r.Run, *r.FirstDeliveryAfterMS, r.KillAfterMS)
			}
			return
		}
	}
	t.Logf("no run was killed 200 ms after its first commit; aborted copies %d not checked", rep.UncommittedCopies)
}

// TestDrillCancelKillsChild: a drill cancelled while a child runs returns
// the context's error, and the child and the broker are gone.
func TestDrillCancelKillsChild(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var pids pidRecorder
	started := make(chan struct{})
	cfg := Config{
		Kills:        3,
		KillAfterMin: time.Hour, // only the cancel can end run 1
		KillAfterMax: time.Hour,
		Rate:         100,
		Command:      testCommand,
		Log:          logWriter{t},
		onChildStart: func(run, pid int) {
			pids.add(run, pid)
			close(started)
		},
	}
	done := make(chan error, 1)
	var rep *Report
	go func() {
		var err error
		rep, err = Run(ctx, cfg)
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("Run returned before starting a child: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("no child started within a minute")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run after cancel: %v, want context.Canceled", err)
		}
		if rep == nil || rep.OK || !strings.Contains(strings.Join(rep.Failures, "\n"), "did not finish") {
			t.Fatalf("report of a cancelled drill: %+v", rep)
		}
		if _, err := os.Stat(rep.Dir); !errors.Is(err, os.ErrNotExist) || rep.DirKept {
			t.Fatalf("a cancelled drill left its temporary WAL %s (%v)", rep.Dir, err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute of its cancel")
	}
	pids.checkDead(t)
}

// TestDrillChildFailureIsReported: a child that cannot run (here: the
// binary does not exist as a drill child, it exits 2 on its flags) fails
// the drill with the child's own words, and the drain fails too.
func TestDrillChildFailureIsReported(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	broken := func(args []string) *exec.Cmd {
		return testCommand(append(args, "--no-such-flag"))
	}
	rep, err := Run(ctx, Config{Kills: 2, KillAfterMin: 5 * time.Second, KillAfterMax: 5 * time.Second,
		Command: broken, Log: logWriter{t}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("failures: %q", rep.Failures)
	if rep.OK || rep.ExitCode() == 0 || rep.Kills != 0 || rep.Drained {
		t.Fatalf("ok %v, exit %d, kills %d, drained %v: want a failed drill", rep.OK, rep.ExitCode(), rep.Kills, rep.Drained)
	}
	if !strings.Contains(fmt.Sprint(rep.Failures), "no-such-flag") {
		t.Fatalf("failures %q do not quote the child's error", rep.Failures)
	}
	if !rep.DirKept {
		t.Fatal("a failed drill removed its WAL directory")
	}
	os.RemoveAll(rep.Dir)
}

// TestDrillExternalBootstrap: two drills on one existing cluster and topic
// (created by the first, found by the second) each verify their own
// records and ignore the other's.
func TestDrillExternalBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	b, err := kafkatest.StartEmbedded(ctx, kafkatest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var pids pidRecorder
	var first int
	for i := range 2 {
		rep, err := Run(ctx, Config{Bootstrap: b.Bootstrap(), Topics: []string{"shared"}, Partitions: 2,
			Kills: 1, KillAfterMin: 300 * time.Millisecond, KillAfterMax: 300 * time.Millisecond, Rate: 200,
			Command: testCommand, Log: logWriter{t}, onChildStart: pids.add})
		if err != nil {
			t.Fatalf("drill %d: %v", i+1, err)
		}
		if !rep.OK || rep.Broker != "external" || rep.Acknowledged == 0 || rep.OtherRecords != first {
			t.Fatalf("drill %d: ok %v broker %s acked %d, %d other records (want %d); failures %q",
				i+1, rep.OK, rep.Broker, rep.Acknowledged, rep.OtherRecords, first, rep.Failures)
		}
		first = rep.Delivered
	}
	pids.checkDead(t)
}
