package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/darklaunch/darklaunch/shared/retry"
)

// initCheck is Iter8's init task done locally: before anything is routed,
// both versions must answer a GET of their base URL. Any HTTP response
// counts, even a 500: a version that errors still answers, and judging its
// errors is the experiment's job. Both are checked at once; the error names
// each version that did not answer and its last error.
func (p *Proxy) initCheck(ctx context.Context, spec routeSpec) error {
	ctx, cancel := context.WithTimeout(ctx, p.set.InitTimeout)
	defer cancel()
	// Own transport, no keep-alive: a check must not leave connections in
	// the pools that carry traffic.
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		// The base URL answering with a redirect is an answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	h2 := initClientH2()
	defer h2.CloseIdleConnections()
	errc := make(chan error, 2)
	for _, v := range []struct {
		role string
		u    *url.URL
	}{{"live", spec.live}, {"dark", spec.dark}} {
		go func() { errc <- p.waitAnswer(ctx, client, h2, v.role, v.u, spec.Host) }()
	}
	var errs []string
	for range 2 {
		if err := <-errc; err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		// Live first, whichever finished first.
		if len(errs) == 2 && strings.HasPrefix(errs[1], "live") {
			errs[0], errs[1] = errs[1], errs[0]
		}
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// waitAnswer GETs u with Host host until it answers, every InitInterval,
// until ctx ends. An answer over HTTP/1.1 or, failing that, over HTTP/2
// (h2 client; a gRPC server speaks only that) counts.
func (p *Proxy) waitAnswer(ctx context.Context, client, h2 *http.Client, role string, u *url.URL, host string) error {
	var last error
	err := retry.Do(ctx, retry.Policy{First: p.set.InitInterval, Max: p.set.InitInterval}, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return retry.Permanent(fmt.Errorf("%s version %s: %w", role, u, err))
		}
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			if r2, err2 := h2.Do(req); err2 == nil {
				resp, err = r2, nil
			}
		}
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
			resp.Body.Close()
			return nil
		}
		if ctx.Err() == nil || last == nil {
			// Keep the cause (connection refused) over the deadline that
			// ended the last attempt, unless there is nothing else.
			last = err
		}
		var ue *url.Error
		if errors.As(last, &ue) {
			last = ue.Err
		}
		return err
	}, nil)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%s version %s did not answer within %s: %w", role, u, p.set.InitTimeout, cmp.Or(last, err))
	}
	return err
}
