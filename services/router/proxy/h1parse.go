package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
)

// Reading a version's answers for the forwarder (h1.go).

// h1Response is the head of an answer.
type h1Response struct {
	status        int
	contentLength int64 // -1: not given
	chunked       bool
	close         bool // the connection ends with this answer
}

// readLine reads one line of the head, without its CRLF, into scratch when
// it does not fit the reader's buffer; *budget bounds the whole head.
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
		return nil, errH1Header
	}
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// readHead reads an answer's status line and headers into dst (nil: they
// are read and dropped), without the hop-by-hop ones. Interim answers (1xx
// but 101) are written to sw when it is not nil, as ReverseProxy passes
// them on, except 100 Continue: the client's Expect is the server's to
// answer, and the forwarder sends none.
func readHead(br *bufio.Reader, dst http.Header, sw *statusWriter) (h1Response, error) {
	var scratch []byte
	budget := h1MaxHeader
	for {
		res, err := readOneHead(br, &scratch, &budget, dst)
		if err != nil || res.status >= 200 || res.status == 101 {
			return res, err
		}
		if sw != nil && res.status != http.StatusContinue {
			sw.WriteHeader(res.status)
		}
		clear(dst) // not done by WriteHeader for 1xx
	}
}

func readOneHead(br *bufio.Reader, scratch *[]byte, budget *int, dst http.Header) (h1Response, error) {
	res := h1Response{contentLength: -1}
	line, err := readLine(br, scratch, budget)
	if err != nil {
		return res, err
	}
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return res, fmt.Errorf("malformed status line %q", truncate(line))
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil || code < 100 {
		return res, fmt.Errorf("malformed status line %q", truncate(line))
	}
	res.status = code
	http10 := line[7] == '0'
	res.close = http10
	var connTokens [][]byte // headers the Connection header names: hop-by-hop too
	// The values are kept in one string, and the keys' slices in one
	// array, as textproto.ReadMIMEHeader does: two allocations per answer
	// instead of two per header.
	type field struct {
		key      string
		from, to int
	}
	var fieldsArr [16]field
	var valuesArr [1024]byte
	fields, values := fieldsArr[:0], valuesArr[:0]
	for {
		line, err := readLine(br, scratch, budget)
		if err != nil {
			return res, err
		}
		if len(line) == 0 {
			break
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 || line[0] == ' ' || line[0] == '\t' {
			return res, fmt.Errorf("malformed header line %q", truncate(line))
		}
		key := canonicalKey(line[:i])
		value := textproto.TrimBytes(line[i+1:])
		switch key {
		case "Connection":
			for _, t := range bytes.Split(value, []byte(",")) {
				t = textproto.TrimBytes(t)
				switch {
				case asciiEqualFold(t, "close"):
					res.close = true
				case asciiEqualFold(t, "keep-alive"):
					if http10 {
						res.close = false
					}
				case len(t) > 0:
					connTokens = append(connTokens, bytes.Clone(t))
				}
			}
			continue
		case "Transfer-Encoding":
			if !asciiEqualFold(value, "chunked") {
				return res, fmt.Errorf("unsupported transfer encoding %q", truncate(value))
			}
			res.chunked = true
			continue
		case "Content-Length":
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (res.contentLength >= 0 && n != res.contentLength) {
				return res, fmt.Errorf("bad Content-Length %q", truncate(value))
			}
			res.contentLength = n
		case "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Upgrade":
			continue
		}
		if dst != nil {
			fields = append(fields, field{key, len(values), len(values) + len(value)})
			values = append(values, value...)
		}
	}
	if len(fields) > 0 {
		all := string(values)
		strs := make([]string, len(fields))
		for i, f := range fields {
			strs[i] = all[f.from:f.to]
			if old := dst[f.key]; old != nil {
				dst[f.key] = append(old, strs[i])
			} else {
				dst[f.key] = strs[i : i+1 : i+1]
			}
		}
	}
	for _, t := range connTokens {
		delete(dst, textproto.CanonicalMIMEHeaderKey(string(t)))
	}
	if res.chunked {
		res.contentLength = -1 // RFC 9112 §6.3: chunked wins
	}
	return res, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// commonKeys are header keys as most servers send them: looked up without
// an allocation.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept-Ranges", "Age", "Cache-Control", "Connection", "Content-Encoding", "Content-Language",
		"Content-Length", "Content-Type", "Date", "Etag", "Expires", "Keep-Alive", "Last-Modified", "Location",
		"Server", "Set-Cookie", "Trailer", "Transfer-Encoding", "Upgrade", "Vary", "Via", "X-Content-Type-Options",
		"X-Request-Id", "Grpc-Status", "Grpc-Message", "Te", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization"} {
		m[k] = k
	}
	return m
}()

func canonicalKey(b []byte) string {
	if k, ok := commonKeys[string(b)]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(string(b))
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// readTrailer reads the trailer section after a chunked body's last chunk
// into dst (nil: dropped), each key with prefix.
func readTrailer(br *bufio.Reader, dst http.Header, prefix string) error {
	var scratch []byte
	budget := h1MaxHeader
	for {
		line, err := readLine(br, &scratch, &budget)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			return fmt.Errorf("malformed trailer line %q", truncate(line))
		}
		if dst != nil {
			k := prefix + canonicalKey(line[:i])
			dst[k] = append(dst[k], string(textproto.TrimBytes(line[i+1:])))
		}
	}
}

// discardBody reads an answer's body to its end, up to limit bytes: it
// reports whether the connection can serve another request.
func discardBody(br *bufio.Reader, res h1Response, limit int64) (bool, error) {
	switch {
	case res.chunked:
		n, err := io.Copy(io.Discard, io.LimitReader(newChunkedReader(br), limit))
		if err != nil {
			return false, err
		}
		if n == limit {
			return false, nil
		}
		return !res.close, readTrailer(br, nil, "")
	case res.contentLength >= 0:
		if res.contentLength > limit {
			return false, nil
		}
		_, err := br.Discard(int(res.contentLength))
		return err == nil && !res.close, err
	default:
		_, err := io.Copy(io.Discard, io.LimitReader(br, limit))
		return false, err
	}
}

func newChunkedReader(br *bufio.Reader) io.Reader { return httputil.NewChunkedReader(br) }

func newChunkedWriter(w io.Writer) io.WriteCloser { return httputil.NewChunkedWriter(w) }
