package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
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

// answer is what one request got back.
type answer struct {
	code int
	// routed: a version answered, not the router's proxy for want of an
	// experiment on the Host (bus.HeaderUnrouted).
	routed bool
}

// do sends one request and reads its body.
func (r *requester) do(ctx context.Context) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, nil)
	if err != nil {
		return answer{}, fmt.Errorf("build request: %w", err)
	}
	req.Host = r.host
	req.Header.Set("User-Agent", "darklaunch-loadgen")
	resp, err := r.client.Do(req)
	if err != nil {
		return answer{}, err
	}
	a := answer{code: resp.StatusCode, routed: resp.Header.Get(bus.HeaderUnrouted) == ""}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	resp.Body.Close()
	if err != nil {
		return a, fmt.Errorf("read body: %w", err)
	}
	return a, nil
}

// close releases the idle connections once the traffic has ended.
func (r *requester) close() { r.client.CloseIdleConnections() }
