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

// realBroker is an Apache Kafka 4.x cluster on 127.0.0.1 run by
// scripts/kafka/kafka.sh, one JVM per node: node 1 is broker and
// controller; with Options.Brokers above one, nodes 2.. are brokers that
// join its controller, every node has an inter-broker listener of its own,
// and each is advertised to clients through a fault proxy of its own.
type realBroker struct {
	opts   Options
	script string
	nodes  []*realNode
	direct kgo.Opt
	sec    *Security  // nil without Options.Secure (one node only)
	lease  *portLease // the nodes' ports, held until Close (ports.go)

	mu      sync.Mutex
	running bool
	closed  bool
}

// realNode is one broker of the cluster.
type realNode struct {
	id    int32
	dir   string           // server.properties, broker.log, broker.pid, data/
	ports map[Listener]int // every client listener's port, PLAINTEXT's included
	cport int              // CONTROLLER listener; node 1 only
	iport int              // INTERNAL listener (brokers among themselves); 0 with one node
	addr  string           // PLAINTEXT listener: 127.0.0.1:port
	proxy *Proxy           // fronts Options.Listener; nil without a proxy
}

func (n *realNode) listenerAddr(l Listener) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.ports[l]))
}

// advertise is the address clients of l are told to use.
func (n *realNode) advertise(l Listener) string {
	if n.proxy != nil {
		return n.proxy.Addr()
	}
	return n.listenerAddr(l)
}

// StartReal starts Apache Kafka 4.x with scripts/kafka/kafka.sh, each node
// in a new temporary directory, on loopback ports leased for its life
// (ports.go) that Restart keeps.
// It needs java (17+) and, on the first run on a machine, mvn and Maven
// Central to resolve the broker's jars (cached in ~/.cache/kafkawal-kafka).
//
// With opts.Proxy, and always with several brokers, each broker
// advertises the address of a proxy of its own, so that every client
// connection, including reconnections to the advertised address, crosses
// it; the brokers talk to each other and to the controller directly, so a
// proxy's faults cut a broker off from clients only (a partial outage).
// The package's own admin traffic (readiness, CreateTopic) goes straight
// to the brokers, so it does not suffer the proxies' faults.
//
// Kill is SIGKILL of every broker's JVM: what they acknowledged survives
// in the page cache (Kafka does not fsync per request), so Restart brings
// it back unless opts.Ephemeral, where Restart wipes the data and formats
// anew. If the test process dies without Close, kafka.sh kills the
// brokers.
func StartReal(ctx context.Context, opts Options) (Broker, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Brokers > 1 {
		opts.Proxy = true // a partial outage cuts one broker's proxy
	}
	script, err := kafkaScript()
	if err != nil {
		return nil, err
	}
	r := &realBroker{opts: opts, script: script}
	listeners := []Listener{Plaintext}
	if opts.Secure {
		listeners = append(listeners, SecureListeners...)
	}
	need := opts.Brokers*len(listeners) + 1 // and node 1's controller
	if opts.Brokers > 1 {
		need += opts.Brokers // an inter-broker listener each
	}
	free, lease, err := leasePorts(need)
	if err != nil {
		return nil, err
	}
	r.lease = lease
	next := func() int {
		p := free[0]
		free = free[1:]
		return p
	}
	advertised := map[string]string{}
	for i := range opts.Brokers {
		n := &realNode{id: int32(i + 1), ports: make(map[Listener]int)}
		r.nodes = append(r.nodes, n)
		for _, l := range listeners {
			n.ports[l] = next()
		}
		if i == 0 {
			n.cport = next()
		}
		if opts.Brokers > 1 {
			n.iport = next()
		}
		n.addr = n.listenerAddr(Plaintext)
		if opts.Proxy {
			if n.proxy, err = NewProxy("127.0.0.1:0", n.listenerAddr(opts.Listener)); err != nil {
				r.Close()
				return nil, err
			}
		}
		advertised[n.advertise(opts.Listener)] = n.addr
		if n.dir, err = os.MkdirTemp("", "kafkawal-kafka-"); err != nil {
			r.Close()
			return nil, fmt.Errorf("kafkatest: real broker dir: %w", err)
		}
	}
	r.direct = directDialerMap(advertised)
	if opts.Secure {
		if r.sec, err = newSecurity(filepath.Join(r.nodes[0].dir, "tls")); err != nil {
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

// Bootstrap lists every broker's address for clients of Options.Listener.
func (r *realBroker) Bootstrap() string {
	addrs := make([]string, len(r.nodes))
	for i, n := range r.nodes {
		addrs[i] = n.advertise(r.opts.Listener)
	}
	return strings.Join(addrs, ",")
}

func (r *realBroker) ClientConfig(l Listener) (kafka.ConfigMap, error) {
	if _, ok := r.nodes[0].ports[l]; !ok {
		return nil, fmt.Errorf("kafkatest: real broker has no %s listener (Options.Secure is %v)", l, r.opts.Secure)
	}
	bootstrap := r.Bootstrap()
	if l != r.opts.Listener {
		addrs := make([]string, len(r.nodes))
		for i, n := range r.nodes {
			addrs[i] = n.listenerAddr(l)
		}
		bootstrap = strings.Join(addrs, ",")
	}
	if r.sec == nil {
		return kafka.ConfigMap{"bootstrap.servers": bootstrap}, nil
	}
	return r.sec.clientConfig(l, bootstrap), nil
}

func (r *realBroker) Security() *Security { return r.sec }

// AdminOpts reach every node's PLAINTEXT listener, whose clients are
// User:ANONYMOUS, the super user.
func (r *realBroker) AdminOpts() []kgo.Opt {
	seeds := make([]string, len(r.nodes))
	for i, n := range r.nodes {
		seeds[i] = n.addr
	}
	return []kgo.Opt{kgo.SeedBrokers(seeds...), r.direct}
}

func (r *realBroker) Kind() string { return "real" }

// CPU sums the user and system time of every node's JVM (its pid is in
// broker.pid) from /proc/PID/stat, where Linux counts it in USER_HZ ticks,
// 100 a second on every architecture this runs on.
func (r *realBroker) CPU() (time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.running {
		return 0, errors.New("kafkatest: real broker CPU: the broker is not running")
	}
	var total time.Duration
	for _, n := range r.nodes {
		b, err := os.ReadFile(filepath.Join(n.dir, "broker.pid"))
		if err != nil {
			return 0, fmt.Errorf("kafkatest: real broker CPU: %w", err)
		}
		pid := strings.TrimSpace(string(b))
		stat, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
		if err != nil {
			return 0, fmt.Errorf("kafkatest: real broker CPU: %w", err)
		}
		ticks, err := statCPUTicks(string(stat))
		if err != nil {
			return 0, fmt.Errorf("kafkatest: real broker CPU: pid %s: %w", pid, err)
		}
		total += time.Duration(ticks) * (time.Second / 100)
	}
	return total, nil
}

// statCPUTicks returns utime + stime, the 14th and 15th fields of a
// /proc/PID/stat line. The 2nd field, the command in parentheses, may hold
// spaces and parentheses, so the fields are counted after its last ')'.
func statCPUTicks(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	f := strings.Fields(stat[i+1:]) // from the 3rd field, state
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	var sum int64
	for _, v := range f[11:13] { // utime, stime
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed stat %q: %w", stat, err)
		}
		sum += n
	}
	return sum, nil
}

func (r *realBroker) Proxy() *Proxy {
	if len(r.nodes) != 1 {
		return nil
	}
	return r.nodes[0].proxy
}

func (r *realBroker) Proxies() []*Proxy {
	var ps []*Proxy
	for _, n := range r.nodes {
		if n.proxy != nil {
			ps = append(ps, n.proxy)
		}
	}
	return ps
}

func (r *realBroker) DeleteTopic(ctx context.Context, name string) error {
	return deleteTopic(ctx, r.AdminOpts(), name)
}

func (r *realBroker) AddPartitions(ctx context.Context, name string, total int32) error {
	return addPartitions(ctx, r.AdminOpts(), name, total)
}

// StallPartition cuts the partition's leader off from clients
// (blackholing its proxy): every partition that broker leads stalls.
func (r *realBroker) StallPartition(ctx context.Context, topic string, partition int32) ([]int32, func() error, error) {
	if len(r.nodes) < 2 {
		return nil, nil, errors.New("kafkatest: stall partition: a real cluster needs Options.Brokers >= 2 (one proxy per broker)")
	}
	cl, err := kgo.NewClient(r.AdminOpts()...)
	if err != nil {
		return nil, nil, fmt.Errorf("kafkatest: stall partition: %w", err)
	}
	defer cl.Close()
	details, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("kafkatest: stall partition: %w", err)
	}
	d, ok := details[topic]
	if !ok || d.Err != nil {
		return nil, nil, fmt.Errorf("kafkatest: stall partition: topic %s: %v", topic, d.Err)
	}
	p, ok := d.Partitions[partition]
	if !ok || p.Leader < 1 || int(p.Leader) > len(r.nodes) {
		return nil, nil, fmt.Errorf("kafkatest: stall partition: %s/%d has no known leader", topic, partition)
	}
	var stalled []int32
	for _, q := range d.Partitions.Sorted() {
		if q.Leader == p.Leader {
			stalled = append(stalled, q.Partition)
		}
	}
	px := r.nodes[p.Leader-1].proxy
	px.Blackhole()
	return stalled, func() error { px.Heal(); return nil }, nil
}

// Dir is the first node's directory: server.properties, broker.log, data/.
func (r *realBroker) Dir() string { return r.nodes[0].dir }

// start runs kafka.sh start for every node, the controller's first, and
// waits until the cluster lists them all. fresh wipes the data first
// (Ephemeral restarts).
func (r *realBroker) start(ctx context.Context, fresh bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("kafkatest: real broker is closed")
	}
	if r.running {
		return errors.New("kafkatest: real broker is running; Kill it before Restart")
	}
	ctx, cancel := context.WithTimeout(ctx, waitTimeout*time.Duration(len(r.nodes)))
	defer cancel()
	// From here on brokers may exist: mark them so that Kill and Close act
	// even if the start fails half-way.
	r.running = true
	for _, n := range r.nodes {
		if err := r.startNode(ctx, n, fresh); err != nil {
			r.killLocked()
			return err
		}
	}
	err := poll(ctx, func() (bool, error) {
		cl, err := kgo.NewClient(r.AdminOpts()...)
		if err != nil {
			return false, err
		}
		defer cl.Close()
		m, err := kadm.NewClient(cl).BrokerMetadata(ctx)
		if err != nil {
			return false, err
		}
		if len(m.Brokers) != len(r.nodes) {
			return false, fmt.Errorf("metadata lists %d of %d brokers", len(m.Brokers), len(r.nodes))
		}
		return true, nil
	})
	if err != nil {
		r.killLocked()
		return fmt.Errorf("kafkatest: real cluster on %s does not answer: %w%s", r.nodes[0].addr, err, r.logTail())
	}
	return nil
}

func (r *realBroker) startNode(ctx context.Context, n *realNode, fresh bool) error {
	// Leave the script's own deadline a little inside ours, so that a slow
	// start fails with the broker log rather than with "signal: killed".
	timeout := waitTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(waitTimeout, time.Until(dl)-2*time.Second)
	}
	if timeout < time.Second {
		return fmt.Errorf("kafkatest: start real broker: %w", context.DeadlineExceeded)
	}
	args := []string{"start",
		"--dir", n.dir,
		"--port", strconv.Itoa(n.ports[Plaintext]),
		"--advertise", n.advertise(r.opts.Listener),
		"--auto-create", strconv.FormatBool(r.opts.AutoCreateTopics),
		"--partitions", strconv.Itoa(int(r.opts.Partitions)),
		"--owner-pid", strconv.Itoa(os.Getpid()),
		"--timeout", strconv.Itoa(int(math.Ceil(timeout.Seconds()))),
		"--node-id", strconv.Itoa(int(n.id)),
	}
	if n.cport != 0 {
		args = append(args, "--controller-port", strconv.Itoa(n.cport))
	}
	if n.iport != 0 {
		args = append(args, "--internal-port", strconv.Itoa(n.iport))
	}
	if n.id > 1 {
		cid, err := os.ReadFile(filepath.Join(r.nodes[0].dir, "cluster.id"))
		if err != nil {
			return fmt.Errorf("kafkatest: start real broker %d: cluster id: %w", n.id, err)
		}
		args = append(args, "--join", net.JoinHostPort("127.0.0.1", strconv.Itoa(r.nodes[0].cport)),
			"--cluster-id", strings.TrimSpace(string(cid)))
	}
	if fresh {
		args = append(args, "--fresh")
	}
	if r.sec != nil {
		for _, l := range SecureListeners {
			args = append(args, "--listener", fmt.Sprintf("%s=%d", l, n.ports[l]))
		}
		args = append(args,
			"--advertise-listener", string(r.opts.Listener),
			"--tls-dir", r.sec.Dir,
			"--scram", r.sec.User+":"+r.sec.Password,
			"--plain", r.sec.User+":"+r.sec.Password,
			"--authorizer")
	}
	if _, err := r.run(ctx, args...); err != nil {
		return fmt.Errorf("kafkatest: start real broker %d in %s: %w", n.id, n.dir, err)
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

// Kill SIGKILLs every broker's JVM.
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
	var errs []error
	for i := len(r.nodes) - 1; i >= 0; i-- {
		n := r.nodes[i]
		if _, err := r.run(ctx, "kill", "--dir", n.dir); err != nil {
			errs = append(errs, fmt.Errorf("kafkatest: kill real broker in %s: %w", n.dir, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	r.running = false
	return nil
}

// Restart starts the killed brokers again on the same ports and data
// (fresh data when Ephemeral).
func (r *realBroker) Restart(ctx context.Context) error {
	return r.start(ctx, r.opts.Ephemeral)
}

// Close stops the brokers (SIGTERM, then SIGKILL after 30 s), closes the
// proxies and removes the brokers' directories.
func (r *realBroker) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	if r.running {
		stopped := true
		for i := len(r.nodes) - 1; i >= 0; i-- {
			n := r.nodes[i]
			if n.dir == "" {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), realStopTimeout)
			_, err := r.run(ctx, "stop", "--dir", n.dir)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("kafkatest: stop real broker in %s: %w", n.dir, err))
				stopped = false
			}
		}
		if stopped {
			r.running = false
		} else {
			errs = append(errs, r.killLocked())
		}
	}
	for _, n := range r.nodes {
		if n.proxy != nil {
			errs = append(errs, n.proxy.Close())
		}
		if n.dir != "" && !r.running && os.Getenv(EnvKeepRealDir) != "1" {
			errs = append(errs, os.RemoveAll(n.dir))
		}
	}
	if !r.running {
		r.lease.release() // a broker that could not be stopped keeps its ports
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

// logTail returns the last lines of each broker.log for an error message.
func (r *realBroker) logTail() string {
	var out strings.Builder
	for _, n := range r.nodes {
		b, err := os.ReadFile(filepath.Join(n.dir, "broker.log"))
		if err != nil || len(b) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 50 {
			lines = lines[len(lines)-50:]
		}
		fmt.Fprintf(&out, "\n--- broker %d: %s/broker.log ---\n%s", n.id, n.dir, strings.Join(lines, "\n"))
	}
	return out.String()
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
