package kproxy

import (
	"net"
	"syscall"
)

// unread reports whether bytes the client sent wait in the kernel to be
// read on c: closed so, the connection is reset, and answers written but
// not yet delivered are lost. False when c cannot be looked at.
func unread(c net.Conn) bool {
	var raw syscall.RawConn
	switch sc := c.(type) {
	case *readAheadConn:
		raw = sc.raw
	case syscall.Conn:
		var err error
		if raw, err = sc.SyscallConn(); err != nil {
			return false
		}
	default:
		return false
	}
	var b [1]byte
	n := 0
	if raw.Control(func(fd uintptr) {
		n, _, _ = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}) != nil {
		return false
	}
	return n > 0
}
