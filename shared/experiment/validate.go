package experiment

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/darklaunch/darklaunch/shared"
)

// Bounds on the document's numbers: generous for real use, tight enough that
// a typo (an extra zero or two) is caught instead of running for a month.
const (
	MaxIntervalSeconds   = 3600
	MaxIterationsPerLoop = 10000
	MaxLoops             = 100
	MaxTotalDuration     = 7 * 24 * time.Hour
	// MaxLoadRate is about what one loadgen sends from 2 cores: 81,000-119,000
	// req/s to a local server that costs next to nothing, 55,000-70,000 to a
	// Go net/http backend on the same 2 cores (as much as fortio), measured
	// in 2026-12 (services/loadgen BenchmarkTraffic, test/bench -only loadgen).
	MaxLoadRate        = 100000
	MaxLoadConcurrency = 10000
	MaxLoadTimeout     = 10 * time.Minute
)

// Supported values.
var (
	TestingPatterns    = []string{"Conformance"}
	DeploymentPatterns = []string{"FixedSplit", "Progressive", "BlueGreen"}
	ActionNames        = []string{"start", "loop", "finish", "rollback"}
	// Tasks maps "library/task" to what darklaunch does for it.
	Tasks = map[string]string{
		"knative/init-experiment": "check that the target is ready and serves the dark version before mirroring",
	}
	// DefaultMirrorMethods are mirrored unless spec.mirroring.methods says
	// otherwise: the idempotent ones, because a mirrored write is a
	// duplicated write.
	DefaultMirrorMethods = []string{"GET", "HEAD", "OPTIONS"}
	httpMethods          = []string{"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"}
)

// Default fills in what Iter8 defaults: the namespace, spec.duration and the
// baseline's name. It does not touch darklaunch's sections, whose defaults
// come from the services' configuration.
func (e *Experiment) Default() {
	if e.Metadata.Namespace == "" {
		e.Metadata.Namespace = DefaultNamespace
	}
	if e.Spec.Strategy.DeploymentPattern == "" {
		e.Spec.Strategy.DeploymentPattern = "Progressive"
	}
	if e.Spec.Duration == nil {
		e.Spec.Duration = &Duration{}
	}
	d := e.Spec.Duration
	if d.IntervalSeconds == nil {
		d.IntervalSeconds = ptr[int32](DefaultIntervalSeconds)
	}
	if d.IterationsPerLoop == nil {
		d.IterationsPerLoop = ptr[int32](DefaultIterationsPerLoop)
	}
	if d.MaxLoops == nil {
		d.MaxLoops = ptr[int32](DefaultMaxLoops)
	}
	if e.Spec.VersionInfo == nil {
		e.Spec.VersionInfo = &VersionInfo{}
	}
	if e.Spec.VersionInfo.Baseline.Name == "" {
		e.Spec.VersionInfo.Baseline.Name = DefaultBaselineName
	}
}

func ptr[T any](v T) *T { return &v }

// Validate returns every problem of the (defaulted) document, each with its
// field path, e.g. "spec.criteria.objectives[1].upperLimit: Invalid value".
func (e *Experiment) Validate() field.ErrorList {
	var errs field.ErrorList
	if e.APIVersion != APIVersionV2Alpha1 && e.APIVersion != APIVersionV2Alpha2 {
		if e.APIVersion == "" {
			errs = append(errs, field.Required(field.NewPath("apiVersion"), "want "+APIVersionV2Alpha1))
		} else {
			errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), e.APIVersion, []string{APIVersionV2Alpha1, APIVersionV2Alpha2}))
		}
	}
	if e.Kind != Kind {
		if e.Kind == "" {
			errs = append(errs, field.Required(field.NewPath("kind"), "want "+Kind))
		} else {
			errs = append(errs, field.NotSupported(field.NewPath("kind"), e.Kind, []string{Kind}))
		}
	}
	md := field.NewPath("metadata")
	errs = append(errs, validateLabel(md.Child("name"), e.Metadata.Name)...)
	errs = append(errs, validateLabel(md.Child("namespace"), e.Metadata.Namespace)...)

	spec := field.NewPath("spec")
	errs = append(errs, e.validateTarget(spec.Child("target"))...)
	errs = append(errs, validateStrategy(spec.Child("strategy"), &e.Spec.Strategy)...)
	errs = append(errs, validateCriteria(spec.Child("criteria"), e.Spec.Criteria)...)
	errs = append(errs, validateDuration(spec.Child("duration"), e.Spec.Duration)...)
	errs = append(errs, validateVersionInfo(spec.Child("versionInfo"), e.Spec.VersionInfo)...)
	if e.Spec.Mirroring != nil {
		errs = append(errs, validateMirroring(spec.Child("mirroring"), e.Spec.Mirroring)...)
	}
	if e.Spec.Load != nil {
		errs = append(errs, validateLoad(spec.Child("load"), e.Spec.Load)...)
	}
	return errs
}

// validateLabel checks a name that becomes a NATS subject token and a KV key:
// a DNS-1123 label (no dots, which would split the subject).
func validateLabel(p *field.Path, v string) field.ErrorList {
	if v == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(v) {
		errs = append(errs, field.Invalid(p, v, msg))
	}
	return errs
}

func (e *Experiment) validateTarget(p *field.Path) field.ErrorList {
	t := e.Spec.Target
	if t == "" {
		return field.ErrorList{field.Required(p, `the service under experiment, as "namespace/name"`)}
	}
	parts := strings.Split(t, "/")
	if len(parts) > 2 {
		return field.ErrorList{field.Invalid(p, t, `want "namespace/name" or "name"`)}
	}
	var errs field.ErrorList
	for _, part := range parts {
		for _, msg := range validation.IsDNS1123Label(part) {
			errs = append(errs, field.Invalid(p, t, fmt.Sprintf("%s: %s", shared.Excerpt(part), msg)))
		}
	}
	return errs
}

func validateStrategy(p *field.Path, s *Strategy) field.ErrorList {
	var errs field.ErrorList
	switch {
	case s.TestingPattern == "":
		errs = append(errs, field.Required(p.Child("testingPattern"), "darklaunch runs Conformance experiments"))
	case !slices.Contains(TestingPatterns, s.TestingPattern):
		errs = append(errs, field.NotSupported(p.Child("testingPattern"), s.TestingPattern, TestingPatterns))
	}
	if s.DeploymentPattern != "" && !slices.Contains(DeploymentPatterns, s.DeploymentPattern) {
		errs = append(errs, field.NotSupported(p.Child("deploymentPattern"), s.DeploymentPattern, DeploymentPatterns))
	}
	for name, tasks := range s.Actions {
		ap := p.Child("actions").Key(name)
		if !slices.Contains(ActionNames, name) {
			errs = append(errs, field.NotSupported(p.Child("actions"), name, ActionNames))
			continue
		}
		for i, t := range tasks {
			tp := ap.Index(i)
			if t.Library == "" {
				errs = append(errs, field.Required(tp.Child("library"), ""))
			}
			if t.Task == "" {
				errs = append(errs, field.Required(tp.Child("task"), ""))
			}
			if t.Library != "" && t.Task != "" {
				if _, ok := Tasks[t.Library+"/"+t.Task]; !ok {
					errs = append(errs, field.NotSupported(tp.Child("task"), t.Library+"/"+t.Task, keys(Tasks)))
				}
			}
		}
	}
	return errs
}

func validateCriteria(p *field.Path, c *Criteria) field.ErrorList {
	if c == nil || len(c.Objectives) == 0 {
		return field.ErrorList{field.Required(p.Child("objectives"), "a conformance experiment needs at least one objective")}
	}
	var errs field.ErrorList
	if c.RequestCount != "" {
		if _, ok := LookupMetric(c.RequestCount); !ok {
			errs = append(errs, field.NotSupported(p.Child("requestCount"), c.RequestCount, MetricNames()))
		}
	}
	for i, ind := range c.Indicators {
		if _, ok := LookupMetric(ind); !ok {
			errs = append(errs, field.NotSupported(p.Child("indicators").Index(i), ind, MetricNames()))
		}
	}
	errs = append(errs, validateConfidence(p, c)...)
	for i, o := range c.Objectives {
		op := p.Child("objectives").Index(i)
		switch {
		case o.Metric == "":
			errs = append(errs, field.Required(op.Child("metric"), ""))
		default:
			if _, ok := LookupMetric(o.Metric); !ok {
				errs = append(errs, field.NotSupported(op.Child("metric"), o.Metric, MetricNames()))
			}
		}
		errs = append(errs, validateReference(op, o)...)
		if o.UpperLimit == nil && o.LowerLimit == nil {
			errs = append(errs, field.Required(op.Child("upperLimit"), "an objective needs upperLimit, lowerLimit or both"))
			continue
		}
		okUpper := validateLimit(op.Child("upperLimit"), o.UpperLimit, o.Reference != "", &errs)
		okLower := validateLimit(op.Child("lowerLimit"), o.LowerLimit, o.Reference != "", &errs)
		if okUpper && okLower && o.UpperLimit != nil && o.LowerLimit != nil && o.LowerLimit.Cmp(o.UpperLimit.Quantity) > 0 {
			errs = append(errs, field.Invalid(op.Child("lowerLimit"), o.LowerLimit.String(), "must not be above upperLimit "+o.UpperLimit.String()))
		}
	}
	return errs
}

// validateLimit checks one limit; relative says that the objective names a
// reference, so that the limit is a ratio or a difference to live.
func validateLimit(p *field.Path, l *Limit, relative bool, errs *field.ErrorList) bool {
	if l == nil {
		return true
	}
	if bad, ok := l.Invalid(); ok {
		*errs = append(*errs, field.Invalid(p, bad, `must be a number or a quantity such as 50, "0.01" or 100m`))
		return false
	}
	if l.Sign() < 0 {
		why := "must not be negative: every metric is a count, a rate or a latency"
		if relative {
			why = `must not be negative: relative to live, a latency's limit is a ratio dark ÷ live ("1.10": at most 10 % slower) and error-rate's a difference dark − live ("0.005")`
		}
		// As a number, not the quantity's canonical form ("-10m" for "-0.01").
		*errs = append(*errs, field.Invalid(p, strconv.FormatFloat(l.Float64(), 'f', -1, 64), why))
		return false
	}
	return true
}

func validateDuration(p *field.Path, d *Duration) field.ErrorList {
	if d == nil {
		return nil
	}
	var errs field.ErrorList
	check := func(name string, v *int32, max int32) {
		if v != nil && (*v < 1 || *v > max) {
			errs = append(errs, field.Invalid(p.Child(name), *v, fmt.Sprintf("must be between 1 and %d", max)))
		}
	}
	check("intervalSeconds", d.IntervalSeconds, MaxIntervalSeconds)
	check("iterationsPerLoop", d.IterationsPerLoop, MaxIterationsPerLoop)
	check("maxLoops", d.MaxLoops, MaxLoops)
	if len(errs) == 0 && d.IntervalSeconds != nil && d.IterationsPerLoop != nil && d.MaxLoops != nil {
		total := time.Duration(*d.IntervalSeconds) * time.Second * time.Duration(*d.IterationsPerLoop) * time.Duration(*d.MaxLoops)
		if total > MaxTotalDuration {
			errs = append(errs, field.Invalid(p, total.String(), fmt.Sprintf("intervalSeconds × iterationsPerLoop × maxLoops must not exceed %s", MaxTotalDuration)))
		}
	}
	return errs
}

func validateVersionInfo(p *field.Path, v *VersionInfo) field.ErrorList {
	if v == nil {
		return nil
	}
	var errs field.ErrorList
	bp := p.Child("baseline")
	if v.Baseline.Name == "" {
		errs = append(errs, field.Required(bp.Child("name"), ""))
	}
	seen := map[string]bool{}
	for i, nv := range v.Baseline.Variables {
		vp := bp.Child("variables").Index(i)
		switch {
		case nv.Name == "":
			errs = append(errs, field.Required(vp.Child("name"), ""))
		case seen[nv.Name]:
			errs = append(errs, field.Duplicate(vp.Child("name"), nv.Name))
		}
		seen[nv.Name] = true
	}
	if len(v.Candidates) > 0 {
		errs = append(errs, field.Forbidden(p.Child("candidates"), "a conformance experiment judges the baseline (the dark version) alone"))
	}
	return errs
}

func validateMirroring(p *field.Path, m *Mirroring) field.ErrorList {
	var errs field.ErrorList
	if m.Host != "" {
		errs = append(errs, validateHost(p.Child("host"), m.Host)...)
	}
	if m.Percent != nil && !ValidPercent(*m.Percent) {
		errs = append(errs, field.Invalid(p.Child("percent"), *m.Percent, PercentRange))
	}
	errs = append(errs, validateURL(p.Child("liveURL"), m.LiveURL)...)
	errs = append(errs, validateURL(p.Child("darkURL"), m.DarkURL)...)
	if m.LiveURL != "" && m.LiveURL == m.DarkURL {
		errs = append(errs, field.Invalid(p.Child("darkURL"), m.DarkURL, "must differ from liveURL: the dark version cannot be the live one"))
	}
	if m.LiveRevision != "" {
		for _, msg := range validation.IsDNS1123Subdomain(m.LiveRevision) {
			errs = append(errs, field.Invalid(p.Child("liveRevision"), m.LiveRevision, msg))
		}
	}
	for i, meth := range m.Methods {
		if !slices.Contains(httpMethods, meth) {
			errs = append(errs, field.NotSupported(p.Child("methods").Index(i), meth, httpMethods))
		}
	}
	return errs
}

func validateLoad(p *field.Path, l *Load) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateURL(p.Child("url"), l.URL)...)
	if l.Host != "" {
		errs = append(errs, validateHost(p.Child("host"), l.Host)...)
	}
	if l.Method != "" && !slices.Contains(httpMethods, l.Method) {
		errs = append(errs, field.NotSupported(p.Child("method"), l.Method, httpMethods))
	}
	if l.Rate != nil && !(*l.Rate >= 0 && *l.Rate <= MaxLoadRate) {
		errs = append(errs, field.Invalid(p.Child("rate"), *l.Rate, fmt.Sprintf("requests per second must be between 0 and %d, about what one loadgen sends from 2 cores (0 sends nothing)", MaxLoadRate)))
	}
	if l.Concurrency != nil && (*l.Concurrency < 1 || *l.Concurrency > MaxLoadConcurrency) {
		errs = append(errs, field.Invalid(p.Child("concurrency"), *l.Concurrency, fmt.Sprintf("must be between 1 and %d", MaxLoadConcurrency)))
	}
	checkDur := func(name string, s *Seconds, min, max time.Duration, minIncl bool) {
		if s == nil {
			return
		}
		if bad, ok := s.Invalid(); ok {
			errs = append(errs, field.Invalid(p.Child(name), bad, `must be a duration such as "10s" or a number of seconds`))
			return
		}
		if s.Duration < min || (!minIncl && s.Duration == min) || s.Duration > max {
			op := ">"
			if minIncl {
				op = ">="
			}
			errs = append(errs, field.Invalid(p.Child(name), s.Duration.String(), fmt.Sprintf("must be %s %s and at most %s", op, min, max)))
		}
	}
	checkDur("delay", l.Delay, 0, MaxTotalDuration, true)
	checkDur("duration", l.Duration, 0, MaxTotalDuration, false)
	checkDur("timeout", l.Timeout, 0, MaxLoadTimeout, false)
	return errs
}

func validateHost(p *field.Path, h string) field.ErrorList {
	name := h
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		name = h[:i]
	}
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Subdomain(name) {
		errs = append(errs, field.Invalid(p, h, msg))
	}
	return errs
}

func validateURL(p *field.Path, s string) field.ErrorList {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return field.ErrorList{field.Invalid(p, s, "not a URL: "+err.Error())}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return field.ErrorList{field.Invalid(p, s, "want an http:// or https:// URL")}
	}
	if u.Host == "" {
		return field.ErrorList{field.Invalid(p, s, "the URL has no host")}
	}
	return nil
}

func keys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
