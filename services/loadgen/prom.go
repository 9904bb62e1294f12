package loadgen

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/shared/telemetry"
)

// promMetrics are loadgen's Prometheus metrics, over every experiment it
// sends traffic for (the per-experiment figures are in its load events).
type promMetrics struct {
	requests *prometheus.CounterVec
	duration prometheus.Histogram
	active   prometheus.Gauge
}

func newPromMetrics(reg prometheus.Registerer) (*promMetrics, error) {
	r := &telemetry.Registrar{Reg: reg}
	m := &promMetrics{
		requests: telemetry.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "darklaunch_loadgen_requests_total",
			Help: "Requests loadgen completed, by result (ok: a 2xx answer; failed: another status, a timeout or a transport error; canceled: in flight when the traffic stopped).",
		}, []string{"result"})),
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
	return m, r.Err
}

// request records one completed request.
func (m *promMetrics) request(seconds float64, ok bool) {
	result := "failed"
	if ok {
		result = "ok"
	}
	m.requests.WithLabelValues(result).Inc()
	m.duration.Observe(seconds)
}

// canceled counts a request cut short by the traffic's stop.
func (m *promMetrics) canceled() { m.requests.WithLabelValues("canceled").Inc() }
