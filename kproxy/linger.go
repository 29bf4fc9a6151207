package kproxy

import (
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// A request refused before it was read whole — a body over
// max_request_size_bytes, refused from its Content-Length (or, chunked, at
// the limit), headers over max_header_bytes, a malformed or late request —
// leaves a client that did not wait for "100 Continue" (Go's, Java's, most
// libraries) still sending. fasthttp writes the answer and closes the
// connection with those bytes unread; the kernel then resets it, and the
// client, still writing, reports the reset ("connection reset by peer")
// and never reads the answer. So a connection is marked refused when
// kproxy answers such a request, and its Close lingers as net/http's does:
// it shuts the write side (the answer is out, followed by the end of the
// stream), reads and drops what the client still sends, at most a
// request's size, until the client closes or read_timeout_ms ends, then
// closes. It runs on the connection's own goroutine (fasthttp's, which
// calls Close) and starts nothing; a connection closed otherwise closes at
// once. Lingering ends when kproxy stops: Close cuts the connections still
// lingering and waits until they are closed.

// linger bounds the reading of what a refused client still sends: at most
// a request's size (max_header_bytes + max_request_size_bytes), within
// read_timeout_ms: the time kproxy gives a client to send a whole request,
// so a refused one holds its connection no longer than one being read may.
type linger struct {
	timeout time.Duration
	max     int64
	conns   *lingering
}

func newLinger(cfg Config, conns *lingering) linger {
	// Capped: a max_request_size_bytes near the largest integer overflowed
	// the sum to a negative size, and nothing was read.
	return linger{timeout: time.Duration(cfg.ReadTimeoutMs) * time.Millisecond,
		max: int64(cfg.MaxHeaderBytes) + min(int64(cfg.MaxRequestSizeBytes), math.MaxInt64-int64(cfg.MaxHeaderBytes)), conns: conns}
}

// close shuts raw's write side, then reads and drops what arrives until
// the client closes, l.max bytes were read, l.timeout passed or kproxy
// stops; then closes raw with closeConn.
func (l linger) close(raw net.Conn, closeConn func() error) error {
	if cw, ok := raw.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil &&
		l.conns.add(raw, time.Now().Add(l.timeout)) {
		defer l.conns.done(raw) // once closed
		io.CopyN(io.Discard, raw, l.max)
	}
	return closeConn()
}

// lingering is the set of the connections lingering, so that kproxy's
// stop can end them.
type lingering struct {
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	stopped bool
	wg      sync.WaitGroup
}

// add sets raw's read deadline to until and counts raw as lingering;
// false (raw closes at once) once stop was called.
func (s *lingering) add(raw net.Conn, until time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || raw.SetReadDeadline(until) != nil {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[raw] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *lingering) done(raw net.Conn) {
	s.mu.Lock()
	delete(s.conns, raw)
	s.mu.Unlock()
	s.wg.Done()
}

// stop ends the lingering of every connection (their reads time out now),
// makes those refused from now on close at once, and waits until the
// lingering ones are closed. It may be called more than once.
func (s *lingering) stop() {
	s.mu.Lock()
	s.stopped = true
	for raw := range s.conns {
		raw.SetReadDeadline(time.Unix(1, 0))
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// refusable is a connection of the HTTP port that lingers when closed
// after refuse.
type refusable interface{ refuse() }

// lingerOnClose marks c, if it is one of the HTTP port's, to linger when
// fasthttp closes it after the answer.
func lingerOnClose(c net.Conn) {
	if r, ok := c.(refusable); ok {
		r.refuse()
	}
}

// lingerListener wraps each plain connection of the HTTP port in a
// lingerConn.
type lingerListener struct {
	net.Listener
	linger linger
	// atStop lingers the connections kproxy's stop closes after an answer
	// (lingerAtStop) with bytes from the client still unread: fasthttp
	// closes a connection after the answer to its request in flight, and
	// a client that pipelined more requests behind it, reading its
	// answers slowly, had the connection reset, losing answers written
	// but not yet delivered (records in Kafka whose 200 never reached it).
	// Its set is stopped by Close.
	atStop linger
}

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lingerConn{Conn: c, linger: l.linger, atStop: l.atStop}, nil
}

// lingerConn is a plain connection whose Close lingers once refused, or
// once marked by its own goroutine while kproxy stops (lingerAtStop) when
// the client sent bytes not read yet. refused is atomic: fasthttp's
// shutdown may close a connection that has not yet read a byte of its
// first request (and is refused 408) from its own goroutine; only one
// Close lingers. A Close from another goroutine (fasthttp closing idle
// connections, kproxy cutting those left: closeNow) finds no mark of the
// stop's and closes at once: a lingering Close reads the connection,
// which only the goroutine serving it may, and waits for the client.
type lingerConn struct {
	net.Conn
	linger  linger
	atStop  linger
	refused atomic.Bool
	stopped atomic.Bool // its answer was the last, kproxy stopping (lingerAtStop)
}

func (c *lingerConn) refuse() { c.refused.Store(true) }

func (c *lingerConn) stopAfterAnswer() { c.stopped.Store(true) }

func (c *lingerConn) Close() error {
	refused, stopped := c.refused.Swap(false), c.stopped.Swap(false)
	switch {
	case stopped && (refused || unread(c.Conn)):
		return c.atStop.close(c.Conn, c.Conn.Close)
	case refused:
		return c.linger.close(c.Conn, c.Conn.Close)
	}
	return c.Conn.Close()
}

// closeNow closes the connection without lingering, whatever marks it
// has: kproxy's stop cutting the connections left, from its own
// goroutine.
func (c *lingerConn) closeNow() error {
	c.refused.Store(false)
	c.stopped.Store(false)
	return c.Conn.Close()
}

// lingerAtStop marks c, if it is one of the HTTP port's, to linger when
// fasthttp closes it after the answer because kproxy stops. Called by
// the handler, on the connection's own goroutine, which fasthttp's close
// after the answer runs on too.
func lingerAtStop(c net.Conn) {
	if r, ok := c.(interface{ stopAfterAnswer() }); ok {
		r.stopAfterAnswer()
	}
}
