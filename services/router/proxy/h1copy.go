package proxy

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"
)

// roundTripCopyH1 sends a copy (head and body) to the dark version on one of
// its kept connections and discards the answer (up to maxDrain): its status,
// whether it timed out (MirrorTimeout), or why it failed. A copy is sent
// again, once, when a kept connection turns out closed before any answer:
// its body is in memory.
func (p *Proxy) roundTripCopyH1(rt *route, head, body []byte) (int, bool, error) {
	deadline := time.Now().Add(p.cfg.MirrorTimeout)
	for {
		c, err := rt.darkH1.getBy(rt.ctx, deadline)
		if err != nil {
			return 0, !time.Now().Before(deadline), err
		}
		_ = c.SetDeadline(deadline)
		stop := context.AfterFunc(rt.ctx, c.abort)
		status, reuse, err := exchange(c, head, body)
		if !stop() {
			reuse = false
		}
		if err != nil {
			c.Close()
			var na errNoAnswer
			if c.reused && errors.As(err, &na) && rt.ctx.Err() == nil && time.Now().Before(deadline) {
				continue
			}
			return 0, !time.Now().Before(deadline), err
		}
		if reuse && c.SetDeadline(time.Time{}) == nil {
			rt.darkH1.put(c)
		} else {
			c.Close()
		}
		return status, false, nil
	}
}

// exchange writes one request on c and reads its answer, discarded.
func exchange(c *h1Conn, head, body []byte) (status int, reuse bool, err error) {
	if _, err := c.bw.Write(head); err != nil {
		return 0, false, errNoAnswer{err}
	}
	if _, err := c.bw.Write(body); err != nil {
		return 0, false, errNoAnswer{err}
	}
	if err := c.bw.Flush(); err != nil {
		return 0, false, errNoAnswer{err}
	}
	if _, err := c.br.Peek(1); err != nil {
		return 0, false, errNoAnswer{err}
	}
	res, err := readHead(c.br, nil, nil)
	if err != nil {
		return 0, false, err
	}
	if res.Status == http.StatusSwitchingProtocols {
		return 0, false, errors.New("101 Switching Protocols to a request that asked for no upgrade")
	}
	if bytes.HasPrefix(head, []byte("HEAD ")) || res.Status == http.StatusNoContent || res.Status == http.StatusNotModified {
		return res.Status, !res.Close, nil
	}
	reuse, err = discardBody(c.br, res, maxDrain)
	return res.Status, reuse, err
}
