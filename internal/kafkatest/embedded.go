package kafkatest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// embedded is a kfake cluster in the test process.
type embedded struct {
	opts    Options
	dir     string   // kfake data dir; "" when Ephemeral
	addr    string   // 127.0.0.1:port the first broker really listens on, fixed at first start
	addrs   []string // every broker's, in node order
	proxy   *Proxy   // the first broker's; nil without Options.Proxy
	proxies []*Proxy // every broker's
	direct  kgo.Opt
	// reserve holds the first start's listeners, handed to kfake once.
	reserve map[string]net.Listener
	sec     *Security // nil without Options.Secure
	admin   []kgo.Opt

	mu      sync.Mutex
	cluster *kfake.Cluster // nil while killed or closed
	closed  bool
}

// StartEmbedded starts a kfake cluster of opts.Brokers nodes (default one)
// on 127.0.0.1. Its ports are chosen at first start and kept by Restart.
// Unless opts.Ephemeral, the cluster persists to a temporary directory,
// removed by Close, so that data survives Kill and Restart. With opts.Proxy
// each broker advertises the address of a proxy of its own, so every client
// connection, including reconnections to the advertised addresses, crosses
// a proxy.
//
// Kill closes the cluster: every client connection drops and in-flight
// requests go unanswered. Unlike kill -9 of a real broker, kfake saves its
// state on the way down, so Kill never loses what the broker acknowledged.
//
// With opts.Secure the cluster's one listener is opts.Listener: TLS
// (kfake.TLS), SASL users (EnableSASL, User; kafkatest's own clients are a
// Superuser) and, on SASL listeners, ACLs (EnableACLs).
func StartEmbedded(ctx context.Context, opts Options) (Broker, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Secure && opts.Listener == Plaintext {
		return nil, errors.New("kafkatest: an embedded Secure broker has one listener: set Options.Listener")
	}
	e := &embedded{opts: opts, reserve: map[string]net.Listener{}}

	// Reserve the brokers' ports first: the proxies need them as their
	// targets before the cluster, which advertises the proxies, can start.
	advertised := map[string]string{}
	for range opts.Brokers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("kafkatest: reserve embedded broker port: %w", err)
		}
		addr := ln.Addr().String()
		e.reserve[addr] = ln
		e.addrs = append(e.addrs, addr)
		if opts.Proxy {
			px, err := NewProxy("127.0.0.1:0", addr)
			if err != nil {
				e.Close()
				return nil, err
			}
			e.proxies = append(e.proxies, px)
			advertised[px.Addr()] = addr
		}
	}
	e.addr = e.addrs[0]
	if opts.Proxy {
		e.proxy = e.proxies[0]
	}
	if !opts.Ephemeral {
		if e.dir, err = os.MkdirTemp("", "kafkawal-kfake-"); err != nil {
			e.Close()
			return nil, fmt.Errorf("kafkatest: embedded broker data dir: %w", err)
		}
	}
	e.direct = directDialerMap(advertised)
	e.admin = []kgo.Opt{kgo.SeedBrokers(e.addrs...), e.direct}
	if opts.Secure {
		if err := e.secure(); err != nil {
			e.Close()
			return nil, err
		}
	}

	if err := e.start(ctx); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// directDialer sends connections meant for advertised straight to real, so
// that the package's own admin and readiness traffic does not depend on the
// faults injected into the proxy.
func directDialer(advertised, real string) kgo.Opt {
	return directDialerMap(map[string]string{advertised: real})
}

// directDialerMap is directDialer for several brokers: real[advertised].
func directDialerMap(real map[string]string) kgo.Opt {
	return kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		if r, ok := real[host]; ok {
			host = r
		}
		var d net.Dialer
		return d.DialContext(ctx, network, host)
	})
}

func (e *embedded) Bootstrap() string {
	if e.proxy != nil {
		return e.proxy.Addr()
	}
	return e.addr
}

func (e *embedded) Kind() string { return "embedded" }

// CPU is 0: the embedded broker runs in the calling process, whose own CPU
// time counts it.
func (e *embedded) CPU() (time.Duration, error) { return 0, nil }

// secure generates the cluster's TLS material and users, and the admin
// options that reach it as a super user.
func (e *embedded) secure() error {
	dir, err := os.MkdirTemp("", "kafkawal-kfake-tls-")
	if err != nil {
		return fmt.Errorf("kafkatest: embedded broker TLS dir: %w", err)
	}
	if e.sec, err = newSecurity(dir); err != nil {
		os.RemoveAll(dir)
		return err
	}
	l := e.opts.Listener
	var tc *tls.Config
	if l.tls() {
		if tc, err = e.sec.adminTLS(l); err != nil {
			return err
		}
	}
	e.admin = []kgo.Opt{kgo.SeedBrokers(e.addr), adminDialer(e.Bootstrap(), e.addr, tc)}
	if l.sasl() {
		e.admin = append(e.admin, kgo.SASL(scram.Auth{User: e.sec.adminUser, Pass: e.sec.adminPassword}.AsSha512Mechanism()))
	}
	return nil
}

// adminDialer is directDialer over TLS when tc is not nil.
func adminDialer(advertised, real string, tc *tls.Config) kgo.Opt {
	return kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		if host == advertised {
			host = real
		}
		if tc == nil {
			var d net.Dialer
			return d.DialContext(ctx, network, host)
		}
		d := tls.Dialer{Config: tc}
		return d.DialContext(ctx, network, host)
	})
}

// secureOpts are the kfake options of a Secure cluster.
func (e *embedded) secureOpts() ([]kfake.Opt, error) {
	l := e.opts.Listener
	var kopts []kfake.Opt
	if l.tls() {
		tc, err := e.sec.serverTLS(l)
		if err != nil {
			return nil, err
		}
		kopts = append(kopts, kfake.TLS(tc))
	}
	if l.sasl() {
		kopts = append(kopts,
			kfake.EnableSASL(),
			kfake.EnableACLs(),
			kfake.Superuser("SCRAM-SHA-512", e.sec.adminUser, e.sec.adminPassword),
			kfake.User("SCRAM-SHA-512", e.sec.User, e.sec.Password),
			kfake.User("PLAIN", e.sec.User, e.sec.Password),
		)
	}
	return kopts, nil
}

func (e *embedded) ClientConfig(l Listener) (kafka.ConfigMap, error) {
	if l != e.opts.Listener {
		return nil, fmt.Errorf("kafkatest: the embedded broker has one listener, %s, not %s", e.opts.Listener, l)
	}
	if e.sec == nil {
		return kafka.ConfigMap{"bootstrap.servers": e.Bootstrap()}, nil
	}
	return e.sec.clientConfig(l, e.Bootstrap()), nil
}

func (e *embedded) Security() *Security { return e.sec }

func (e *embedded) AdminOpts() []kgo.Opt { return e.admin }

func (e *embedded) Proxy() *Proxy {
	if len(e.proxies) != 1 {
		return nil
	}
	return e.proxy
}

func (e *embedded) Proxies() []*Proxy { return e.proxies }

func (e *embedded) DeleteTopic(ctx context.Context, name string) error {
	return deleteTopic(ctx, e.admin, name)
}

func (e *embedded) AddPartitions(ctx context.Context, name string, total int32) error {
	return addPartitions(ctx, e.admin, name, total)
}

// start creates the cluster on e.addrs and waits until it answers.
func (e *embedded) start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("kafkatest: embedded broker is closed")
	}
	if e.cluster != nil {
		return errors.New("kafkatest: embedded broker is running; Kill it before Restart")
	}
	ports := make([]int, len(e.addrs))
	for i, a := range e.addrs {
		_, portStr, _ := net.SplitHostPort(a)
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return fmt.Errorf("kafkatest: embedded broker address %q: %w", a, err)
		}
		ports[i] = port
	}
	kopts := []kfake.Opt{
		kfake.NumBrokers(len(e.addrs)),
		kfake.Ports(ports...),
		kfake.ListenFn(e.listen),
		kfake.ClusterID("kafkawal-embedded"),
		kfake.DefaultNumPartitions(int(e.opts.Partitions)),
	}
	if e.dir != "" {
		kopts = append(kopts, kfake.DataDir(e.dir))
	}
	if e.opts.AutoCreateTopics {
		kopts = append(kopts, kfake.AllowAutoTopicCreation())
	}
	if e.sec != nil {
		sopts, err := e.secureOpts()
		if err != nil {
			return err
		}
		kopts = append(kopts, sopts...)
	}

	// The port can stay busy for a moment after a Kill; past
	// portRetry something else owns it and waiting will not help.
	var c *kfake.Cluster
	bindCtx, cancel := context.WithTimeout(ctx, portRetry)
	defer cancel()
	err := poll(bindCtx, func() (bool, error) {
		var err error
		c, err = kfake.NewCluster(kopts...)
		return !errors.Is(err, syscall.EADDRINUSE), err
	})
	if err != nil {
		return fmt.Errorf("kafkatest: start embedded broker on %s: %w", e.addr, err)
	}
	ctx, cancel = context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := ping(ctx, e.admin...); err != nil {
		c.Close()
		return fmt.Errorf("kafkatest: embedded broker on %s: %w", e.addr, err)
	}
	e.cluster = c
	return nil
}

// listen is kfake's ListenFn. The listener it returns reports the address
// clients must use: kfake advertises its listener's Addr() in metadata.
func (e *embedded) listen(network, address string) (net.Listener, error) {
	ln := e.reserve[address]
	delete(e.reserve, address)
	if ln == nil {
		var err error
		if ln, err = net.Listen(network, address); err != nil {
			return nil, err
		}
	}
	for i, a := range e.addrs {
		if a == address && e.proxies != nil {
			return advertisingListener{Listener: ln, addr: e.proxies[i].ln.Addr()}, nil
		}
	}
	return ln, nil
}

// advertisingListener is a listener that reports another address than the
// one it listens on.
type advertisingListener struct {
	net.Listener
	addr net.Addr
}

func (l advertisingListener) Addr() net.Addr { return l.addr }

func (e *embedded) CreateTopic(ctx context.Context, name string, partitions int32, configs map[string]string) error {
	if partitions <= 0 {
		partitions = e.opts.Partitions
	}
	return createTopics(ctx, e.admin, partitions, configs, name)
}

func (e *embedded) Kill() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cluster != nil {
		e.cluster.Close()
		e.cluster = nil
	}
	return nil
}

func (e *embedded) Restart(ctx context.Context) error {
	return e.start(ctx)
}

func (e *embedded) Close() error {
	e.mu.Lock()
	e.closed = true
	if e.cluster != nil {
		e.cluster.Close()
		e.cluster = nil
	}
	for a, ln := range e.reserve {
		ln.Close()
		delete(e.reserve, a)
	}
	e.mu.Unlock()

	var errs []error
	for _, px := range e.proxies {
		errs = append(errs, px.Close())
	}
	if e.dir != "" {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	if e.sec != nil {
		errs = append(errs, os.RemoveAll(e.sec.Dir))
	}
	return errors.Join(errs...)
}

// ping waits until the broker that opts reach answers a metadata request
// that lists it.
func ping(ctx context.Context, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	return poll(ctx, func() (bool, error) {
		m, err := adm.BrokerMetadata(ctx)
		if err != nil {
			return false, err
		}
		if len(m.Brokers) == 0 {
			return false, errors.New("metadata lists no broker")
		}
		return true, nil
	})
}

// poll calls try every pollInterval until try reports done, then returns
// try's error (nil or permanent). A not-done error is a reason to retry;
// if ctx ends first, poll returns ctx's error with the last such reason.
func poll(ctx context.Context, try func() (done bool, err error)) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var last error
	for {
		done, err := try()
		if done {
			return err
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// portRetry bounds how long Restart waits for its port to be free again.
const portRetry = 10 * time.Second

// pollInterval paces every wait in this package.
const pollInterval = 20 * time.Millisecond
