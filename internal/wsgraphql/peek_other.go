//go:build !unix

package wsgraphql

import (
	"net"
	"syscall"
)

// peekable is nil where sockets cannot be peeked at: connections then wait in the
// WebSocket read itself, on a deeper stack.
func peekable(net.Conn) syscall.RawConn { return nil }

func peek(syscall.RawConn) {}
