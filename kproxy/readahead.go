package kproxy

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// readAheadListener hands out connections that cost fasthttp's server
// fewer system calls and timer moves per request (kproxy's HTTP port
// without TLS; TLS reads its connection by records).
//
// With release_idle_buffers (fasthttp's ReduceMemoryUsage), fasthttp
// gives a keep-alive connection's buffers back after each request and
// waits for the next one with a one-byte read, then reads the rest: three
// read system calls per request instead of two (the one finding nothing,
// then the byte, then the request). A readAheadConn waits for the next
// request without a buffer as well, then reads all that arrived into a
// pooled one and serves fasthttp's following reads from it.
type readAheadListener struct {
	net.Listener
	pool sync.Pool // *[]byte of size bytes
	size int
}

func newReadAheadListener(ln net.Listener, size int) *readAheadListener {
	l := &readAheadListener{Listener: ln, size: size}
	l.pool.New = func() any {
		b := make([]byte, l.size)
		return &b
	}
	return l
}

func (l *readAheadListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c, nil
	}
	return &readAheadConn{Conn: c, rc: rc, pool: &l.pool}, nil
}

// readAheadConn is a connection whose one-byte reads read ahead (see
// readAheadListener), for fasthttp's server: one goroutine reads it and
// sets its read deadlines.
//
// Its read deadline is set on the socket only before the socket is read.
// fasthttp sets two per request, the idle timeout's before waiting for it
// and read_timeout_ms's once its first byte is in; a request that arrived
// whole (in fasthttp's buffer, or read ahead) never reads the socket under
// the second: one is set instead of two, each a runtime timer moved. A
// read of the socket always waits under the deadline set last.
type readAheadConn struct {
	net.Conn
	rc   syscall.RawConn
	pool *sync.Pool
	buf  *[]byte // pooled; nil when nothing was read ahead
	data []byte  // what was read ahead and not read yet, in *buf

	readDeadline time.Time // the read deadline set last
	readPending  bool      // readDeadline is not set on the socket yet
}

// SetReadDeadline takes effect at the next read of the socket.
func (c *readAheadConn) SetReadDeadline(t time.Time) error {
	c.readDeadline, c.readPending = t, true
	return nil
}

func (c *readAheadConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

// applyReadDeadline sets the read deadline on the socket, before reading it.
func (c *readAheadConn) applyReadDeadline() error {
	if !c.readPending {
		return nil
	}
	c.readPending = false
	return c.Conn.SetReadDeadline(c.readDeadline)
}

func (c *readAheadConn) Read(p []byte) (int, error) {
	if len(c.data) > 0 {
		n := copy(p, c.data)
		c.data = c.data[n:]
		if len(c.data) == 0 {
			c.pool.Put(c.buf)
			c.buf, c.data = nil, nil
		}
		return n, nil
	}
	if err := c.applyReadDeadline(); err != nil {
		return 0, err
	}
	if len(p) != 1 {
		return c.Conn.Read(p)
	}
	// A buffer is taken only when there is something to read: a
	// connection waiting for its next request holds none.
	var n int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		b := c.pool.Get().(*[]byte)
		for {
			n, rerr = syscall.Read(int(fd), *b)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			c.pool.Put(b)
			return false // wait until readable (within the read deadline)
		}
		if rerr != nil || n <= 0 {
			c.pool.Put(b)
		} else {
			c.buf = b
		}
		return true
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(),
			Err: os.NewSyscallError("read", rerr)}
	case n <= 0:
		return 0, io.EOF
	}
	p[0] = (*c.buf)[0]
	c.data = (*c.buf)[1:n]
	if len(c.data) == 0 {
		c.pool.Put(c.buf)
		c.buf, c.data = nil, nil
	}
	return 1, nil
}
