//go:build unix

package wsgraphql

import (
	"net"
	"syscall"
)

// peekable is conn's socket, for peek; nil when conn is not a socket of its own (TLS).
func peekable(conn net.Conn) syscall.RawConn {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// peek returns once the socket has something to read (or is closed), reading nothing: the
// runtime's poller parks the caller until then.
func peek(raw syscall.RawConn) {
	var b [1]byte
	_ = raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		return err != syscall.EAGAIN
	})
}
