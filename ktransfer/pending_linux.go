package ktransfer

import (
	"net"
	"syscall"
	"time"
)

// peeker tells whether bytes, or the end of the stream, wait to be read on
// a connection, without reading them or waiting (a peek that does not
// block). Made once per connection: a peek allocates nothing.
type peeker struct {
	conn net.Conn
	raw  syscall.RawConn
	fn   func(fd uintptr) bool
	err  error
	b    [1]byte
}

func newPeeker(conn net.Conn) *peeker {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &peeker{conn: conn, raw: raw}
	p.fn = func(fd uintptr) bool {
		_, _, p.err = syscall.Recvfrom(int(fd), p.b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait for readiness
	}
	return p
}

// pending reports whether bytes or the end of the stream wait; false for
// a connection it cannot look at.
func (p *peeker) pending() bool {
	if p == nil {
		return false
	}
	// The read deadline of the connection's last answer may have
	// passed: Read would refuse at once, and a healthy connection be
	// taken for a dead one. The push sets its own.
	if err := p.conn.SetReadDeadline(time.Time{}); err != nil {
		return true
	}
	if err := p.raw.Read(p.fn); err != nil {
		return true
	}
	switch p.err {
	case syscall.EAGAIN:
		return false // nothing there
	default:
		return true // bytes, none and the peer closed it, or an error (reset): not fit for a push
	}
}
