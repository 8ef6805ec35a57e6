package kafkatest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// silence is how long a read must stay empty to count as "no bytes flow".
const silence = 300 * time.Millisecond

// echoServer echoes every connection and records all bytes it received.
type echoServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	got  bytes.Buffer
	conn []net.Conn
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conn = append(s.conn, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						s.mu.Lock()
						s.got.Write(buf[:n])
						s.mu.Unlock()
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

func (s *echoServer) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.String()
}

func (s *echoServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conn {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func newTestProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := NewProxy("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close proxy: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads len(msg) bytes back within timeout.
func roundTrip(c net.Conn, msg string, timeout time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

func mustEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	got, err := roundTrip(c, msg, 5*time.Second)
	if err != nil || got != msg {
		t.Fatalf("echo %q through proxy: got %q, %v", msg, got, err)
	}
}

// readOutcome reads from c for at most silence and classifies the result.
func readOutcome(c net.Conn) (n int, timedOut bool, err error) {
	c.SetReadDeadline(time.Now().Add(silence))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 64)
	n, err = c.Read(buf)
	return n, errors.Is(err, os.ErrDeadlineExceeded), err
}

func TestProxyPassThrough(t *testing.T) {
	echo := newEchoServer(t)
	p := newTestProxy(t, echo.addr())
	if p.Addr() == echo.addr() {
		t.Fatal("proxy listens on its target's address")
	}

	c := dial(t, p.Addr())
	mustEcho(t, c, "hello")

	// More than one chunk in flight must arrive whole and in order.
	big := bytes.Repeat([]byte("0123456789abcdef"), 3*chunkSize/16+7)
	got, err := roundTrip(c, string(big), 10*time.Second)
	if err != nil || got != string(big) {
		t.Fatalf("echo %d bytes: got %d bytes, %v", len(big), len(got), err)
	}
	if p.Conns() != 1 {
		t.Fatalf("Conns() = %d, want 1", p.Conns())
	}
}

// TestProxyFaults drives each fault through the same life cycle: a working
// connection, the fault, then Heal.
func TestProxyFaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(*Proxy)
		// silent: connections stay open and carry nothing; otherwise
		// they are cut with an error.
		silent bool
	}{
		{name: "blackhole", fault: (*Proxy).Blackhole, silent: true},
		{name: "reset", fault: (*Proxy).Reset, silent: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			echo := newEchoServer(t)
			p := newTestProxy(t, echo.addr())
			before := dial(t, p.Addr())
			mustEcho(t, before, "before")

			tc.fault(p)

			// The listener still accepts, but a reset may already
			// fail the dial itself.
			conns := map[string]net.Conn{"existing": before}
			during, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
			switch {
			case err == nil:
				defer during.Close()
				conns["new"] = during
			case tc.silent || !errors.Is(err, syscall.ECONNRESET):
				t.Fatalf("dial during the fault: %v", err)
			}
			for name, c := range conns {
				c.Write([]byte("lost-" + name))
				n, timedOut, err := readOutcome(c)
				switch {
				case n > 0:
					t.Errorf("%s connection: %d bytes crossed the fault", name, n)
				case tc.silent && !timedOut:
					t.Errorf("%s connection: want silence, got %v", name, err)
				case !tc.silent && (timedOut || err == nil):
					t.Errorf("%s connection: want it cut, got %v", name, err)
				}
			}
			if got := echo.received(); bytes.Contains([]byte(got), []byte("lost-")) {
				t.Errorf("target received bytes sent during the fault: %q", got)
			}

			p.Heal()

			// Connections from the fault are cut, not resumed.
			for name, c := range conns {
				if n, timedOut, err := readOutcome(c); n > 0 || timedOut {
					t.Errorf("%s connection after Heal: got %d bytes, err %v; want it cut", name, n, err)
				}
			}
			mustEcho(t, dial(t, p.Addr()), "after")
		})
	}
}

// TestProxyBlackholeHidesTargetDeath: a blackholed client learns nothing,
// not even that the target closed its side (a broker killed mid-outage).
func TestProxyBlackholeHidesTargetDeath(t *testing.T) {
	echo := newEchoServer(t)
	p := newTestProxy(t, echo.addr())
	c := dial(t, p.Addr())
	mustEcho(t, c, "x")
	p.Blackhole()
	echo.close()
	if n, timedOut, err := readOutcome(c); n > 0 || !timedOut {
		t.Fatalf("blackholed read after the target closed: %d bytes, %v; want silence", n, err)
	}
	p.Heal()
	if n, timedOut, err := readOutcome(c); n > 0 || timedOut {
		t.Fatalf("read after Heal: %d bytes, %v; want the connection cut", n, err)
	}
}

func TestProxyResetSendsRST(t *testing.T) {
	echo := newEchoServer(t)
	p := newTestProxy(t, echo.addr())
	c := dial(t, p.Addr())
	mustEcho(t, c, "x")
	p.Reset()
	if _, _, err := readOutcome(c); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after Reset: %v, want ECONNRESET", err)
	}
	// New connections are reset too, until Heal: in the dial, or at the
	// first read.
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err == nil {
		defer c.Close()
		_, _, err = readOutcome(c)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection made during Reset: %v, want ECONNRESET", err)
	}
}

func TestProxyDelay(t *testing.T) {
	echo := newEchoServer(t)
	p := newTestProxy(t, echo.addr())
	c := dial(t, p.Addr())
	mustEcho(t, c, "warm")

	const d = 150 * time.Millisecond
	p.Delay(d)
	start := time.Now()
	mustEcho(t, c, "slow")
	// One delay per direction.
	if took := time.Since(start); took < 2*d {
		t.Fatalf("round trip with Delay(%v) took %v, want >= %v", d, took, 2*d)
	}

	p.Heal()
	start = time.Now()
	mustEcho(t, c, "fast") // Heal clears the delay and keeps healthy links
	if took := time.Since(start); took >= 2*d {
		t.Fatalf("round trip after Heal took %v, want < %v", took, 2*d)
	}
}

func TestProxyTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	p := newTestProxy(t, dead)
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err == nil {
		defer c.Close()
		_, _, err = readOutcome(c)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection through the proxy to a dead target: %v, want ECONNRESET", err)
	}
}

func TestProxyCloseLeavesNothing(t *testing.T) {
	base := runtime.NumGoroutine()

	echo := newEchoServer(t)
	p, err := NewProxy("127.0.0.1:0", echo.addr())
	if err != nil {
		t.Fatal(err)
	}
	live := dial(t, p.Addr())
	mustEcho(t, live, "live")
	slow := dial(t, p.Addr())
	mustEcho(t, slow, "slow")
	p.Delay(time.Hour) // a goroutine now sleeps on this link
	slow.Write([]byte("stuck"))
	p.Blackhole()
	held := dial(t, p.Addr())
	held.Write([]byte("held"))

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, c := range map[string]net.Conn{"live": live, "slow": slow, "held": held} {
		if n, timedOut, err := readOutcome(c); n > 0 || timedOut {
			t.Errorf("%s connection after Close: got %d bytes, err %v; want it closed", name, n, err)
		}
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Error("proxy still accepts after Close")
	}
	echo.close()

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s",
				runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(pollInterval)
	}
}
