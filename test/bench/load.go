package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// wrkResult is one closed-loop run.
type wrkResult struct {
	rps    float64
	errors int64 // non-2xx/3xx answers and socket errors
}

var (
	wrkRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:\s+([0-9]+)`)
	wrkSocket = regexp.MustCompile(`Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)`)
)

// runWrk is `wrk -t2 -c50` against target for d.
func runWrk(ctx context.Context, path, target, host string, d time.Duration) (wrkResult, string, error) {
	args := []string{"-t2", "-c50", "-d" + seconds(d), "--timeout", "5s", "-H", "Host: " + host, target}
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	var r wrkResult
	if err != nil {
		return r, string(out), fmt.Errorf("wrk %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	m := wrkRPS.FindSubmatch(out)
	if m == nil {
		return r, string(out), fmt.Errorf("wrk: no Requests/sec in its output:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := wrkNon2xx.FindSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		r.errors += n
	}
	if m := wrkSocket.FindSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(string(s), 10, 64)
			r.errors += n
		}
	}
	return r, string(out), nil
}

// fortioResult is one fixed-rate run; latencies in milliseconds.
type fortioResult struct {
	p50, p99 float64
	qps      float64
	errors   int64 // answers other than 200, and failed requests
	calls    int64 // timed by fortio
}

// runFortio is `fortio load -uniform -qps qps -c 50` against target for d.
func runFortio(ctx context.Context, path, dir, target, host string, qps int, d time.Duration) (fortioResult, error) {
	out := filepath.Join(dir, "fortio.json")
	args := []string{"load", "-quiet", "-uniform", "-qps", strconv.Itoa(qps), "-c", "50", "-t", seconds(d),
		"-p", "50,99", "-timeout", "5s", "-H", "Host: " + host, "-json", out, target}
	var r fortioResult
	if msg, err := exec.CommandContext(ctx, path, args...).CombinedOutput(); err != nil {
		return r, fmt.Errorf("fortio %s: %w\n%s", strings.Join(args, " "), err, msg)
	}
	return readFortio(out)
}

// readFortio reads fortio's -json output: its achieved rate, p50 and p99,
// answers other than 200, and how many calls it timed.
func readFortio(out string) (fortioResult, error) {
	var r fortioResult
	raw, err := os.ReadFile(out)
	if err != nil {
		return r, err
	}
	var res struct {
		ActualQPS         float64
		DurationHistogram struct {
			Count       int64
			Percentiles []struct{ Percentile, Value float64 }
		}
		RetCodes map[string]int64
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return r, fmt.Errorf("fortio's %s: %w", out, err)
	}
	r.qps, r.calls = res.ActualQPS, res.DurationHistogram.Count
	for _, p := range res.DurationHistogram.Percentiles {
		switch p.Percentile {
		case 50:
			r.p50 = p.Value * 1000
		case 99:
			r.p99 = p.Value * 1000
		}
	}
	for code, n := range res.RetCodes {
		if code != "200" {
			r.errors += n
		}
	}
	if r.p50 == 0 && r.p99 == 0 {
		return r, fmt.Errorf("fortio's %s: no p50 or p99", out)
	}
	return r, nil
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s" }

// control talks to the backends' control listener.
type control struct {
	base   string
	client *http.Client
}

func (c control) post(path string, q url.Values) error {
	resp, err := c.client.Post(c.base+path+"?"+q.Encode(), "text/plain", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("backends %s: %s", path, resp.Status)
	}
	return nil
}

func (c control) setDark(mode string, delay time.Duration) error {
	return c.post("/mode", url.Values{"dark": {mode}, "delay": {delay.String()}})
}

func (c control) reset() error { return c.post("/reset", nil) }

func (c control) count() (counts, error) {
	var n counts
	resp, err := c.client.Get(c.base + "/count")
	if err != nil {
		return n, err
	}
	defer resp.Body.Close()
	return n, json.NewDecoder(resp.Body).Decode(&n)
}

// settled reads the counts once the dark backend's has not moved for
// 300 ms (the copies still on their way arrive), waiting 3 s at most.
func (c control) settled(ctx context.Context) (counts, error) {
	last, err := c.count()
	if err != nil {
		return last, err
	}
	stable := 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && stable < 3; {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		n, err := c.count()
		if err != nil {
			return n, err
		}
		if n == last {
			stable++
		} else {
			stable = 0
		}
		last = n
	}
	return last, nil
}

// rssSampler keeps the largest resident set of pids seen every 200 ms
// (pids: the processes to sum, read at each sample).
type rssSampler struct {
	mu   sync.Mutex
	peak int64 // bytes
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pids func() []int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			var sum int64
			for _, pid := range pids() {
				n, _ := rss(pid)
				sum += n
			}
			s.mu.Lock()
			s.peak = max(s.peak, sum)
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// end stops sampling and returns the peak in bytes.
func (s *rssSampler) end() int64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// rss is pid's VmRSS in bytes.
func rss(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// withChildren is pid and its children (nginx's master and workers).
func withChildren(pid int) []int {
	pids := []int{pid}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return pids
	}
	for _, f := range strings.Fields(string(raw)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}
