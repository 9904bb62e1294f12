// Package h1 reads HTTP/1.x answers (RFC 9112) off a buffered connection,
// for darklaunch's two clients of its own: the proxy's forwarder, which
// passes answers on, and the loadgen, which throws them away. Both are on
// the hot path, where net/http's client costs two goroutines per
// connection and a header map per answer (see the proxy's and the
// loadgen's profiles in test/bench/README.md); reading the head is all
// they need of it, and this package does it without allocating.
package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxHead bounds an answer's status lines and headers, interim answers
// included, as http.Transport's MaxResponseHeaderBytes (there 10 MB).
const MaxHead = 1 << 20

// MaxInterim is the most interim (1xx) answers before the final one, as
// net/http allows.
const MaxInterim = 5

// ErrMalformed is an answer that is not HTTP/1.x.
var ErrMalformed = errors.New("malformed HTTP/1.x answer")

// Head is an answer's status and framing.
type Head struct {
	Status int
	// ContentLength is the declared length; -1: none (or a
	// Transfer-Encoding, which overrides it).
	ContentLength int64
	// Chunked: Transfer-Encoding ends with chunked. Coded: it names a
	// coding other than chunked last, so the body ends when the
	// connection does (RFC 9112 §6.3).
	Chunked, Coded bool
	// Close: the connection ends after this answer (Connection: close, or
	// HTTP/1.0 without keep-alive).
	Close bool
}

// Bodiless reports whether the answer to a request of that method has no
// body whatever its headers say.
func (h Head) Bodiless(head bool) bool {
	return head || h.Status == 204 || h.Status == 304 || (h.Status >= 100 && h.Status < 200)
}

// Visitor receives an answer's headers as they are read.
type Visitor interface {
	// Field is one header line: its name as sent and its value trimmed,
	// valid only during the call. Every header is given, hop-by-hop ones
	// too: which to keep is the caller's business.
	Field(name, value []byte)
	// Interim ends an interim answer (1xx but 101), whose headers were
	// given to Field; the final answer's follow.
	Interim(status int)
}

// ReadHead reads an answer's head: interim answers, then the final one.
// got reports whether any byte of an answer came (a failure before one, on
// a kept connection, may be the server having closed it). v may be nil.
func ReadHead(br *bufio.Reader, v Visitor) (h Head, got bool, err error) {
	budget := MaxHead
	var scratch []byte
	for interim := 0; ; interim++ {
		line, err := readLine(br, &scratch, &budget)
		got = got || len(line) > 0
		if err != nil {
			return h, got, err
		}
		got = true
		if h, err = readOne(br, line, &scratch, &budget, v); err != nil {
			return h, got, err
		}
		if h.Status >= 200 || h.Status == 101 {
			return h, got, nil
		}
		if interim == MaxInterim {
			return h, got, fmt.Errorf("%w: more than %d interim (1xx) answers", ErrMalformed, MaxInterim)
		}
		if v != nil {
			v.Interim(h.Status)
		}
	}
}

// readOne reads the headers after status line line.
func readOne(br *bufio.Reader, line []byte, scratch *[]byte, budget *int, v Visitor) (Head, error) {
	h := Head{ContentLength: -1}
	// "HTTP/1.1 200 OK": version, space, three digits, [space reason].
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' || !digits(line[9:12]) ||
		(len(line) > 12 && line[12] != ' ') || line[9] == '0' {
		return h, fmt.Errorf("%w: status line %q", ErrMalformed, Clip(line))
	}
	h.Status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	http10 := line[7] == '0'
	h.Close = http10
	te := false
	for {
		l, err := readLine(br, scratch, budget)
		if err != nil {
			return h, err
		}
		if len(l) == 0 {
			break
		}
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok || len(name) == 0 || name[0] == ' ' || name[0] == '\t' || bytes.ContainsAny(name, " \t") {
			return h, fmt.Errorf("%w: header line %q", ErrMalformed, Clip(l))
		}
		value = bytes.Trim(value, " \t")
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := decimal(value)
			if !ok || (h.ContentLength >= 0 && n != h.ContentLength) {
				return h, fmt.Errorf("%w: Content-Length %q", ErrMalformed, Clip(value))
			}
			h.ContentLength = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			te = true
			h.Chunked = LastToken(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if HasToken(value, []byte("close")) {
				h.Close = true
			} else if http10 && HasToken(value, []byte("keep-alive")) {
				h.Close = false
			}
		}
		if v != nil {
			v.Field(name, value)
		}
	}
	if te {
		// RFC 9112 §6.3: a Transfer-Encoding overrides Content-Length.
		h.ContentLength, h.Coded = -1, !h.Chunked
	}
	return h, nil
}

// ReadTrailer reads the trailer section after a chunked body's last chunk
// (see DiscardBody, or httputil.NewChunkedReader's EOF), giving each field
// to v (nil: dropped).
func ReadTrailer(br *bufio.Reader, v Visitor) error {
	budget := MaxHead
	var scratch []byte
	for {
		l, err := readLine(br, &scratch, &budget)
		if err != nil {
			return err
		}
		if len(l) == 0 {
			return nil
		}
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok || len(name) == 0 {
			return fmt.Errorf("%w: trailer line %q", ErrMalformed, Clip(l))
		}
		if v != nil {
			v.Field(name, bytes.Trim(value, " \t"))
		}
	}
}

// DiscardBody reads an answer's body to its end, or to limit bytes:
// complete reports that it was read whole (the connection may then carry
// the next request, unless h.Close). Call it only for an answer with a
// body (see Head.Bodiless).
func DiscardBody(br *bufio.Reader, h Head, limit int64) (complete bool, err error) {
	switch {
	case h.Chunked:
		return discardChunked(br, limit)
	case h.ContentLength >= 0 && !h.Coded:
		n := min(h.ContentLength, limit)
		if _, err := br.Discard(int(n)); err != nil {
			return false, unexpected(err)
		}
		return n == h.ContentLength, nil
	default: // to the end of the connection
		_, err := io.CopyN(io.Discard, br, limit)
		if err == io.EOF {
			err = nil
		}
		return false, err
	}
}

func discardChunked(br *bufio.Reader, limit int64) (bool, error) {
	var total int64
	budget := MaxHead
	var scratch []byte
	for {
		line, err := readLine(br, &scratch, &budget)
		if err != nil {
			return false, unexpected(err)
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 { // chunk extensions
			line = line[:i]
		}
		n, ok := hex(bytes.TrimRight(line, " \t"))
		if !ok {
			return false, fmt.Errorf("%w: chunk size %q", ErrMalformed, Clip(line))
		}
		if n == 0 {
			return true, ReadTrailer(br, nil)
		}
		if total+n > limit {
			_, err := br.Discard(int(limit - total))
			return false, unexpected(err)
		}
		total += n
		if _, err := br.Discard(int(n)); err != nil {
			return false, unexpected(err)
		}
		if end, err := readLine(br, &scratch, &budget); err != nil || len(end) != 0 {
			if err == nil {
				err = fmt.Errorf("%w: no CR LF after a chunk", ErrMalformed)
			}
			return false, unexpected(err)
		}
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readLine reads one line of a head without its line break; a line longer
// than br's buffer is gathered in *scratch. *budget bounds the bytes read.
// The line is valid until the next read.
func readLine(br *bufio.Reader, scratch *[]byte, budget *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		*scratch = append((*scratch)[:0], line...)
		for err == bufio.ErrBufferFull && len(*scratch) <= *budget {
			line, err = br.ReadSlice('\n')
			*scratch = append(*scratch, line...)
		}
		line = *scratch
	}
	if *budget -= len(line); *budget < 0 {
		return nil, fmt.Errorf("%w: over %d bytes of headers", ErrMalformed, MaxHead)
	}
	if err != nil {
		return line, unexpected(err) // a head cut off
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
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

// HasToken reports whether the comma-separated list v holds tok (any case).
func HasToken(v, tok []byte) bool {
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.Trim(t, " \t"), tok) {
			return true
		}
	}
	return false
}

// LastToken reports whether tok is the last of the comma-separated list v.
func LastToken(v, tok []byte) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return bytes.EqualFold(bytes.Trim(v, " \t"), tok)
}

// Clip is b cut to 64 bytes, for an error message.
func Clip(b []byte) []byte { return b[:min(len(b), 64)] }
