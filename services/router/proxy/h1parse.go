package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"sync"

	"github.com/darklaunch/darklaunch/internal/h1"
)

// Reading a version's answers for the forwarder (h1.go), with internal/h1,
// which the loadgen reads its answers with too.

// readHead reads an answer's status line and headers into dst (nil: they
// are read and dropped), without the hop-by-hop ones. Interim answers (1xx
// but 101) are written to sw when it is not nil, as ReverseProxy passes
// them on, except 100 Continue: the client's Expect is the server's to
// answer, and the forwarder sends none.
func readHead(br *bufio.Reader, dst http.Header, sw *statusWriter) (h1.Head, error) {
	var v h1.Visitor
	var s *headSink
	if dst != nil {
		s = headSinks.Get().(*headSink)
		s.dst, s.sw = dst, sw
		defer s.release()
		v = s
	}
	h, _, err := h1.ReadHead(br, v)
	if err != nil {
		return h, err
	}
	if h.Coded {
		return h, fmt.Errorf("%w: a transfer coding other than chunked", h1.ErrMalformed)
	}
	if s != nil {
		s.commit()
	}
	return h, nil
}

// headSink keeps the end-to-end headers of an answer for the client's
// response: the values in one string and the keys' slices in one array,
// as textproto.ReadMIMEHeader does (two allocations per answer instead of
// two per header). Pooled: it is passed as an h1.Visitor, so it would
// escape.
type headSink struct {
	dst    http.Header
	sw     *statusWriter
	fields []field
	values []byte
	named  []string // headers the Connection header names: hop-by-hop too
}

type field struct {
	key      string
	from, to int
}

var headSinks = sync.Pool{New: func() any {
	return &headSink{fields: make([]field, 0, 16), values: make([]byte, 0, 1024)}
}}

func (s *headSink) Field(name, value []byte) {
	key := canonicalKey(name)
	switch key {
	case "Connection":
		for t := range bytes.SplitSeq(value, []byte(",")) {
			if t = textproto.TrimBytes(t); len(t) > 0 && !h1.HasToken(t, []byte("close")) && !h1.HasToken(t, []byte("keep-alive")) {
				s.named = append(s.named, textproto.CanonicalMIMEHeaderKey(string(t)))
			}
		}
		return
	case "Transfer-Encoding", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Upgrade":
		return
	}
	s.fields = append(s.fields, field{key, len(s.values), len(s.values) + len(value)})
	s.values = append(s.values, value...)
}

// Interim passes an interim answer on, with its headers.
func (s *headSink) Interim(status int) {
	s.commit()
	if s.sw != nil && status != http.StatusContinue {
		s.sw.WriteHeader(status)
	}
	clear(s.dst) // not done by WriteHeader for 1xx
}

// commit puts the headers gathered into dst.
func (s *headSink) commit() {
	if len(s.fields) > 0 {
		all := string(s.values)
		strs := make([]string, len(s.fields))
		for i, f := range s.fields {
			strs[i] = all[f.from:f.to]
			if old := s.dst[f.key]; old != nil {
				s.dst[f.key] = append(old, strs[i])
			} else {
				s.dst[f.key] = strs[i : i+1 : i+1]
			}
		}
	}
	for _, k := range s.named {
		delete(s.dst, k)
	}
	s.fields, s.values, s.named = s.fields[:0], s.values[:0], s.named[:0]
}

func (s *headSink) release() {
	s.dst, s.sw = nil, nil
	s.fields, s.values, s.named = s.fields[:0], s.values[:0], s.named[:0]
	headSinks.Put(s)
}

// trailerSink puts trailers into dst, each key with prefix.
type trailerSink struct {
	dst    http.Header
	prefix string
}

func (t trailerSink) Field(name, value []byte) {
	k := t.prefix + canonicalKey(name)
	t.dst[k] = append(t.dst[k], string(value))
}

func (trailerSink) Interim(int) {}

// readTrailer reads the trailer section after a chunked body's last chunk
// into dst, each key with prefix.
func readTrailer(br *bufio.Reader, dst http.Header, prefix string) error {
	return h1.ReadTrailer(br, trailerSink{dst, prefix})
}

// discardBody reads an answer's body to its end, up to limit bytes: it
// reports whether the connection can serve another request.
func discardBody(br *bufio.Reader, h h1.Head, limit int64) (bool, error) {
	complete, err := h1.DiscardBody(br, h, limit)
	return complete && !h.Close, err
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

func newChunkedReader(br *bufio.Reader) io.Reader { return httputil.NewChunkedReader(br) }

func newChunkedWriter(w io.Writer) io.WriteCloser { return httputil.NewChunkedWriter(w) }
