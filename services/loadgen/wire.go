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

	"github.com/darklaunch/darklaunch/shared/bus"
)

// Limits on what an answer may hold before loadgen gives up on it.
const (
	readBuffer      = 4 << 10 // a longer header line is skipped, not parsed
	maxHeaderBytes  = 1 << 20 // status line and headers of one answer
	maxInterimPerOp = 5       // 1xx answers before the final one, as net/http
)

// longLine stands for a line longer than the read buffer.
var longLine = []byte("-")

// aLongTimeAgo is a deadline in the past: it fails a connection's pending
// I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

var (
	hContentLength    = []byte("Content-Length")
	hTransferEncoding = []byte("Transfer-Encoding")
	hConnection       = []byte("Connection")
	hUnrouted         = []byte(bus.HeaderUnrouted)
	tChunked          = []byte("chunked")
	tClose            = []byte("close")
	tKeepAlive        = []byte("keep-alive")
)

// conn is one worker's keep-alive connection to the target.
type conn struct {
	r    *requester
	nc   net.Conn
	br   *bufio.Reader
	used bool        // a request went over nc already
	stop func() bool // stops the context.AfterFunc that cuts nc when the traffic stops
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
// (Content-Length, Transfer-Encoding, Connection, Darklaunch-Unrouted), the
// body to the end, discarded, or to maxDrain. keep says that the
// connection can carry the next request; got that a byte of an answer came.
func (c *conn) read() (a answer, keep, got bool, err error) {
	var hdr int
	for interim := 0; ; interim++ {
		line, err := c.line(&hdr)
		got = got || len(line) > 0 || c.br.Buffered() > 0
		if err != nil {
			return a, false, got, err
		}
		got = true
		// "HTTP/1.1 200 OK": version, space, three digits.
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' || !digits(line[9:12]) ||
			(len(line) > 12 && line[12] != ' ') {
			return a, false, got, fmt.Errorf("%w: status line %q", errMalformed, clip(line))
		}
		code := int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
		closing := line[7] == '0' // HTTP/1.0: closes unless told otherwise
		length, chunked, untilClose, unrouted := int64(-1), false, false, false
		for {
			h, err := c.line(&hdr)
			if err != nil {
				return a, false, got, err
			}
			if len(h) == 0 {
				break
			}
			name, value, ok := bytes.Cut(h, []byte(":"))
			if !ok {
				continue // a line too long for the buffer, or not a header
			}
			value = bytes.Trim(value, " \t")
			switch {
			case bytes.EqualFold(name, hContentLength):
				n, ok := decimal(value)
				if !ok || (length >= 0 && n != length) {
					return a, false, got, fmt.Errorf("%w: Content-Length %q", errMalformed, clip(value))
				}
				length = n
			case bytes.EqualFold(name, hTransferEncoding):
				chunked = lastToken(value, tChunked)
				untilClose = !chunked
			case bytes.EqualFold(name, hConnection):
				if hasToken(value, tClose) {
					closing = true
				} else if hasToken(value, tKeepAlive) {
					closing = false
				}
			case bytes.EqualFold(name, hUnrouted):
				unrouted = len(value) > 0
			}
		}
		if code >= 100 && code < 200 && code != 101 {
			if interim == maxInterimPerOp {
				return a, false, got, fmt.Errorf("%w: more than %d interim (1xx) answers", errMalformed, maxInterimPerOp)
			}
			continue // the final answer follows
		}
		a = answer{code: code, routed: !unrouted}
		switch {
		case code == 101: // switched protocols: no more HTTP/1.1 on this connection
			return a, false, got, nil
		case c.r.head || code == 204 || code == 304:
			return a, !closing, got, nil
		case chunked:
			complete, err := c.discardChunked()
			return a, complete && !closing, got, err
		case length >= 0 && !untilClose:
			n := min(length, maxDrain)
			_, err := c.br.Discard(int(n))
			return a, n == length && !closing, got, err
		default: // the body ends when the server closes
			_, err := io.CopyN(io.Discard, c.br, maxDrain)
			if err == io.EOF {
				err = nil
			}
			return a, false, got, err
		}
	}
}

// discardChunked reads a chunked body to its end (complete) or to maxDrain.
func (c *conn) discardChunked() (complete bool, err error) {
	var total, hdr int
	for {
		line, err := c.line(&hdr)
		if err != nil {
			return false, err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 { // chunk extensions
			line = line[:i]
		}
		n, ok := hex(bytes.TrimRight(line, " \t"))
		if !ok {
			return false, fmt.Errorf("%w: chunk size %q", errMalformed, clip(line))
		}
		if n == 0 { // trailers, to the blank line
			for {
				t, err := c.line(&hdr)
				if err != nil {
					return false, err
				}
				if len(t) == 0 {
					return true, nil
				}
			}
		}
		if int64(total)+n > maxDrain {
			_, err := c.br.Discard(maxDrain - total)
			return false, err
		}
		total += int(n)
		if _, err := c.br.Discard(int(n)); err != nil {
			return false, err
		}
		if end, err := c.line(&hdr); err != nil || len(end) != 0 {
			return false, cmpErr(err, fmt.Errorf("%w: no CR LF after a chunk", errMalformed))
		}
	}
}

// closedByPeer says whether err is the other end having closed the
// connection (as a server does with a connection idle too long), not a
// timeout or a stop.
func closedByPeer(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// line is the next line without its line break, valid until the next read.
// A line longer than the buffer comes back cut to the buffer's length, its
// rest skipped; *total counts the bytes read, up to maxHeaderBytes.
func (c *conn) line(total *int) ([]byte, error) {
	l, err := c.br.ReadSlice('\n')
	*total += len(l)
	for err == bufio.ErrBufferFull && *total <= maxHeaderBytes {
		// Its beginning is overwritten by what follows: what comes back is
		// neither a header loadgen reads nor a blank line.
		l = longLine
		var more []byte
		more, err = c.br.ReadSlice('\n')
		*total += len(more)
		if err == nil {
			return l, nil
		}
	}
	if *total > maxHeaderBytes {
		return nil, fmt.Errorf("%w: over %d bytes of headers", errMalformed, maxHeaderBytes)
	}
	if err != nil {
		if err == io.EOF && len(l) == 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return l, err
	}
	l = l[:len(l)-1]
	if n := len(l); n > 0 && l[n-1] == '\r' {
		l = l[:n-1]
	}
	return l, nil
}

func digits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// decimal parses a Content-Length: up to 18 digits.
func decimal(b []byte) (int64, bool) {
	if !digits(b) || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// hex parses a chunk size: up to 15 hexadecimal digits.
func hex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | int64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// hasToken says whether the comma-separated list v holds tok (any case).
func hasToken(v, tok []byte) bool {
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.Trim(t, " \t"), tok) {
			return true
		}
	}
	return false
}

// lastToken says whether tok is the last of the comma-separated list v.
func lastToken(v, tok []byte) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return bytes.EqualFold(bytes.Trim(v, " \t"), tok)
}

// clip is b cut to 64 bytes, for an error message.
func clip(b []byte) []byte { return b[:min(len(b), 64)] }
