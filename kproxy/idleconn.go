package kproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// With release_idle_buffers, fasthttp waits for a keep-alive connection's
// next request by reading its first byte alone, holding no buffer, then
// reads the rest into a buffer taken for that request: two reads per
// request where one would do. readAhead takes that one-byte read and
// makes it the only one: it waits for the socket to become readable
// holding no buffer either, then reads what has arrived into a pooled
// buffer and hands fasthttp the bytes from it. An idle connection still
// holds no buffer: the pooled one goes back as soon as its bytes are
// taken.
//
// fasthttp also moves a connection's deadlines three times per request:
// the idle deadline before the wait, the read deadline after its first
// byte, the write deadline before the answer; each moves a runtime timer.
// readAheadConn gives the socket a deadline only when it is earlier than
// the socket's (so that a read or write blocked now ends by it), and a
// later one only when the socket's passes while the later one has not:
// the operation goes on until that one. A connection whose requests
// arrive whole and whose answers leave at once moves its timers about
// once per deadline's length instead of three times per request, and
// every read and write still ends when the last deadline asked says.

// readAheadSize is the pooled buffer's size: a whole keyed /commit of a
// few hundred bytes, headers included, arrives in one read; what does not
// fit is read as before.
const readAheadSize = 4096

var readAheadPool = sync.Pool{New: func() any { b := make([]byte, readAheadSize); return &b }}

// readAheadListener wraps each accepted connection that has a file
// descriptor (plain TCP) in a readAheadConn.
type readAheadListener struct{ net.Listener }

func (l readAheadListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c, nil
	}
	rc := &readAheadConn{Conn: c, raw: raw}
	rc.readReady = rc.readInto
	return rc, nil
}

// readAheadConn is one connection's reads, used by the goroutine serving
// it only.
type readAheadConn struct {
	net.Conn
	raw     syscall.RawConn
	buf     *[]byte // the pooled buffer pending is in; nil when none is held
	pending []byte  // bytes read and not yet handed out

	readReady func(fd uintptr) bool // readInto, made once: no allocation per read
	n         int                   // readInto's result
	err       error

	rd, wd lazyDeadline // the read and write deadlines
}

// lazyDeadline is one direction's deadline of a readAheadConn. It may be
// asked from any goroutine (kproxy's stop ends lingering reads with it).
type lazyDeadline struct {
	mu     sync.Mutex
	wanted time.Time // the last one asked; zero: none
	given  time.Time // the socket's; never later than wanted, unless wanted is none
}

// ask makes t the deadline, given to the socket with give (its
// SetReadDeadline or SetWriteDeadline) when it is earlier than the
// socket's, or the socket has none.
func (d *lazyDeadline) ask(t time.Time, give func(time.Time) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wanted = t
	if d.given.IsZero() && t.IsZero() || !d.given.IsZero() && (t.IsZero() || !t.Before(d.given)) {
		return nil // the socket's ends first (or neither has one): rearm moves it on
	}
	if err := give(t); err != nil {
		return err
	}
	d.given = t
	return nil
}

// rearm is called when an operation ended with err: true when err is the
// socket's deadline passing while the one asked has not, then given to
// the socket: the operation goes on.
func (d *lazyDeadline) rearm(err error, give func(time.Time) error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.wanted.Equal(d.given) || !d.wanted.IsZero() && !time.Now().Before(d.wanted) {
		return false // the deadline asked passed
	}
	if give(d.wanted) != nil {
		return false
	}
	d.given = d.wanted
	return true
}

func (c *readAheadConn) SetReadDeadline(t time.Time) error {
	return c.rd.ask(t, c.Conn.SetReadDeadline)
}

func (c *readAheadConn) SetWriteDeadline(t time.Time) error {
	return c.wd.ask(t, c.Conn.SetWriteDeadline)
}

func (c *readAheadConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

func (c *readAheadConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	for n < len(p) && c.wd.rearm(err, c.Conn.SetWriteDeadline) {
		var m int
		m, err = c.Conn.Write(p[n:])
		n += m
	}
	return n, err
}

func (c *readAheadConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			readAheadPool.Put(c.buf)
			c.buf, c.pending = nil, nil
		}
		return n, nil
	}
	if len(p) != 1 {
		for {
			n, err := c.Conn.Read(p)
			if n > 0 || !c.rd.rearm(err, c.Conn.SetReadDeadline) {
				return n, err
			}
		}
	}
	// The one-byte read of a request's first byte: wait holding nothing.
	for {
		err := c.raw.Read(c.readReady)
		if err == nil {
			break
		}
		if !c.rd.rearm(err, c.Conn.SetReadDeadline) {
			return 0, err // the read deadline, or the connection closed
		}
	}
	switch n, err := c.n, c.err; {
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", err)}
	case n <= 0:
		return 0, io.EOF
	}
	return c.Read(p)
}

// readInto reads what fd has into a pooled buffer, kept in pending when
// anything was read; false (wait until readable) when nothing had arrived.
func (c *readAheadConn) readInto(fd uintptr) bool {
	b := readAheadPool.Get().(*[]byte)
	for {
		c.n, c.err = syscall.Read(int(fd), *b)
		if !errors.Is(c.err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(c.err, syscall.EAGAIN) {
		readAheadPool.Put(b)
		return false // not readable yet: wait, holding no buffer
	}
	if c.err == nil && c.n > 0 {
		c.buf, c.pending = b, (*b)[:c.n]
	} else {
		readAheadPool.Put(b)
	}
	return true
}

// CloseWrite shuts the connection's write side (the lingering close of a
// refused request, lingerConn's).
func (c *readAheadConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
