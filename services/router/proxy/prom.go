package proxy

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/telemetry"
)

// Code classes of darklaunch_proxy_requests_total: the status class;
// "error" when no whole response came (transport error, timeout, a body cut
// off); "canceled" when the client went away first (Envoy's 499), which says
// nothing about the version.
const (
	classError    = 0
	classCanceled = 6
)

func codeClass(status int) int {
	if status >= 100 && status < 600 {
		return status / 100
	}
	return classError
}

var classNames = [7]string{"error", "1xx", "2xx", "3xx", "4xx", "5xx", "canceled"}

// Role indexes for per-route counters and recorders.
const (
	roleLive = iota
	roleDark
)

var roleNames = [2]string{bus.RoleLive, bus.RoleDark}

// promMetrics are the proxy's Prometheus counters: what an operator scrapes,
// next to the observations on the bus that the judge uses.
type promMetrics struct {
	requests *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	routes   prometheus.GaugeFunc // set by New, which owns the table it reads
}

func newPromMetrics(reg *prometheus.Registry) (*promMetrics, error) {
	r := &telemetry.Registrar{Reg: reg}
	m := &promMetrics{
		requests: telemetry.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "darklaunch_proxy_requests_total",
			Help: "Requests the darklaunch proxy completed, by experiment, role (live: the client's request; dark: the mirrored copy) and status class (error: no response).",
		}, []string{"experiment", "role", "code_class"})),
		dropped: telemetry.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "darklaunch_mirror_dropped_total",
			Help: "Copies the darklaunch proxy did not send to the dark version, by experiment and reason (inflight: too many copies in flight; body: request body too large; method: method not mirrored; upgrade: protocol upgrade such as WebSocket, never mirrored).",
		}, []string{"experiment", "reason"})),
	}
	return m, r.Err
}

// routeCounters are one experiment's counters, resolved once so the hot
// path pays an atomic add, not a label lookup.
type routeCounters struct {
	vec      *prometheus.CounterVec
	exp      string
	requests [2][len(classNames)]atomic.Pointer[prometheus.Counter]
	dropped  [len(dropReasons)]prometheus.Counter
}

func (m *promMetrics) forExperiment(exp string) *routeCounters {
	rc := &routeCounters{vec: m.requests, exp: exp}
	for i, reason := range dropReasons {
		// Created up front: a zero says "nothing dropped", which is news.
		rc.dropped[i] = m.dropped.WithLabelValues(exp, reason)
	}
	return rc
}

// remove deletes the experiment's series: a router that runs experiment
// after experiment exports only the ones it is routing. Call it once the
// route has served its last request and copy.
func (m *promMetrics) remove(exp string) {
	l := prometheus.Labels{"experiment": exp}
	m.requests.DeletePartialMatch(l)
	m.dropped.DeletePartialMatch(l)
}

// request counts one completed request. A class's series is created on
// first use, so a scrape shows only classes that occurred.
func (rc *routeCounters) request(role, class int) {
	slot := &rc.requests[role][class]
	c := slot.Load()
	if c == nil {
		counter := rc.vec.WithLabelValues(rc.exp, roleNames[role], classNames[class])
		slot.Store(&counter)
		c = &counter
	}
	(*c).Inc()
}
