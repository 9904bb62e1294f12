package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/darklaunch/darklaunch/internal/h1"
	"github.com/darklaunch/darklaunch/shared/bus"
)

// readBuffer is each connection's read buffer; a longer header line is
// gathered (internal/h1), up to h1.MaxHead for the whole head.
const readBuffer = 4 << 10

// aLongTimeAgo is a deadline in the past: it fails a connection's pending
// I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

var hUnrouted = []byte(bus.HeaderUnrouted)

// conn is one worker's keep-alive connection to the target.
type conn struct {
	r    *requester
	nc   net.Conn
	br   *bufio.Reader
	used bool        // a request went over nc already
	stop func() bool // stops the context.AfterFunc that cuts nc when the traffic stops
	seen seen        // the last answer's headers
}

// roundTrip writes the request and reads its answer. again says that it
// failed on a reused connection before any byte of an answer came, and may
// be sent once more on a new connection.
func (c *conn) roundTrip(ctx context.Context) (a answer, err error, again bool) {
	if c.nc == nil {
		if err := c.dial(ctx); err != nil {
			return a, err, false
		}
	}
	reused := c.used
	c.used = true
	if err := c.nc.SetDeadline(time.Now().Add(c.r.timeout)); err != nil {
		c.close()
		return a, err, false
	}
	// After the deadline was set, so that a stop cannot slip in between:
	// once ctx has ended, the AfterFunc sets a deadline in the past.
	if err := ctx.Err(); err != nil {
		c.close()
		return a, err, false
	}
	if _, err := c.nc.Write(c.r.wire); err != nil {
		c.close()
		return a, fmt.Errorf("write request: %w", err), reused && closedByPeer(err)
	}
	a, keep, got, err := c.read()
	if err != nil || !keep {
		c.close()
	}
	if err != nil {
		return a, fmt.Errorf("read answer: %w", err), reused && !got && c.r.replay && closedByPeer(err)
	}
	return a, nil, false
}

func (c *conn) dial(ctx context.Context) error {
	nc, err := c.r.dialer.DialContext(ctx, "tcp", c.r.addr)
	if err != nil {
		return err
	}
	if c.r.tls != nil {
		tc := tls.Client(nc, c.r.tls)
		hctx, cancel := context.WithTimeout(ctx, c.r.timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return fmt.Errorf("TLS handshake with %s: %w", c.r.addr, err)
		}
		nc = tc
	}
	c.nc, c.used = nc, false
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, readBuffer)
	} else {
		c.br.Reset(nc)
	}
	c.stop = context.AfterFunc(ctx, func() { _ = nc.SetDeadline(aLongTimeAgo) })
	return nil
}

func (c *conn) close() {
	if c.nc == nil {
		return
	}
	c.stop()
	c.nc.Close()
	c.nc = nil
}

// read reads one answer: its status line, the headers loadgen needs
// (internal/h1 reads the framing; the visitor notes Darklaunch-Unrouted),
// the body to the end, discarded, or to maxDrain. keep says that the
// connection can carry the next request; got that a byte of an answer came.
func (c *conn) read() (a answer, keep, got bool, err error) {
	c.seen.unrouted = false
	h, got, err := h1.ReadHead(c.br, &c.seen)
	if err != nil {
		return a, false, got, err
	}
	a = answer{code: h.Status, routed: !c.seen.unrouted}
	switch {
	case h.Status == 101: // switched protocols: no more HTTP/1.1 on this connection
		return a, false, got, nil
	case h.Bodiless(c.r.head):
		return a, !h.Close, got, nil
	}
	complete, err := h1.DiscardBody(c.br, h, maxDrain)
	return a, complete && !h.Close, got, err
}

// seen is what loadgen notes of an answer's headers.
type seen struct{ unrouted bool }

func (s *seen) Field(name, value []byte) {
	if bytes.EqualFold(name, hUnrouted) {
		s.unrouted = len(value) > 0
	}
}

func (s *seen) Interim(int) { s.unrouted = false }

// closedByPeer says whether err is the other end having closed the
// connection (as a server does with a connection idle too long), not a
// timeout or a stop.
func closedByPeer(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
