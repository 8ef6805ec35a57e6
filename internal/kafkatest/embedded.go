package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// embedded is a one-node kfake cluster in the test process.
type embedded struct {
	opts    Options
	dir     string // kfake data dir; "" when Ephemeral
	addr    string // 127.0.0.1:port the cluster really listens on, fixed at first start
	proxy   *Proxy // nil without Options.Proxy
	direct  kgo.Opt
	reserve net.Listener // the first start's listener, handed to kfake once

	mu      sync.Mutex
	cluster *kfake.Cluster // nil while killed or closed
	closed  bool
}

// StartEmbedded starts a one-node kfake cluster on 127.0.0.1. Its port is
// chosen at first start and kept by Restart. Unless opts.Ephemeral, the
// cluster persists to a temporary directory, removed by Close, so that data
// survives Kill and Restart. With opts.Proxy the cluster advertises the
// proxy's address, so every client connection, including reconnections to
// the advertised address, crosses the proxy.
//
// Kill closes the cluster: every client connection drops and in-flight
// requests go unanswered. Unlike kill -9 of a real broker, kfake saves its
// state on the way down, so Kill never loses what the broker acknowledged.
func StartEmbedded(ctx context.Context, opts Options) (Broker, error) {
	if opts.Partitions <= 0 {
		opts.Partitions = 1
	}
	e := &embedded{opts: opts}

	// Reserve the broker's port first: the proxy needs it as its target
	// before the cluster, which advertises the proxy, can start.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("kafkatest: reserve embedded broker port: %w", err)
	}
	e.reserve = ln
	e.addr = ln.Addr().String()
	if opts.Proxy {
		if e.proxy, err = NewProxy("127.0.0.1:0", e.addr); err != nil {
			ln.Close()
			return nil, err
		}
	}
	if !opts.Ephemeral {
		if e.dir, err = os.MkdirTemp("", "kafkawal-kfake-"); err != nil {
			e.Close()
			return nil, fmt.Errorf("kafkatest: embedded broker data dir: %w", err)
		}
	}
	e.direct = directDialer(e.Bootstrap(), e.addr)

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
	return kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		if host == advertised {
			host = real
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

func (e *embedded) Proxy() *Proxy { return e.proxy }

// start creates the cluster on e.addr and waits until it answers.
func (e *embedded) start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("kafkatest: embedded broker is closed")
	}
	if e.cluster != nil {
		return errors.New("kafkatest: embedded broker is running; Kill it before Restart")
	}
	_, portStr, _ := net.SplitHostPort(e.addr)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("kafkatest: embedded broker address %q: %w", e.addr, err)
	}
	kopts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
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

	// The port can stay busy for a moment after a Kill; past
	// portRetry something else owns it and waiting will not help.
	var c *kfake.Cluster
	bindCtx, cancel := context.WithTimeout(ctx, portRetry)
	defer cancel()
	err = poll(bindCtx, func() (bool, error) {
		var err error
		c, err = kfake.NewCluster(kopts...)
		return !errors.Is(err, syscall.EADDRINUSE), err
	})
	if err != nil {
		return fmt.Errorf("kafkatest: start embedded broker on %s: %w", e.addr, err)
	}
	ctx, cancel = context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := ping(ctx, e.addr, e.direct); err != nil {
		c.Close()
		return fmt.Errorf("kafkatest: embedded broker on %s: %w", e.addr, err)
	}
	e.cluster = c
	return nil
}

// listen is kfake's ListenFn. The listener it returns reports the address
// clients must use: kfake advertises its listener's Addr() in metadata.
func (e *embedded) listen(network, address string) (net.Listener, error) {
	ln := e.reserve
	e.reserve = nil
	if ln == nil || ln.Addr().String() != address {
		if ln != nil {
			ln.Close()
		}
		var err error
		if ln, err = net.Listen(network, address); err != nil {
			return nil, err
		}
	}
	if e.proxy != nil {
		return advertisingListener{Listener: ln, addr: e.proxy.ln.Addr()}, nil
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
	return createTopics(ctx, []kgo.Opt{kgo.SeedBrokers(e.addr), e.direct}, partitions, configs, name)
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
	if e.reserve != nil {
		e.reserve.Close()
		e.reserve = nil
	}
	e.mu.Unlock()

	var errs []error
	if e.proxy != nil {
		errs = append(errs, e.proxy.Close())
	}
	if e.dir != "" {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	return errors.Join(errs...)
}

// ping waits until the broker at seed answers a metadata request that
// lists it.
func ping(ctx context.Context, seed string, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seed)}, opts...)...)
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
