package kafkatest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestLeasedPorts: leased ports lie below the kernel's ephemeral range, two
// leases never share a port, a leased port is refused to others until the
// lease is released, and a port something listens on is never leased.
func TestLeasedPorts(t *testing.T) {
	lo, hi := leasedPortRange()
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var eph int
		if _, err := fmt.Sscan(string(b), &eph); err == nil && hi > eph {
			t.Fatalf("leased range [%d, %d) reaches into the ephemeral range from %d", lo, hi, eph)
		}
	}
	a, la, err := leasePorts(8)
	if err != nil {
		t.Fatal(err)
	}
	b, lb, err := leasePorts(8)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range append(append([]int{}, a...), b...) {
		if p < lo || p >= hi {
			t.Errorf("port %d outside [%d, %d)", p, lo, hi)
		}
		if seen[p] {
			t.Errorf("port %d leased twice", p)
		}
		seen[p] = true
	}
	dir := filepath.Join(os.TempDir(), "kafkawal-ports")
	if f, err := lockPort(dir, a[0]); err != nil || f != nil {
		t.Fatalf("lock a leased port: %v, %v; want refused", f, err)
	}
	la.release()
	f, err := lockPort(dir, a[0])
	if err != nil || f == nil {
		t.Fatalf("lock a released port: %v, %v; want it", f, err)
	}
	f.Close()
	lb.release()

	// Something listening on a port of the range: never leased. The port
	// is leased while the listener is put on it, so that no other test
	// process is starting a broker there.
	c, lc, err := leasePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c[0])))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lc.release()
	if f, err := lockPort(dir, c[0]); err != nil || f != nil {
		t.Fatalf("lock port %d, which is listened on: %v, %v; want refused", c[0], f, err)
	}
}
