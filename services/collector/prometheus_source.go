package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Defaults of the prometheus source.
const (
	// DefaultPrometheusURL is Prometheus as Istio's sample add-on installs it.
	DefaultPrometheusURL = "http://prometheus.istio-system:9090"
	// DefaultQueryTimeout bounds one PromQL query.
	DefaultQueryTimeout = 10 * time.Second
)

// PrometheusSource measures the versions of an experiment with PromQL
// queries, one per metric (Iter8 style: templates with $name, $namespace,
// $revision, ${elapsedTime}, ...), each evaluated at the end of the window
// over the experiment so far. Prometheus knows nothing of what the router
// mirrored or dropped, so its measurements have no mirror counts.
type PrometheusSource struct {
	api     v1.API
	address string
	metrics []MetricDefinition
	// histogram is the HistogramMetric definition, nil without one.
	histogram *MetricDefinition
	timeout   time.Duration
	log       *slog.Logger
}

var _ Source = (*PrometheusSource)(nil)

// NewPrometheusSource checks the address (an http or https URL) and the
// definitions; queryTimeout <= 0 takes DefaultQueryTimeout.
func NewPrometheusSource(address string, metrics []MetricDefinition, queryTimeout time.Duration, log *slog.Logger) (*PrometheusSource, error) {
	if err := checkPrometheusURL(address); err != nil {
		return nil, err
	}
	if err := ValidateMetrics(metrics); err != nil {
		return nil, fmt.Errorf("metric definitions: %w", err)
	}
	if queryTimeout <= 0 {
		queryTimeout = DefaultQueryTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rt := http.DefaultTransport.(*http.Transport).Clone()
	client, err := api.NewClient(api.Config{Address: address, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("prometheus client for %s: %w", address, err)
	}
	defs := make([]MetricDefinition, len(metrics))
	for i, d := range metrics {
		defs[i] = normalized(d)
	}
	defs, hist := splitHistogram(defs)
	return &PrometheusSource{
		api:       v1.NewAPI(downClient{client}),
		address:   address,
		metrics:   defs,
		histogram: hist,
		timeout:   queryTimeout,
		log:       log,
	}, nil
}

func checkPrometheusURL(address string) error {
	u, err := url.Parse(address)
	if err != nil {
		return fmt.Errorf("prometheus URL %q: %w", address, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("prometheus URL %q: want http(s)://host[:port][/path]", address)
	}
	return nil
}

// Open fixes what the queries of exp are about: the target namespace, the
// dark revision (the baseline's variable `revision`) and the live revision
// (the one the router reported in status.routing.live).
func (s *PrometheusSource) Open(_ context.Context, exp *experiment.Experiment) (Window, error) {
	if exp.Status.StartTime == nil {
		return nil, fmt.Errorf("experiment %s has not started (no status.startTime)", exp.Key())
	}
	ns, _ := exp.TargetNamespaceName()
	w := &promWindow{
		src:       s,
		log:       s.log.With("experiment", exp.Key()),
		start:     exp.Status.StartTime.UTC(),
		namespace: ns,
		versions:  map[string]promVersion{},
		levels:    newPromLevels(exp),
	}
	dark := promVersion{name: exp.BaselineName()}
	if rev, ok := exp.BaselineVariable(experiment.RevisionVariable); ok && rev != "" {
		dark.revision = rev
	} else {
		dark.noRevision = "the baseline has no variable `revision` (spec.versionInfo.baseline.variables)"
	}
	live := promVersion{name: experiment.LiveVersion}
	if r := exp.Status.Routing; r != nil && r.Live != "" {
		live.revision = r.Live
	} else {
		live.noRevision = "the router reported no live revision (status.routing.live)"
	}
	w.versions[bus.RoleDark], w.versions[bus.RoleLive] = dark, live
	return w, nil
}

// promVersion is what the queries of one role are about.
type promVersion struct {
	name       string
	revision   string
	noRevision string // why revision is unknown
}

type promWindow struct {
	src       *PrometheusSource
	log       *slog.Logger
	start     time.Time
	namespace string
	versions  map[string]promVersion
	levels    promLevels
	closed    atomic.Bool
}

// vars are the substitutions of role's queries for a window ending at end.
func (w *promWindow) vars(v promVersion, end time.Time) queryVars {
	elapsed := max(int64(math.Ceil(end.Sub(w.start).Seconds())), 1)
	qv := queryVars{
		values: map[string]string{
			"name":        v.name,
			"namespace":   w.namespace,
			"elapsedTime": strconv.FormatInt(elapsed, 10),
			"interval":    strconv.FormatInt(elapsed, 10) + "s",
		},
		missing: map[string]string{},
	}
	if v.revision != "" {
		qv.values[experiment.RevisionVariable] = v.revision
		qv.values["workload"] = v.revision + "-deployment"
	} else {
		qv.missing[experiment.RevisionVariable] = v.noRevision
		qv.missing["workload"] = v.noRevision
	}
	// The values go into PromQL string literals: a quote or a backslash in
	// one would change the query instead of selecting a series.
	for k, val := range qv.values {
		if strings.ContainsAny(val, "'\"`\\\n") {
			delete(qv.values, k)
			qv.missing[k] = fmt.Sprintf("%q cannot be put in a PromQL string", val)
		}
	}
	return qv
}

// promResult is the outcome of one metric's query.
type promResult struct {
	value  *float64
	reason string
	// sent: the query was sent (its template could be expanded).
	sent bool
	// down: Prometheus was not reached (no answer, or 502/503/504).
	down error
}

// Measure runs every metric's query at time end, in parallel so that a slow
// Prometheus costs one QueryTimeout, not one per metric. A query that fails
// or returns no single finite number makes that value unavailable, with the
// reason; Measure itself fails only when Prometheus was reached by no query
// at all, so that the clock retries.
func (w *promWindow) Measure(ctx context.Context, role string, end time.Time) (Measurement, error) {
	if w.closed.Load() {
		return Measurement{}, ErrClosed
	}
	v, ok := w.versions[role]
	if !ok {
		return Measurement{}, fmt.Errorf("role %q: want %q or %q", role, bus.RoleLive, bus.RoleDark)
	}
	vars := w.vars(v, end)
	m := Measurement{Values: map[string]*float64{}, Reasons: map[string]string{}}
	for _, name := range experiment.MetricNames() {
		m.Values[name] = nil
		m.Reasons[name] = "no query is defined for this metric in the prometheus source's metric definitions"
	}

	results := make([]promResult, len(w.src.metrics))
	var wg sync.WaitGroup
	for i, def := range w.src.metrics {
		query, err := expandQuery(def.Query, vars)
		if err != nil {
			results[i] = promResult{reason: err.Error()}
			continue
		}
		wg.Go(func() { results[i] = w.query(ctx, query, end) })
	}
	var hist histogramResult
	if w.src.histogram != nil {
		wg.Go(func() { hist = w.queryHistogram(ctx, vars, end) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Measurement{}, err
	}

	var down []error
	sent := 0
	for i, def := range w.src.metrics {
		r := results[i]
		if r.sent {
			sent++
		}
		if r.down != nil {
			down = append(down, r.down)
		}
		m.Values[def.Name] = r.value
		if r.value != nil {
			delete(m.Reasons, def.Name)
		} else {
			m.Reasons[def.Name] = r.reason
			w.log.Debug("metric unavailable", "role", role, "metric", def.Name, "reason", r.reason)
		}
	}
	if sent > 0 && len(down) == sent {
		return Measurement{}, fmt.Errorf("prometheus %s unreachable: %w", w.src.address, down[0])
	}
	m.Intervals = w.intervals(role, m.Values, hist)
	if role == bus.RoleDark {
		m.Needed = w.levels.needed(m.Values, m.Intervals, hist.hist)
	}
	return m, nil
}

// query runs one expanded query and maps its answer to a value or a reason.
func (w *promWindow) query(ctx context.Context, query string, end time.Time) promResult {
	qctx, cancel := context.WithTimeout(ctx, w.src.timeout)
	defer cancel()
	val, warnings, _, err := w.src.api.Query(qctx, query, end, v1.WithTimeout(w.src.timeout))
	if len(warnings) > 0 {
		w.log.Debug("prometheus warnings", "query", query, "warnings", warnings)
	}
	if err != nil {
		r := promResult{sent: true, reason: fmt.Sprintf("query failed: %v; query: %s", err, query)}
		var apiErr *v1.Error
		if !errors.As(err, &apiErr) {
			r.down = err
		}
		return r
	}
	x, why := singleValue(val)
	if why != "" {
		return promResult{sent: true, reason: fmt.Sprintf("no value: %s; query: %s", why, query)}
	}
	return promResult{sent: true, value: &x}
}

// singleValue is the one finite number of a query's answer, or why there is
// none. NaN (0/0: no request in the window) and ±Inf are not values: an
// objective on them must be "unavailable", neither passed nor failed by
// accident of a comparison.
func singleValue(v model.Value) (float64, string) {
	var x float64
	switch r := v.(type) {
	case *model.Scalar:
		x = float64(r.Value)
	case model.Vector:
		switch len(r) {
		case 0:
			return 0, "empty result (no series matched)"
		case 1:
			x = float64(r[0].Value)
		default:
			series := make([]string, 0, len(r))
			for _, s := range r {
				series = append(series, s.Metric.String())
			}
			slices.Sort(series)
			return 0, fmt.Sprintf("%d series where one is wanted (aggregate them, e.g. with sum): %s", len(r), strings.Join(series, ", "))
		}
	case nil:
		return 0, "empty result"
	default:
		return 0, fmt.Sprintf("a %s where an instant vector or a scalar is wanted", v.Type())
	}
	switch {
	case math.IsNaN(x):
		return 0, "NaN (e.g. 0/0: no request in the window)"
	case math.IsInf(x, 0):
		return 0, fmt.Sprintf("%v", x)
	}
	return x, ""
}

// Close makes later measurements fail with ErrClosed.
func (w *promWindow) Close() error {
	w.closed.Store(true)
	return nil
}

// downClient makes the answers of a Prometheus that is not there (502, 503
// or 504, from it while it starts or from a proxy in front of it) transport
// errors, like a refused connection: the clock retries those, whereas a
// query Prometheus rejects (400, 422, 500) fails only its own metric.
type downClient struct{ api.Client }

func (c downClient) Do(ctx context.Context, req *http.Request) (*http.Response, []byte, error) {
	resp, body, err := c.Client.Do(ctx, req)
	if err == nil && resp != nil {
		switch resp.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			msg := resp.Status
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(body, &e) == nil && e.Error != "" {
				msg += ": " + e.Error
			}
			return resp, body, fmt.Errorf("prometheus answered %s", msg)
		}
	}
	return resp, body, err
}
