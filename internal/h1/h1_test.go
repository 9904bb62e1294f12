package h1

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

type fields struct {
	got     []string
	interim []int
}

func (f *fields) Field(name, value []byte) { f.got = append(f.got, string(name)+"="+string(value)) }
func (f *fields) Interim(status int)       { f.interim = append(f.interim, status) }

func TestReadHead(t *testing.T) {
	long := strings.Repeat("v", 3*4096)
	for _, c := range []struct {
		name, in string
		want     Head
		fields   string
		interim  []int
		body     string // what DiscardBody leaves unread: the next answer
		complete bool
		err      error
	}{
		{name: "length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhellonext",
			want: Head{Status: 200, ContentLength: 5}, fields: "Content-Length=5,X-A=b", body: "next", complete: true},
		{name: "chunked with trailers", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n5;x=1\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\nnext",
			want: Head{Status: 200, ContentLength: -1, Chunked: true}, fields: "Transfer-Encoding=gzip, chunked,Content-Length=9", body: "next", complete: true},
		{name: "coded: to the end", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nzzz",
			want: Head{Status: 200, ContentLength: -1, Coded: true}, fields: "Transfer-Encoding=chunked, gzip"},
		{name: "HTTP/1.0 closes", in: "HTTP/1.0 200 OK\r\n\r\nall of it",
			want: Head{Status: 200, ContentLength: -1, Close: true}},
		{name: "HTTP/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
			want: Head{Status: 200, ContentLength: 0}, fields: "Connection=Keep-Alive,Content-Length=0", complete: true},
		{name: "close", in: "HTTP/1.1 204 No Content\r\nConnection: x, close\r\n\r\n",
			want: Head{Status: 204, ContentLength: -1, Close: true}, fields: "Connection=x, close"},
		{name: "interim answers", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
			want: Head{Status: 200, ContentLength: 0}, fields: "Link=</a>,Content-Length=0", interim: []int{100, 103}, complete: true},
		{name: "a header longer than the buffer", in: "HTTP/1.1 200 OK\r\nX-Long: " + long + "\r\nContent-Length: 0\r\n\r\n",
			want: Head{Status: 200, ContentLength: 0}, fields: "X-Long=" + long + ",Content-Length=0", complete: true},
		{name: "no reason", in: "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", want: Head{Status: 404, ContentLength: 0}, fields: "Content-Length=0", complete: true},
		{name: "too many interim", in: strings.Repeat("HTTP/1.1 102 Processing\r\n\r\n", 7), err: ErrMalformed},
		{name: "status line", in: "HTTP/2 200 OK\r\n\r\n", err: ErrMalformed},
		{name: "status code", in: "HTTP/1.1 099 X\r\n\r\n", err: ErrMalformed},
		{name: "folded header", in: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", err: ErrMalformed},
		{name: "no colon", in: "HTTP/1.1 200 OK\r\nnot a header\r\n\r\n", err: ErrMalformed},
		{name: "two lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", err: ErrMalformed},
		{name: "bad length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: ErrMalformed},
		{name: "over MaxHead", in: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("v", MaxHead) + "\r\n\r\n", err: ErrMalformed},
		{name: "cut off", in: "HTTP/1.1 200 OK\r\nX: a", err: io.ErrUnexpectedEOF},
		{name: "nothing", in: "", err: io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(c.in), 4096)
			var f fields
			h, _, err := ReadHead(br, &f)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err %v, want %v", err, c.err)
				}
				return
			}
			if err != nil || h != c.want {
				t.Fatalf("ReadHead = %+v, %v; want %+v", h, err, c.want)
			}
			if got := strings.Join(f.got, ","); got != c.fields {
				t.Errorf("fields %q, want %q", got, c.fields)
			}
			if len(f.interim) != len(c.interim) || (len(c.interim) > 0 && f.interim[len(f.interim)-1] != c.interim[len(c.interim)-1]) {
				t.Errorf("interim %v, want %v", f.interim, c.interim)
			}
			if h.Bodiless(false) {
				return
			}
			complete, err := DiscardBody(br, h, 1<<20)
			if err != nil || complete != c.complete {
				t.Fatalf("DiscardBody = %v, %v; want %v", complete, err, c.complete)
			}
			if rest, _ := io.ReadAll(br); string(rest) != c.body {
				t.Errorf("left %q, want %q", rest, c.body)
			}
		})
	}
}

func TestDiscardBodyStopsAtTheLimit(t *testing.T) {
	for _, in := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
	} {
		br := bufio.NewReader(strings.NewReader(in))
		h, _, err := ReadHead(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if complete, err := DiscardBody(br, h, 4); complete || err != nil {
			t.Errorf("%q: DiscardBody to 4 bytes = %v, %v; want incomplete", in, complete, err)
		}
	}
}

// The loadgen's hot path: no allocation per answer.
func TestNoAllocations(t *testing.T) {
	const answer = "HTTP/1.1 200 OK\r\nDate: Wed, 02 Dec 2026 16:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n"
	r := strings.NewReader(answer)
	br := bufio.NewReader(r)
	if n := testing.AllocsPerRun(100, func() {
		r.Reset(answer)
		br.Reset(r)
		h, _, err := ReadHead(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DiscardBody(br, h, 1<<20); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per answer, want 0", n)
	}
}

// FuzzReadHead: whatever a server answers, ReadHead and DiscardBody return
// or fail, never panic, and what ReadHead returns is consistent. Seed
// corpus: testdata/fuzz/FuzzReadHead.
func FuzzReadHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: 1\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(data)), 64)
		var fs fields
		h, _, err := ReadHead(br, &fs)
		if err != nil {
			return
		}
		if h.Status < 100 || h.Status > 999 {
			t.Fatalf("status %d", h.Status)
		}
		if (h.Chunked || h.Coded) && h.ContentLength != -1 {
			t.Fatalf("a transfer coding with a length: %+v", h)
		}
		if h.Chunked && h.Coded {
			t.Fatalf("chunked and coded: %+v", h)
		}
		if !h.Bodiless(false) {
			_, _ = DiscardBody(br, h, 1<<16)
		}
	})
}
