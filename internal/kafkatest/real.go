package kafkatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnvKafkaScript names the environment variable that points at kafka.sh when
// the tests do not run inside the repository (default: scripts/kafka/kafka.sh
// next to the go.mod found by walking up from the working directory).
const EnvKafkaScript = "KAFKAWAL_KAFKA_SCRIPT"

// EnvKeepRealDir, set to 1, makes Close of a real broker leave its directory
// (server.properties, broker.log, data) in place for a post-mortem.
const EnvKeepRealDir = "KAFKAWAL_KAFKA_KEEP"

// realStopTimeout bounds kafka.sh stop and kill (the script itself waits up
// to 30 s for SIGTERM, then SIGKILLs).
const realStopTimeout = 60 * time.Second

// realBroker is a single-node Apache Kafka 4.x (KRaft, combined broker and
// controller on 127.0.0.1) run by scripts/kafka/kafka.sh in a JVM of its own.
type realBroker struct {
	opts   Options
	script string
	dir    string // server.properties, broker.log, broker.pid, data/
	port   int    // PLAINTEXT listener on 127.0.0.1
	cport  int    // CONTROLLER listener on 127.0.0.1
	addr   string // 127.0.0.1:port
	proxy  *Proxy // nil without Options.Proxy
	direct kgo.Opt
	ports  map[Listener]int // every listener's port, PLAINTEXT's included
	sec    *Security        // nil without Options.Secure

	mu      sync.Mutex
	running bool
	closed  bool
}

// StartReal starts Apache Kafka 4.x with scripts/kafka/kafka.sh in a new
// temporary directory, on free loopback ports that Restart keeps. It needs
// java (17+) and, on the first run on a machine, mvn and Maven Central to
// resolve the broker's jars (cached in ~/.cache/kafkawal-kafka).
//
// With opts.Proxy the broker advertises the proxy's address, so that every
// client connection, including reconnections to the advertised address,
// crosses the proxy. The package's own admin traffic (readiness, CreateTopic)
// goes straight to the broker, so it does not suffer the proxy's faults.
//
// Kill is SIGKILL of the broker's JVM: what it acknowledged survives in the
// page cache (Kafka does not fsync per request), so Restart brings it back
// unless opts.Ephemeral, where Restart wipes the data and formats anew.
// If the test process dies without Close, kafka.sh kills the broker.
func StartReal(ctx context.Context, opts Options) (Broker, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	script, err := kafkaScript()
	if err != nil {
		return nil, err
	}
	r := &realBroker{opts: opts, script: script, ports: make(map[Listener]int)}
	listeners := []Listener{Plaintext}
	if opts.Secure {
		listeners = append(listeners, SecureListeners...)
	}
	ports, err := freeLoopbackPorts(len(listeners) + 1)
	if err != nil {
		return nil, err
	}
	for i, l := range listeners {
		r.ports[l] = ports[i]
	}
	r.port, r.cport = ports[0], ports[len(listeners)]
	r.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
	if opts.Proxy {
		target := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.ports[opts.Listener]))
		if r.proxy, err = NewProxy("127.0.0.1:0", target); err != nil {
			return nil, err
		}
	}
	r.direct = directDialer(r.Bootstrap(), r.addr)
	if r.dir, err = os.MkdirTemp("", "kafkawal-kafka-"); err != nil {
		r.Close()
		return nil, fmt.Errorf("kafkatest: real broker dir: %w", err)
	}
	if opts.Secure {
		if r.sec, err = newSecurity(filepath.Join(r.dir, "tls")); err != nil {
			r.Close()
			return nil, err
		}
	}
	if err := r.start(ctx, false); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *realBroker) Bootstrap() string {
	if r.proxy != nil {
		return r.proxy.Addr()
	}
	return r.listenerAddr(r.opts.Listener)
}

func (r *realBroker) listenerAddr(l Listener) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.ports[l]))
}

func (r *realBroker) ClientConfig(l Listener) (kafka.ConfigMap, error) {
	if _, ok := r.ports[l]; !ok {
		return nil, fmt.Errorf("kafkatest: real broker has no %s listener (Options.Secure is %v)", l, r.opts.Secure)
	}
	bootstrap := r.listenerAddr(l)
	if l == r.opts.Listener {
		bootstrap = r.Bootstrap()
	}
	if r.sec == nil {
		return kafka.ConfigMap{"bootstrap.servers": bootstrap}, nil
	}
	return r.sec.clientConfig(l, bootstrap), nil
}

func (r *realBroker) Security() *Security { return r.sec }

// AdminOpts reach the PLAINTEXT listener, whose clients are User:ANONYMOUS,
// the super user.
func (r *realBroker) AdminOpts() []kgo.Opt {
	return []kgo.Opt{kgo.SeedBrokers(r.addr), r.direct}
}

func (r *realBroker) Kind() string { return "real" }

func (r *realBroker) Proxy() *Proxy { return r.proxy }

func (r *realBroker) Proxies() []*Proxy {
	if r.proxy == nil {
		return nil
	}
	return []*Proxy{r.proxy}
}

func (r *realBroker) DeleteTopic(ctx context.Context, name string) error {
	return deleteTopic(ctx, r.AdminOpts(), name)
}

func (r *realBroker) AddPartitions(ctx context.Context, name string, total int32) error {
	return addPartitions(ctx, r.AdminOpts(), name, total)
}

func (r *realBroker) StallPartition(ctx context.Context, topic string, partition int32) ([]int32, func() error, error) {
	return nil, nil, errors.New("kafkatest: stall partition: a real cluster needs Options.Brokers >= 2 (one proxy per broker)")
}

// Dir is the broker's directory: server.properties, broker.log, data/.
func (r *realBroker) Dir() string { return r.dir }

// start runs kafka.sh start and waits until the broker answers metadata
// requests. fresh wipes the data directory first (Ephemeral restarts).
func (r *realBroker) start(ctx context.Context, fresh bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("kafkatest: real broker is closed")
	}
	if r.running {
		return errors.New("kafkatest: real broker is running; Kill it before Restart")
	}
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	// Leave the script's own deadline a little inside ours, so that a slow
	// start fails with the broker log rather than with "signal: killed".
	timeout := waitTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl) - 2*time.Second
	}
	if timeout < time.Second {
		return fmt.Errorf("kafkatest: start real broker: %w", context.DeadlineExceeded)
	}
	args := []string{"start",
		"--dir", r.dir,
		"--port", strconv.Itoa(r.port),
		"--controller-port", strconv.Itoa(r.cport),
		"--advertise", r.Bootstrap(),
		"--auto-create", strconv.FormatBool(r.opts.AutoCreateTopics),
		"--partitions", strconv.Itoa(int(r.opts.Partitions)),
		"--owner-pid", strconv.Itoa(os.Getpid()),
		"--timeout", strconv.Itoa(int(math.Ceil(timeout.Seconds()))),
	}
	if fresh {
		args = append(args, "--fresh")
	}
	if r.sec != nil {
		for _, l := range SecureListeners {
			args = append(args, "--listener", fmt.Sprintf("%s=%d", l, r.ports[l]))
		}
		args = append(args,
			"--advertise-listener", string(r.opts.Listener),
			"--tls-dir", r.sec.Dir,
			"--scram", r.sec.User+":"+r.sec.Password,
			"--plain", r.sec.User+":"+r.sec.Password,
			"--authorizer")
	}
	// From here on a broker may exist: mark it so that Kill and Close act
	// even if the start fails half-way.
	r.running = true
	if _, err := r.run(ctx, args...); err != nil {
		r.killLocked()
		return fmt.Errorf("kafkatest: start real broker in %s: %w", r.dir, err)
	}
	if err := ping(ctx, r.AdminOpts()...); err != nil {
		r.killLocked()
		return fmt.Errorf("kafkatest: real broker on %s does not answer: %w%s", r.addr, err, r.logTail())
	}
	return nil
}

func (r *realBroker) CreateTopic(ctx context.Context, name string, partitions int32, configs map[string]string) error {
	if partitions <= 0 {
		partitions = r.opts.Partitions
	}
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	cl, err := kgo.NewClient(r.AdminOpts()...)
	if err != nil {
		return fmt.Errorf("kafkatest: create topic %q: %w", name, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	cfgs := make(map[string]*string, len(configs))
	for k, v := range configs {
		cfgs[k] = kadm.StringPtr(v)
	}
	resp, err := adm.CreateTopic(ctx, partitions, 1, cfgs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		if resp.ErrMessage != "" {
			err = fmt.Errorf("%w (%s)", err, resp.ErrMessage)
		}
		return fmt.Errorf("kafkatest: create topic %q: %w", name, err)
	}

	// Accepting produces: every partition has a leader in metadata, and the
	// leader answers ListOffsets for it (the broker's metadata cache can
	// show a leader a moment before the partition's log exists).
	err = poll(ctx, func() (bool, error) {
		details, err := adm.ListTopics(ctx, name)
		if err != nil {
			return false, err
		}
		d, ok := details[name]
		switch {
		case !ok:
			return false, errors.New("not in metadata yet")
		case d.Err != nil:
			return false, d.Err
		case len(d.Partitions) != int(partitions):
			return false, fmt.Errorf("%d of %d partitions in metadata", len(d.Partitions), partitions)
		}
		for _, p := range d.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false, fmt.Errorf("partition %d has no leader (%v)", p.Partition, p.Err)
			}
		}
		offs, err := adm.ListEndOffsets(ctx, name)
		if err != nil {
			return false, err
		}
		if err := offs.Error(); err != nil {
			return false, err
		}
		n := 0
		offs.Each(func(kadm.ListedOffset) { n++ })
		if n != int(partitions) {
			return false, fmt.Errorf("end offsets for %d of %d partitions", n, partitions)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("kafkatest: wait for topic %q: %w", name, err)
	}
	return nil
}

// Kill SIGKILLs the broker's JVM.
func (r *realBroker) Kill() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.killLocked()
}

func (r *realBroker) killLocked() error {
	if !r.running {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), realStopTimeout)
	defer cancel()
	if _, err := r.run(ctx, "kill", "--dir", r.dir); err != nil {
		return fmt.Errorf("kafkatest: kill real broker in %s: %w", r.dir, err)
	}
	r.running = false
	return nil
}

// Restart starts the killed broker again on the same ports and data (fresh
// data when Ephemeral).
func (r *realBroker) Restart(ctx context.Context) error {
	return r.start(ctx, r.opts.Ephemeral)
}

// Close stops the broker (SIGTERM, then SIGKILL after 30 s), closes the
// proxy and removes the broker's directory.
func (r *realBroker) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	if r.running && r.dir != "" {
		ctx, cancel := context.WithTimeout(context.Background(), realStopTimeout)
		_, err := r.run(ctx, "stop", "--dir", r.dir)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("kafkatest: stop real broker in %s: %w", r.dir, err))
			errs = append(errs, r.killLocked())
		} else {
			r.running = false
		}
	}
	if r.proxy != nil {
		errs = append(errs, r.proxy.Close())
	}
	if r.dir != "" && !r.running && os.Getenv(EnvKeepRealDir) != "1" {
		errs = append(errs, os.RemoveAll(r.dir))
	}
	return errors.Join(errs...)
}

// run runs kafka.sh with args and returns its stdout. The error carries the
// script's stderr, which ends with the broker log's tail on failure.
func (r *realBroker) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{r.script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// The broker and its watcher write elsewhere, but should anything keep
	// our pipes open, do not wait on it forever.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		if msg != "" {
			return stdout.String(), fmt.Errorf("kafka.sh %s: %w\n%s", args[0], err, msg)
		}
		return stdout.String(), fmt.Errorf("kafka.sh %s: %w", args[0], err)
	}
	return stdout.String(), nil
}

// logTail returns the last lines of broker.log for an error message.
func (r *realBroker) logTail() string {
	b, err := os.ReadFile(filepath.Join(r.dir, "broker.log"))
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 50 {
		lines = lines[len(lines)-50:]
	}
	return "\n--- broker.log ---\n" + strings.Join(lines, "\n")
}

// kafkaScript finds kafka.sh: $KAFKAWAL_KAFKA_SCRIPT, or
// scripts/kafka/kafka.sh beside the go.mod above the working directory.
func kafkaScript() (string, error) {
	if s := os.Getenv(EnvKafkaScript); s != "" {
		if _, err := os.Stat(s); err != nil {
			return "", fmt.Errorf("kafkatest: %s: %w", EnvKafkaScript, err)
		}
		return s, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("kafkatest: find kafka.sh: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			s := filepath.Join(dir, "scripts", "kafka", "kafka.sh")
			if _, err := os.Stat(s); err != nil {
				return "", fmt.Errorf("kafkatest: find kafka.sh: %w", err)
			}
			return s, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("kafkatest: find kafka.sh: no go.mod above %s; set %s", wd, EnvKafkaScript)
		}
		dir = parent
	}
}

// freeLoopbackPorts returns n distinct ports that were free on 127.0.0.1 a
// moment ago.
func freeLoopbackPorts(n int) ([]int, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kafkatest: pick a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
