package proxy

import (
	"io"
	"net/http"
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
