package kafkatest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Real brokers' ports are leased, not just found free. A port found free
// with Listen("127.0.0.1:0") is one of the kernel's ephemeral ports: in the
// seconds before the JVM binds it, or while a broker is down for Restart,
// any process's next Listen(":0") may get it (a CI run, with the real
// tier's packages side by side, failed to start a test's second broker
// with "port 41117 is already in use"). So the ports come from just below
// the ephemeral range, where the kernel hands out none, and each is held
// by an flock on a file of its own for the broker's life: the other test
// processes skip it, and a process that dies lets go of it.

// leasedPortSpan is how many ports below the ephemeral range are leased
// from.
const leasedPortSpan = 10000

// portLease holds the locks of leased ports.
type portLease struct{ files []*os.File }

// release lets go of the ports; nil-safe.
func (l *portLease) release() {
	if l == nil {
		return
	}
	for _, f := range l.files {
		f.Close() // closing the descriptor drops its flock
	}
	l.files = nil
}

// leasePorts returns n distinct loopback ports, free now and held for the
// caller until the lease is released.
func leasePorts(n int) ([]int, *portLease, error) {
	lo, hi := leasedPortRange()
	dir := filepath.Join(os.TempDir(), "kafkawal-ports")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("kafkatest: lease ports: %w", err)
	}
	lease := &portLease{}
	ports := make([]int, 0, n)
	span := hi - lo
	start := rand.IntN(span)
	for i := 0; i < span && len(ports) < n; i++ {
		p := lo + (start+i)%span
		f, err := lockPort(dir, p)
		if err != nil {
			lease.release()
			return nil, nil, err
		}
		if f == nil {
			continue // another process holds it, or something listens there
		}
		lease.files = append(lease.files, f)
		ports = append(ports, p)
	}
	if len(ports) < n {
		lease.release()
		return nil, nil, fmt.Errorf("kafkatest: lease ports: %d free of the %d needed in [%d, %d)", len(ports), n, lo, hi)
	}
	return ports, lease, nil
}

// lockPort takes port p's lock and checks that p can be bound; nil, nil if
// either fails for reasons that leave other ports worth trying.
func lockPort(dir string, p int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("kafkatest: lease port %d: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("kafkatest: lease port %d: %w", p, err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		f.Close()
		return nil, nil
	}
	ln.Close()
	return f, nil
}

// leasedPortRange returns the leasedPortSpan ports below the kernel's
// ephemeral range (Linux's ip_local_port_range; 32768 if unknown), never
// below 1024.
func leasedPortRange() (lo, hi int) {
	hi = 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 1024+1000 {
				hi = v
			}
		}
	}
	return max(1024, hi-leasedPortSpan), hi
}
