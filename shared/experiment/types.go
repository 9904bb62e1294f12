// Package experiment is the experiment document: the Iter8 v2 Experiment
// (iter8.tools/v2alpha1) that darklaunch accepts verbatim, darklaunch's own
// optional sections (spec.mirroring, spec.load), the status the judge keeps,
// and the decoding, defaulting and validation every service relies on.
package experiment

import (
	"time"
)

// API versions and kind accepted for the document.
const (
	APIVersionV2Alpha1 = "iter8.tools/v2alpha1"
	APIVersionV2Alpha2 = "iter8.tools/v2alpha2"
	Kind               = "Experiment"
)

// Iter8 defaults for spec.duration.
const (
	DefaultIntervalSeconds   = 20
	DefaultIterationsPerLoop = 15
	DefaultMaxLoops          = 1
	DefaultNamespace         = "default"
	DefaultBaselineName      = "current"
)

// Experiment is one dark-launch experiment: what to mirror, how to load it,
// what to judge, and (in Status) how far it got.
type Experiment struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       Spec     `json:"spec"`
	Status     Status   `json:"status"`
}

// Metadata is the subset of Kubernetes object metadata darklaunch uses. UID
// is set by the judge on creation and tells two runs of one name apart.
type Metadata struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace,omitempty"`
	UID               string            `json:"uid,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	CreationTimestamp *time.Time        `json:"creationTimestamp,omitempty"`
	Generation        int64             `json:"generation,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
}

// Spec is the Iter8 experiment spec plus darklaunch's optional sections.
type Spec struct {
	// Target is "namespace/name" of the service under experiment.
	Target      string       `json:"target"`
	Strategy    Strategy     `json:"strategy"`
	Criteria    *Criteria    `json:"criteria,omitempty"`
	Duration    *Duration    `json:"duration,omitempty"`
	VersionInfo *VersionInfo `json:"versionInfo,omitempty"`
	// Mirroring (darklaunch) says what to mirror where. Absent fields come
	// from the router's configuration.
	Mirroring *Mirroring `json:"mirroring,omitempty"`
	// Load (darklaunch) says what traffic loadgen sends. Absent fields come
	// from the loadgen's configuration.
	Load *Load `json:"load,omitempty"`
}

// Strategy is Iter8's spec.strategy.
type Strategy struct {
	TestingPattern    string            `json:"testingPattern"`
	DeploymentPattern string            `json:"deploymentPattern,omitempty"`
	Actions           map[string][]Task `json:"actions,omitempty"`
}

// Task is one Iter8 handler task, such as knative/init-experiment.
type Task struct {
	Library string         `json:"library"`
	Task    string         `json:"task"`
	With    map[string]any `json:"with,omitempty"`
}

// Criteria is Iter8's spec.criteria.
type Criteria struct {
	RequestCount string      `json:"requestCount,omitempty"`
	Indicators   []string    `json:"indicators,omitempty"`
	Objectives   []Objective `json:"objectives,omitempty"`
	// Confidence (darklaunch), in (0.5, 1), makes each objective's outcome
	// satisfied, violated or inconclusive by its confidence interval, and
	// the verdict PASS, FAIL or INCONCLUSIVE (docs/statistics.md). Absent,
	// objectives are judged on their values as Iter8 does; the intervals
	// are still computed, at DefaultConfidence, and reported.
	Confidence *float64 `json:"confidence,omitempty"`
	// StopEarly (darklaunch, needs Confidence) judges after every iteration
	// with anytime-valid confidence sequences and completes the experiment
	// as soon as the verdict is conclusive.
	StopEarly bool `json:"stopEarly,omitempty"`
}

// DefaultConfidence is the level of the intervals reported when
// spec.criteria.confidence is absent.
const DefaultConfidence = 0.95

// ReferenceLive is the one reference an objective may name: its limit is
// then relative to the live version (a ratio dark ÷ live for latencies, a
// difference dark − live for error-rate).
const ReferenceLive = "live"

// Objective bounds one metric of the version under test. A limit is a
// Kubernetes quantity: 50, "0.01" and 100m are all valid.
type Objective struct {
	Metric     string `json:"metric"`
	UpperLimit *Limit `json:"upperLimit,omitempty"`
	LowerLimit *Limit `json:"lowerLimit,omitempty"`
	// Reference (darklaunch) is empty or ReferenceLive.
	Reference string `json:"reference,omitempty"`
}

// Duration is Iter8's spec.duration. Nil fields take the Iter8 defaults.
type Duration struct {
	IntervalSeconds   *int32 `json:"intervalSeconds,omitempty"`
	IterationsPerLoop *int32 `json:"iterationsPerLoop,omitempty"`
	MaxLoops          *int32 `json:"maxLoops,omitempty"`
}

// VersionInfo is Iter8's spec.versionInfo. In a conformance experiment with
// mirrored traffic the baseline is the dark version.
type VersionInfo struct {
	Baseline   VersionDetail   `json:"baseline"`
	Candidates []VersionDetail `json:"candidates,omitempty"`
}

// VersionDetail names a version and its variables (e.g. revision).
type VersionDetail struct {
	Name      string       `json:"name"`
	Variables []NamedValue `json:"variables,omitempty"`
}

// NamedValue is a name/value pair.
type NamedValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Stage is Iter8's experiment stage.
type Stage string

// Iter8's stages. A failed experiment ends Completed with the Failed
// condition true, as in Iter8.
const (
	StageWaiting      Stage = "Waiting"
	StageInitializing Stage = "Initializing"
	StageRunning      Stage = "Running"
	StageFinishing    Stage = "Finishing"
	StageCompleted    Stage = "Completed"
)

// Condition types.
const (
	ConditionCompleted      = "Completed"
	ConditionFailed         = "Failed"
	ConditionTargetAcquired = "TargetAcquired"
)

// Reasons, as Iter8 writes them in status.message ("<Reason>: <text>").
const (
	ReasonExperimentInitialized = "ExperimentInitialized"
	ReasonTargetAcquired        = "TargetAcquired"
	ReasonIterationUpdate       = "IterationUpdate"
	ReasonExperimentCompleted   = "ExperimentCompleted"
	ReasonMetricUnavailable     = "MetricUnavailable"
	ReasonAnalyticsError        = "AnalyticsServiceError"
	ReasonHandlerFailed         = "HandlerFailed"
	ReasonInvalidExperiment     = "InvalidExperiment"
	ReasonExperimentDeleted     = "ExperimentDeleted"
)

// Status is what the judge knows of an experiment.
type Status struct {
	Stage               Stage       `json:"stage,omitempty"`
	Message             string      `json:"message,omitempty"`
	Conditions          []Condition `json:"conditions,omitempty"`
	InitTime            *time.Time  `json:"initTime,omitempty"`
	StartTime           *time.Time  `json:"startTime,omitempty"`
	EndTime             *time.Time  `json:"endTime,omitempty"`
	CompletedIterations int32       `json:"completedIterations"`
	// RecommendedBaseline is Iter8 v2alpha1's field: the baseline's name
	// once the experiment completed.
	RecommendedBaseline string    `json:"recommendedBaseline,omitempty"`
	Analysis            *Analysis `json:"analysis,omitempty"`
	// Routing records what the router set up (proxy host, VirtualServices).
	Routing *RoutingStatus `json:"routing,omitempty"`
	// Load is the last progress loadgen reported.
	Load *LoadStatus `json:"load,omitempty"`
	// Loss is what the judge knows of observations lost (see loss.go).
	Loss *ObservationLoss `json:"loss,omitempty"`
	// LiveCounts are the live request-counts of the last few live
	// snapshots measured from the proxy's observations, for comparison
	// with loadgen's Load.Window (which may be of an earlier iteration).
	LiveCounts []WindowCount `json:"liveCounts,omitempty"`
}

// Condition is a Kubernetes-style condition.
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
}

// Analysis is the judge's assessment after the last completed iteration.
type Analysis struct {
	// AggregatedMetrics maps metric name, then version name, to its value;
	// nil means unavailable.
	AggregatedMetrics map[string]map[string]*float64 `json:"aggregatedMetrics,omitempty"`
	// VersionAssessments maps a version name to one bool per objective, in
	// the order of spec.criteria.objectives.
	VersionAssessments map[string][]bool `json:"versionAssessments,omitempty"`
	WinnerAssessment   WinnerAssessment  `json:"winnerAssessment"`
	Objectives         []ObjectiveResult `json:"objectives,omitempty"`
	// AggregatedIntervals (darklaunch) maps metric name, then version name,
	// to the value's confidence interval, where the data allows one.
	AggregatedIntervals map[string]map[string]*Interval `json:"aggregatedIntervals,omitempty"`
	// Outcome (darklaunch) is the verdict on the last completed iteration:
	// VerdictPass, VerdictFail or VerdictInconclusive.
	Outcome string `json:"outcome,omitempty"`
	// StoppedEarly (darklaunch, spec.criteria.stopEarly): the verdict was
	// conclusive before the last iteration, and the experiment completed
	// there.
	StoppedEarly bool               `json:"stoppedEarly,omitempty"`
	Mirror       *MirrorStats       `json:"mirror,omitempty"`
	Versions     map[string]Version `json:"versions,omitempty"`
}

// Version says which role a version name of the analysis plays.
type Version struct {
	Role string `json:"role"` // RoleDark or RoleLive
}

// WinnerAssessment is Iter8's winner assessment.
type WinnerAssessment struct {
	WinnerFound bool   `json:"winnerFound"`
	Winner      string `json:"winner,omitempty"`
}

// MirrorStats counts what the router mirrored and dropped.
type MirrorStats struct {
	Mirrored int64            `json:"mirrored"`
	Dropped  map[string]int64 `json:"dropped,omitempty"`
}

// RoutingStatus is what the router reported when it set up mirroring.
type RoutingStatus struct {
	Backend string   `json:"backend"`
	Host    string   `json:"host,omitempty"`
	Percent float64  `json:"percent,omitempty"`
	Live    string   `json:"live,omitempty"`
	Dark    string   `json:"dark,omitempty"`
	Objects []string `json:"objects,omitempty"`
}

// LoadStatus is loadgen's last progress report.
type LoadStatus struct {
	Sent         int64   `json:"sent"`
	Succeeded    int64   `json:"succeeded"`
	Failed       int64   `json:"failed"`
	Canceled     int64   `json:"canceled,omitempty"`
	AchievedRate float64 `json:"achievedRate"`
	// Answered and Window: see bus.LoadProgress.
	Answered int64        `json:"answered,omitempty"`
	Window   *WindowCount `json:"window,omitempty"`
	// Shares are the latest reports of each loadgen instance, by
	// instance, when several shared the rate (each counts its own share
	// of the requests); the counts above are then their sum. Instance is
	// the instance whose report the counts are, when they are one's.
	Shares   map[string]LoadShare `json:"shares,omitempty"`
	Instance string               `json:"instance,omitempty"`
}

// LoadShare is one loadgen instance's latest report, when several share
// the experiment's rate. Window.Iteration is 0 before its first window.
type LoadShare struct {
	Sent         int64       `json:"sent"`
	Succeeded    int64       `json:"succeeded"`
	Failed       int64       `json:"failed"`
	Canceled     int64       `json:"canceled,omitempty"`
	AchievedRate float64     `json:"achievedRate"`
	Answered     int64       `json:"answered,omitempty"`
	Window       WindowCount `json:"window"`
}

// Key is "namespace/name".
func (e *Experiment) Key() string { return e.Metadata.Namespace + "/" + e.Metadata.Name }

// IntervalSeconds returns spec.duration.intervalSeconds or its default.
func (e *Experiment) IntervalSeconds() int32 {
	if d := e.Spec.Duration; d != nil && d.IntervalSeconds != nil {
		return *d.IntervalSeconds
	}
	return DefaultIntervalSeconds
}

// Interval is IntervalSeconds as a time.Duration.
func (e *Experiment) Interval() time.Duration {
	return time.Duration(e.IntervalSeconds()) * time.Second
}

// TotalIterations is iterationsPerLoop × maxLoops.
func (e *Experiment) TotalIterations() int32 {
	iter, loops := int32(DefaultIterationsPerLoop), int32(DefaultMaxLoops)
	if d := e.Spec.Duration; d != nil {
		if d.IterationsPerLoop != nil {
			iter = *d.IterationsPerLoop
		}
		if d.MaxLoops != nil {
			loops = *d.MaxLoops
		}
	}
	return iter * loops
}

// BaselineName is the name of the version under test (the dark version).
func (e *Experiment) BaselineName() string {
	if e.Spec.VersionInfo != nil && e.Spec.VersionInfo.Baseline.Name != "" {
		return e.Spec.VersionInfo.Baseline.Name
	}
	return DefaultBaselineName
}

// BaselineVariable returns the value of the baseline's variable name.
func (e *Experiment) BaselineVariable(name string) (string, bool) {
	if e.Spec.VersionInfo == nil {
		return "", false
	}
	for _, v := range e.Spec.VersionInfo.Baseline.Variables {
		if v.Name == name {
			return v.Value, true
		}
	}
	return "", false
}

// TargetNamespaceName splits spec.target; a target without a namespace is in
// the experiment's namespace.
func (e *Experiment) TargetNamespaceName() (namespace, name string) {
	for i := 0; i < len(e.Spec.Target); i++ {
		if e.Spec.Target[i] == '/' {
			return e.Spec.Target[:i], e.Spec.Target[i+1:]
		}
	}
	return e.Metadata.Namespace, e.Spec.Target
}

// Terminal reports whether the experiment has ended (completed or failed).
func (s *Status) Terminal() bool { return s.Stage == StageCompleted }

// Failed reports whether the Failed condition is true.
func (s *Status) Failed() bool {
	c := s.Condition(ConditionFailed)
	return c != nil && c.Status == "True"
}

// Condition returns the condition of type t, or nil.
func (s *Status) Condition(t string) *Condition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == t {
			return &s.Conditions[i]
		}
	}
	return nil
}

// SetCondition sets the condition of type t, keeping LastTransitionTime when
// the status does not change.
func (s *Status) SetCondition(t, status, reason, message string, now time.Time) {
	if c := s.Condition(t); c != nil {
		if c.Status != status {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message = status, reason, message
		return
	}
	s.Conditions = append(s.Conditions, Condition{Type: t, Status: status, Reason: reason, Message: message, LastTransitionTime: now})
}

// Passed reports whether the experiment completed with the baseline meeting
// every objective.
func (e *Experiment) Passed() bool {
	st := &e.Status
	return st.Terminal() && !st.Failed() && st.Analysis != nil && st.Analysis.WinnerAssessment.WinnerFound
}
