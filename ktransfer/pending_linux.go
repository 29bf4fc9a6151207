package ktransfer

import (
	"net"
	"syscall"
)

// pending tells whether bytes, or the end of the stream, wait to be read
// on conn, without reading them or waiting (a peek that does not block).
func pending(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var b [1]byte
	var rerr error
	if err := raw.Read(func(fd uintptr) bool {
		_, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait for readiness
	}); err != nil {
		return true
	}
	switch {
	case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK:
		return false // nothing there
	case rerr != nil:
		return true // reset, or another error: not fit for a push
	default:
		return true // bytes, or none and the peer closed it
	}
}
