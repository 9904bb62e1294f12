package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
)

// The proxy's cost, reported not gated: compare BenchmarkProxy with
// BenchmarkDirect (the same live server without the proxy). "serial" is one
// request at a time, so ns/op is the latency; "parallel" is throughput.

var benchClient = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256}}

func benchGet(b *testing.B, url, host string) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Host = host
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

func benchTarget(b *testing.B, url, host string) {
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			benchGet(b, url, host)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				benchGet(b, url, host)
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	})
}

func benchLive(b *testing.B) *routertest.Version {
	return routertest.NewVersion(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from live\n") })
}

func BenchmarkDirect(b *testing.B) {
	live := benchLive(b)
	benchTarget(b, live.URL+"/", "customdomain.com")
}

func BenchmarkProxy(b *testing.B) {
	live := benchLive(b)
	dark := routertest.NewVersion(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from dark\n") })
	p, base := newTestProxy(b, Config{}, nil)
	setup(b, p, routertest.Experiment("bench", "customdomain.com", live.URL, dark.URL, 40, experiment.StageRunning))
	benchTarget(b, base+"/", "customdomain.com")
	rt := p.table.Load().byKey["default/bench"]
	d := recorded(rt, roleDark)
	b.Logf("mirrored %d, dropped for inflight %d", d.Tallies[tallyMirrored], d.Tallies[tallyDropped+dropInflight])
}

// BenchmarkRecorderObserve is one observation in the slot of its end (the
// clock is read by the caller: ServeHTTP reads it once, as before slots).
func BenchmarkRecorderObserve(b *testing.B) {
	newRec := func() (*sketch.Recorder, time.Time) {
		now := time.Now()
		return sketch.NewRecorder(sketch.Grid{Origin: now, Width: sketch.SlotWidth(DefaultFlushInterval)}, 0), now
	}
	b.Run("serial", func(b *testing.B) {
		r, now := newRec()
		i := 0
		for b.Loop() {
			r.Observe(now, float64(i%500)+0.5, i%50 == 0)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		r, now := newRec()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				r.Observe(now, float64(i%500)+0.5, i%50 == 0)
				i++
			}
		})
	})
}

// BenchmarkPairJoin is the join of one mirrored request's two answers and
// the pair's record in its slot: the cost mirroring adds to a copy.
func BenchmarkPairJoin(b *testing.B) {
	rt := &route{rec: [2]*sketch.Recorder{
		sketch.NewRecorder(sketch.Grid{Origin: time.Now(), Width: time.Second}, 0),
		sketch.NewRecorder(sketch.Grid{Origin: time.Now(), Width: time.Second}, 0),
	}}
	rt.rec[roleDark].SetPairCap(pairCapMs(DefaultMirrorTimeout))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := newPair()
		c.dark(rt, 35, i%50 == 0, true)
		c.live(rt, 5, false, true)
		i++
	}
}

// discardWriter is a ResponseWriter that keeps nothing: BenchmarkServeHTTP
// counts the proxy's own allocations, not a recorder's.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkServeHTTP is the proxy's handler alone, called in-process for a
// GET to real live and dark servers on loopback: its allocations per
// proxied request ("live only": one request in 100,000 mirrored) and per
// mirrored request ("mirrored": every one), the copy's goroutine included.
// The backends run in this process, so their allocations are counted too:
// "backend alone" is one request to live with the forwarder's client, to
// subtract. The HTTP server's reading of the client's request is not in it
// (see BenchmarkProxy for the whole path).
func BenchmarkServeHTTP(b *testing.B) {
	hello := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello\n") }
	live, dark := httptest.NewServer(http.HandlerFunc(hello)), httptest.NewServer(http.HandlerFunc(hello))
	b.Cleanup(live.Close)
	b.Cleanup(dark.Close)
	b.Run("backend alone", func(b *testing.B) {
		pool := newH1Pool(live.Listener.Addr().String(), 4, 8<<10)
		defer pool.close()
		head := []byte("GET / HTTP/1.1\r\nHost: customdomain.com\r\n\r\n")
		b.ReportAllocs()
		for b.Loop() {
			c, err := pool.get(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			status, reuse, err := exchange(c, head, nil)
			if err != nil || status != 200 || !reuse {
				b.Fatalf("%d %v %v", status, reuse, err)
			}
			pool.put(c)
		}
	})
	for _, c := range []struct {
		name    string
		percent float64
	}{{"live only", 0.001}, {"mirrored", 100}} {
		b.Run(c.name, func(b *testing.B) {
			p, _ := newTestProxy(b, Config{}, nil)
			setup(b, p, routertest.Experiment("bench", "customdomain.com", live.URL, dark.URL, c.percent, experiment.StageRunning))
			r, err := http.NewRequest("GET", "http://customdomain.com/", nil)
			if err != nil {
				b.Fatal(err)
			}
			r.RemoteAddr, r.RequestURI = "127.0.0.1:40000", "/"
			ctx, cancel := context.WithCancel(context.Background()) // as a server's request has
			defer cancel()
			r = r.WithContext(ctx)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.status = 0
				p.ServeHTTP(w, r)
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
			b.StopTimer()
			rt := p.table.Load().byKey["default/bench"]
			waitIdle(b, rt)
			var mirrored int64
			for _, s := range rt.rec[roleDark].Flush(time.Time{}) {
				mirrored += s.Tallies[tallyMirrored]
			}
			b.ReportMetric(float64(mirrored)/float64(b.N), "mirrored/op")
		})
	}
}
