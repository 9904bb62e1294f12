package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// cannedServer answers every request on 127.0.0.1 with the same bytes,
// without allocating per request, so that a benchmark's allocations and
// most of its CPU are the client's; served counts the answers.
func cannedServer(tb testing.TB) (url string, served *atomic.Int64) {
	served = new(atomic.Int64)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReaderSize(c, 4096)
				for {
					line, err := r.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(bytes.TrimRight(line, "\r\n")) == 0 {
						served.Add(1)
						if _, err := c.Write(resp); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/", served
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTraffic is the traffic's whole path per request (pacer, request,
// tally, metrics) as fast as it goes: every ticket due at once, 50 in
// flight, against a canned local server.
func BenchmarkTraffic(b *testing.B) {
	url, _ := cannedServer(b)
	p := plan{URL: url, Host: "customdomain.com", Method: "GET", Concurrency: 50, Timeout: 5 * time.Second}
	req, err := newRequester(p)
	if err != nil {
		b.Fatal(err)
	}
	defer req.close()
	prom, err := newPromMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	counts := newTally(windows{start: time.Now(), interval: time.Second, total: 1000}, p.Concurrency)
	var sent atomic.Int64
	send := sender{req, counts, prom, &sent}.send
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	var n atomic.Int64
	target := int64(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	_, _ = pace(ctx, schedule{Start: time.Now(), Rate: 1e9}, p.Concurrency, func(ctx context.Context, w int, due time.Time) {
		if n.Add(1) == target {
			defer cancel()
		}
		send(ctx, w, due)
	})
	el := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(n.Load())/el.Seconds(), "req/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(n.Load()), "cpu-µs/req")
}

// BenchmarkTrafficPaced is BenchmarkTraffic at a fixed 30,000 req/s: b.N
// requests over b.N ÷ 30,000 s, the workers sleeping until each ticket is
// due.
func BenchmarkTrafficPaced(b *testing.B) {
	const rate = 30000.0
	url, _ := cannedServer(b)
	p := plan{URL: url, Host: "customdomain.com", Method: "GET", Concurrency: 50, Timeout: 5 * time.Second}
	req, err := newRequester(p)
	if err != nil {
		b.Fatal(err)
	}
	defer req.close()
	prom, err := newPromMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	counts := newTally(windows{start: time.Now(), interval: time.Second, total: 1000}, p.Concurrency)
	var sent atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	s := schedule{Start: t0, Rate: rate, End: t0.Add(time.Duration(float64(b.N) / rate * float64(time.Second)))}
	n, _ := pace(b.Context(), s, p.Concurrency, sender{req, counts, prom, &sent}.send)
	el := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(n)/el.Seconds(), "req/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(n), "cpu-µs/req")
	lp := counts.progress(rate, el, true, time.Now())
	b.ReportMetric(lp.P50Ms, "p50-ms")
	b.ReportMetric(lp.P99Ms, "p99-ms")
}
