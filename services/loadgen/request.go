package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// maxDrain bounds how much of a response body is read. Reading the body to
// the end lets the connection be reused; a body larger than this is not what
// a load test is about, and closing that connection is cheaper.
const maxDrain = 4 << 20

// requester sends the requests of one experiment through one keep-alive
// client sized for its concurrency.
type requester struct {
	client *http.Client
	url    string
	host   string
	method string
}

func newRequester(p plan) *requester {
	tr := &http.Transport{
		// No proxy from the environment: loadgen sends to the router's proxy
		// (or the mesh) directly, and a corporate HTTP_PROXY would measure the
		// wrong thing.
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: p.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          p.Concurrency,
		MaxIdleConnsPerHost:   p.Concurrency,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: p.Timeout,
	}
	return &requester{
		client: &http.Client{
			Transport: tr,
			Timeout:   p.Timeout,
			// A redirect is the answer; following it would send more than
			// the rate says.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		url:    p.URL,
		host:   p.Host,
		method: p.Method,
	}
}

// do sends one request and reads its body; it returns the status code.
func (r *requester) do(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, nil)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Host = r.host
	req.Header.Set("User-Agent", "darklaunch-loadgen")
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, nil
}

// close releases the idle connections once the traffic has ended.
func (r *requester) close() { r.client.CloseIdleConnections() }
