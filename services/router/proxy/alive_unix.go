//go:build unix

package proxy

import (
	"errors"
	"net"
	"syscall"
)

// peekAlive peeks at a connection without blocking: open and quiet is
// alive; EOF (closed by the peer), an error, or data nobody asked for is
// not. (A read deadline in the past does not do it: the poller then fails
// the read before it is tried.)
func peekAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = n < 0 && errors.Is(err, syscall.EAGAIN)
		return true // never wait: the answer is now
	})
	return err == nil && alive
}
