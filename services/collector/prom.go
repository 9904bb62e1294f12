package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/telemetry"
)

// Results of darklaunch_collector_snapshots_total.
const (
	resultOK          = "ok"          // the source answered (some values may still be unavailable)
	resultUnavailable = "unavailable" // the source failed: every value unavailable
)

// promMetrics are the collector's Prometheus metrics.
type promMetrics struct {
	snapshots   *prometheus.CounterVec
	unavailable *prometheus.CounterVec
	duration    prometheus.Histogram
	clocks      prometheus.Gauge
	late        *prometheus.CounterVec
}

func newPromMetrics(reg prometheus.Registerer, source string) (*promMetrics, error) {
	constLabels := prometheus.Labels{"source": source}
	r := &telemetry.Registrar{Reg: reg}
	m := &promMetrics{
		snapshots: telemetry.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "darklaunch_collector_snapshots_total",
			Help:        "Snapshots the collector published, by role and result (ok: the source answered; unavailable: it failed, every value unavailable).",
			ConstLabels: constLabels,
		}, []string{"role", "result"})),
		unavailable: telemetry.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "darklaunch_collector_unavailable_values_total",
			Help:        "Metric values published as unavailable (no data, NaN, several series, or a failed source), by metric: an objective on them is false.",
			ConstLabels: constLabels,
		}, []string{"metric"})),
		duration: telemetry.Add(r, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "darklaunch_collector_measure_duration_seconds",
			Help:        "Time to measure one role of one iteration, retries included (Prometheus queries, or catching up with the observations).",
			ConstLabels: constLabels,
			Buckets:     prometheus.DefBuckets,
		})),
		clocks: telemetry.Add(r, prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "darklaunch_collector_clocks",
			Help:        "Experiments the collector is measuring now.",
			ConstLabels: constLabels,
		})),
		late: telemetry.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "darklaunch_collector_late_observations_total",
			Help:        "Requests observed by the proxy whose batch arrived after their iteration was measured (later than the grace), by role: counted from the next iteration on.",
			ConstLabels: constLabels,
		}, []string{"role"})),
	}
	return m, r.Err
}

// published counts a snapshot the stream accepted.
func (m *promMetrics) published(snap *bus.Snapshot, sourceFailed bool) {
	result := resultOK
	if sourceFailed {
		result = resultUnavailable
	}
	m.snapshots.WithLabelValues(snap.Role, result).Inc()
	for name, v := range snap.Values {
		if v == nil {
			m.unavailable.WithLabelValues(name).Inc()
		}
	}
}
