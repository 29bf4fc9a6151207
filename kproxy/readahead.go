package kproxy

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// readAheadListener hands out connections whose one-byte reads read what
// is there. With ReduceMemoryUsage, fasthttp gives a keep-alive
// connection's buffers back after each request and waits for the next one
// with a one-byte read, then reads the rest: three read system calls per
// request instead of two (the one finding nothing, then the byte, then the
// request), about 5% of kproxy's CPU under load. A readAheadConn waits for
// the next request without a buffer as well, then reads all that arrived
// into a pooled one and serves fasthttp's following reads from it: the
// system calls of a connection holding its buffers, the memory of one that
// gives them back.
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
// readAheadListener). Like any net.Conn it is read by one goroutine at a
// time.
type readAheadConn struct {
	net.Conn
	rc   syscall.RawConn
	pool *sync.Pool
	buf  *[]byte // pooled; nil when nothing was read ahead
	data []byte  // what was read ahead and not read yet, in *buf
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
