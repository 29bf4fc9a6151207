package kproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
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
		return c.Conn.Read(p)
	}
	// The one-byte read of a request's first byte: wait holding nothing.
	if err := c.raw.Read(c.readReady); err != nil {
		return 0, err // the read deadline, or the connection closed
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
