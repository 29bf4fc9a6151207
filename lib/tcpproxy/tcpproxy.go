// Package tcpproxy is a TCP proxy for fault tests: it forwards every
// connection it accepts to one address and can freeze them (no byte goes
// through either way, the connections stay open: a network partition as a
// client sees it), thaw them, or cut them (close every connection: a reset
// link). The chaos test puts one in front of ZooKeeper per process.
package tcpproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds the connection to the target.
const dialTimeout = 2 * time.Second

// Proxy forwards connections from Addr to its target.
type Proxy struct {
	target string
	ln     net.Listener

	mu     sync.Mutex
	thawed chan struct{}      // closed while not frozen; a new one on Freeze
	conns  map[*link]struct{} // open links
	closed bool

	wg sync.WaitGroup // the accept loop and every link's goroutines
}

// link is one client connection and its connection to the target.
type link struct {
	client net.Conn
	done   chan struct{} // closed by close

	mu     sync.Mutex
	server net.Conn // nil until dialled
	closed bool
}

// close closes both connections; idempotent.
func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	close(l.done)
	l.client.Close()
	if l.server != nil {
		l.server.Close()
	}
}

// setServer records the connection to the target; false when the link was
// closed meanwhile (then the caller closes s).
func (l *link) setServer(s net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.server = s
	return true
}

// Start listens on a free loopback port and forwards to target.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy to %s: listen: %w", target, err)
	}
	thawed := make(chan struct{})
	close(thawed)
	p := &Proxy{target: target, ln: ln, thawed: thawed, conns: map[*link]struct{}{}}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is where clients connect.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address connections are forwarded to.
func (p *Proxy) Target() string { return p.target }

// Freeze stops forwarding: bytes read from either side are held, and a
// new connection is accepted but not dialled through, until Thaw. A write
// already under way when Freeze is called completes.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
		p.thawed = make(chan struct{})
	default: // frozen already
	}
}

// Thaw forwards again, held bytes first.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
	default:
		close(p.thawed)
	}
}

// Frozen reports whether the proxy is frozen.
func (p *Proxy) Frozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
		return false
	default:
		return true
	}
}

// Cut closes every current connection, both sides, and returns how many
// there were. New connections are accepted as before.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		links = append(links, l)
	}
	clear(p.conns)
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
	return len(links)
}

// Conns is the number of open connections.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines; idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors, …
			continue
		}
		l := &link{client: c, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.conns[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.serve(l) })
	}
}

// serve dials the target once the proxy is thawed and copies both ways.
func (p *Proxy) serve(l *link) {
	defer p.forget(l)
	if !p.waitThawed(l) {
		return
	}
	s, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		l.close() // the target is down: the client sees its connection closed
		return
	}
	if !l.setServer(s) { // cut while dialling
		s.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(l, s, l.client) })
	p.pipe(l, l.client, s)
	wg.Wait()
}

// forget drops a finished link.
func (p *Proxy) forget(l *link) {
	l.close()
	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
}

// pipe copies src to dst until either side fails or the link is closed,
// holding what it read while the proxy is frozen.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitThawed(l) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitThawed waits until the proxy is not frozen; false when the link was
// closed meanwhile.
func (p *Proxy) waitThawed(l *link) bool {
	for {
		p.mu.Lock()
		thawed := p.thawed
		p.mu.Unlock()
		select {
		case <-l.done:
			return false
		case <-thawed:
			// Frozen again between the close and this check? Then wait
			// for the new thaw.
			p.mu.Lock()
			still := thawed == p.thawed
			p.mu.Unlock()
			if still {
				return true
			}
		}
	}
}
