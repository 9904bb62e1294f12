package loadgen

import (
	"math"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestTrafficRateWithinOnePercent: a running experiment's traffic at
// 2,500 req/s for 2 s (loadgen on a real nats-server, the experiment from
// the state bucket) sends the schedule's 5,000 requests within 1 %, all
// answered, reports an achieved rate within 1 % of the target, and the CPU
// its process spent per request.
func TestTrafficRateWithinOnePercent(t *testing.T) {
	t.Parallel()
	const rate, window = 2500.0, 2 * time.Second
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	e := newEnv(t)
	s := e.start(t, Config{})
	exp := running("fast", time.Now(), 10, &experiment.Load{
		URL: srv.URL, Rate: ptr(rate), Concurrency: ptr(int32(16)), Delay: experiment.Sec(0), Duration: experiment.Sec(window),
	})
	e.create(t, exp)
	events := e.waitDone(t, exp, 15*time.Second)
	final := events[len(events)-1].ev.Load

	const want = rate * 2
	if math.Abs(float64(final.Sent)-want) > want/100 {
		t.Errorf("sent %d, want %v ± 1 %%", final.Sent, want)
	}
	if final.Succeeded != final.Sent || served.Load() != final.Sent {
		t.Errorf("sent %d, succeeded %d, served %d: want every one", final.Sent, final.Succeeded, served.Load())
	}
	if math.Abs(final.AchievedRate-rate) > rate/100 {
		t.Errorf("achieved rate %.1f, want %v ± 1 %%", final.AchievedRate, rate)
	}
	// Tests of this package run in parallel in one process, whose CPU it
	// is: a figure, not its value.
	if !(final.CPUPerRequestUs > 0) {
		t.Errorf("CPU per request %v µs, want it reported", final.CPUPerRequestUs)
	}
	if cpu, err := testutil.GatherAndCount(s.cfg.Registry, "darklaunch_loadgen_cpu_seconds_total"); err != nil || cpu != 1 {
		t.Errorf("darklaunch_loadgen_cpu_seconds_total: %d series, %v", cpu, err)
	}
}
