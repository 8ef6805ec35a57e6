package kafkatest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Proxy is an in-process TCP fault proxy: it forwards every connection made
// to Addr to a target address and can, on command, go silent (Blackhole),
// cut every connection (Reset) or slow every chunk down (Delay).
//
// Each connection is a link with one goroutine per direction, each copying
// through its own 32 KiB buffer, so a stalled peer holds at most one chunk
// per direction in the proxy and the rest waits in the kernel's socket
// buffers, as it would on a real network.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	mode   proxyMode
	delay  time.Duration
	links  map[*link]struct{}
	closed bool

	wg sync.WaitGroup // the accept loop and every link goroutine
}

type proxyMode int

const (
	modePass      proxyMode = iota // forward bytes
	modeBlackhole                  // hold bytes, keep connections open
	modeReset                      // cut connections with RST
)

// link is one client connection and its connection to the target.
type link struct {
	client net.Conn
	server net.Conn // nil until dialled, and never dialled while blackholed

	// held is set (under Proxy.mu) when the link is blackholed. A held
	// link never forwards another byte; Heal or Close cuts it.
	held bool

	done chan struct{} // closed, under Proxy.mu, when the link is cut
}

// chunkSize bounds the bytes a link holds per direction.
const chunkSize = 32 << 10

// dialTimeout bounds a dial to the target; the target is on loopback, so
// this only matters if it is wedged.
const dialTimeout = 5 * time.Second

// NewProxy listens on listenAddr ("127.0.0.1:0" picks a free port) and
// forwards each accepted connection to target. The proxy keeps its address
// until Close, whatever faults it injects.
func NewProxy(listenAddr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("kafkatest: proxy listen on %s: %w", listenAddr, err)
	}
	p := &Proxy{ln: ln, target: target, links: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the host:port clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the host:port the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Blackhole makes the network silent: current and new connections stay open
// but no byte crosses in either direction, so clients see timeouts, not
// errors. It applies to every chunk read after Blackhole returns; a chunk
// already being written may still arrive. New connections are accepted but
// not dialled through, so a blackhole also hides a dead target.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = modeBlackhole
	for l := range p.links {
		l.held = true
	}
}

// Reset cuts every current connection with a TCP RST and does the same to
// each new one until Heal: clients see "connection reset by peer".
func (p *Proxy) Reset() {
	p.mu.Lock()
	p.mode = modeReset
	cut := p.snapshotLocked(func(*link) bool { return true })
	p.mu.Unlock()
	for _, l := range cut {
		p.cut(l, true)
	}
}

// Delay adds d of latency before each chunk is forwarded, in both
// directions. Because a direction forwards one chunk at a time, it also
// caps that direction's throughput at chunkSize per d. Zero removes it.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Heal restores plain pass-through with no delay. Connections that were
// blackholed are cut (RST) rather than resumed, so that clients reconnect
// cleanly instead of receiving stale bytes from before the fault.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.mode = modePass
	p.delay = 0
	cut := p.snapshotLocked(func(l *link) bool { return l.held })
	p.mu.Unlock()
	for _, l := range cut {
		p.cut(l, true)
	}
}

// Conns is the number of client connections the proxy holds open.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Close stops listening, cuts every connection and waits for all of the
// proxy's goroutines to return. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	cut := p.snapshotLocked(func(*link) bool { return true })
	p.mu.Unlock()

	err := p.ln.Close()
	for _, l := range cut {
		p.cut(l, false)
	}
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("kafkatest: close proxy %s: %w", p.Addr(), err)
	}
	return nil
}

// snapshotLocked returns the links for which keep is true.
func (p *Proxy) snapshotLocked(keep func(*link) bool) []*link {
	var ls []*link
	for l := range p.links {
		if keep(l) {
			ls = append(ls, l)
		}
	}
	return ls
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (e.g. EMFILE): back off instead of spinning.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		if p.closed || p.mode == modeReset {
			p.mu.Unlock()
			closeConn(c, true)
			continue
		}
		l := &link{client: c, done: make(chan struct{}), held: p.mode == modeBlackhole}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// serve dials the target for l and runs its client→server direction; the
// server→client direction gets a goroutine of its own.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()

	if p.isHeld(l) {
		// Nothing will ever be forwarded; only watch for the client
		// hanging up so the link does not outlive it.
		p.pump(l, nil, l.client)
		return
	}
	server, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		// The target is down: the client sees what it would see
		// connecting to a dead port, a reset.
		p.cut(l, true)
		return
	}
	p.mu.Lock()
	select {
	case <-l.done: // cut while dialling
		p.mu.Unlock()
		closeConn(server, true)
		return
	default:
	}
	l.server = server
	p.wg.Add(1)
	p.mu.Unlock()

	go func() {
		defer p.wg.Done()
		p.pump(l, l.client, server)
	}()
	p.pump(l, server, l.client)
}

// pump copies src to dst chunk by chunk until either side fails or the link
// is cut, then cuts the link. dst may be nil for a held link.
//
// A held link must stay silent to the client, so the target going away
// (a broker killed during a blackhole) does not cut it; only the client
// hanging up, Heal or Close does.
func (p *Proxy) pump(l *link, dst, src net.Conn) {
	defer func() {
		if src != l.client && p.isHeld(l) {
			<-l.done
			return
		}
		p.cut(l, false)
	}()
	buf := make([]byte, chunkSize)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			d := p.delay
			p.mu.Unlock()
			if d > 0 && !l.sleep(d) {
				return
			}
			if p.isHeld(l) {
				<-l.done // drop the chunk and wait for Heal or Close
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if rerr != nil {
			return
		}
	}
}

func (p *Proxy) isHeld(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return l.held
}

// sleep waits d unless the link is cut first; it reports whether the link is
// still up.
func (l *link) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

// cut closes both connections of l, with an RST if rst is set, and
// forgets it. Cutting a cut link does nothing.
func (p *Proxy) cut(l *link, rst bool) {
	p.mu.Lock()
	select {
	case <-l.done:
		p.mu.Unlock()
		return
	default:
	}
	close(l.done)
	delete(p.links, l)
	server := l.server
	p.mu.Unlock()
	closeConn(l.client, rst)
	closeConn(server, rst)
}

// closeConn closes c; with rst the kernel sends RST instead of FIN.
func closeConn(c net.Conn, rst bool) {
	if c == nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok && rst {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
