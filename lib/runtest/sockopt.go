package runtest

import "syscall"

// SmallReceiveBuffer is a net.Dialer's or net.ListenConfig's Control that
// gives the socket a receive buffer of n bytes: a peer's write larger than
// what the two sockets' buffers hold blocks until it is read, or fails if
// the socket is closed unread.
func SmallReceiveBuffer(n int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
		}); err != nil {
			return err
		}
		return serr
	}
}
