package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

// FuzzReadHead: whatever a version answers, the head parser returns an
// answer or an error, never panics, and what it returns is consistent.
// Seed corpus: testdata/fuzz/FuzzReadHead.
func FuzzReadHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n",
		"HTTP/1.1 200\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 999 \r\n folded: x\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 64)
		h := http.Header{}
		res, err := readHead(br, h, nil)
		if err != nil {
			return
		}
		if res.Status < 100 || res.Status > 999 {
			t.Fatalf("status %d from %q", res.Status, data)
		}
		if res.Chunked && res.ContentLength != -1 {
			t.Fatalf("chunked with a length %d", res.ContentLength)
		}
		for _, k := range []string{"Connection", "Transfer-Encoding", "Keep-Alive", "Te"} {
			if h[k] != nil {
				t.Fatalf("hop-by-hop %s kept: %v", k, h)
			}
		}
		if res.Chunked || res.ContentLength >= 0 {
			_, _ = discardBody(br, res, 1<<20)
		}
	})
}
