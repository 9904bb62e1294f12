package loadgen

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/shared/telemetry"
)

// promMetrics are loadgen's Prometheus metrics, over every experiment it
// sends traffic for (the per-experiment figures are in its load events).
type promMetrics struct {
	ok, failed, canceledN prometheus.Counter
	duration              prometheus.Histogram
	active                prometheus.Gauge
}

func newPromMetrics(reg prometheus.Registerer) (*promMetrics, error) {
	r := &telemetry.Registrar{Reg: reg}
	requests := telemetry.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "darklaunch_loadgen_requests_total",
		Help: "Requests loadgen completed, by result (ok: a 2xx answer; failed: another status, a timeout or a transport error; canceled: in flight when the traffic stopped).",
	}, []string{"result"}))
	m := &promMetrics{
		duration: telemetry.Add(r, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "darklaunch_loadgen_request_duration_seconds",
			Help:    "Latency of loadgen's requests, measured from the time each was due (no coordinated omission).",
			Buckets: prometheus.DefBuckets,
		})),
		active: telemetry.Add(r, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "darklaunch_loadgen_active_traffics",
			Help: "Experiments loadgen is sending traffic for now.",
		})),
	}
	// Read when scraped, nothing on the hot path: the CPU per request is
	// rate(darklaunch_loadgen_cpu_seconds_total[1m]) / rate(darklaunch_loadgen_requests_total[1m]).
	telemetry.Add(r, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "darklaunch_loadgen_cpu_seconds_total",
		Help: "CPU time (user and system) of the process loadgen runs in; divided by the rate of darklaunch_loadgen_requests_total, the CPU per request (in the embedded stack the other services' CPU is in it too).",
	}, func() float64 {
		cpu, _ := processCPU()
		return cpu.Seconds()
	}))
	if r.Err != nil {
		return nil, r.Err
	}
	m.ok, m.failed, m.canceledN = requests.WithLabelValues("ok"), requests.WithLabelValues("failed"), requests.WithLabelValues("canceled")
	return m, nil
}

// request records one completed request.
func (m *promMetrics) request(seconds float64, ok bool) {
	if ok {
		m.ok.Inc()
	} else {
		m.failed.Inc()
	}
	m.duration.Observe(seconds)
}

// canceled counts a request cut short by the traffic's stop.
func (m *promMetrics) canceled() { m.canceledN.Inc() }
