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

	// Something listening on a port of the range: never leased.
	var ln net.Listener
	for p := lo; p < hi && ln == nil; p++ {
		ln, _ = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	}
	if ln == nil {
		t.Fatal("no port of the range could be bound")
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	if f, err := lockPort(dir, busy); err != nil || f != nil {
		t.Fatalf("lock port %d, which is listened on: %v, %v; want refused", busy, f, err)
	}
}
