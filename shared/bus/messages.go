package bus

import (
	"time"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Version roles, as snapshots and observation batches name them (see
// experiment.RoleDark and RoleLive).
const (
	RoleDark = experiment.RoleDark
	RoleLive = experiment.RoleLive
)

// Event is one fact about one experiment, published on
// darklaunch.events.<ns>.<name>.<type>. Exactly the field matching Type is
// set, besides the envelope.
type Event struct {
	Type      string    `json:"type"`
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       string    `json:"uid"`
	Time      time.Time `json:"time"`
	// Source is the service that published the event.
	Source  string `json:"source"`
	Message string `json:"message,omitempty"`

	Routing   *Routing      `json:"routing,omitempty"`
	Load      *LoadProgress `json:"load,omitempty"`
	Snapshot  *Snapshot     `json:"snapshot,omitempty"`
	Iteration *Iteration    `json:"iteration,omitempty"`
	Verdict   *Verdict      `json:"verdict,omitempty"`
	// Experiment is the whole document and status, on created, completed,
	// failed and deleted events.
	Experiment *experiment.Experiment `json:"experiment,omitempty"`
}

// Subject is the event's subject.
func (e *Event) Subject() string { return EventSubject(e.Namespace, e.Name, e.Type) }

// NewEvent starts an event of type typ about exp.
func NewEvent(typ, source string, exp *experiment.Experiment, now time.Time) *Event {
	return &Event{
		Type:      typ,
		Namespace: exp.Metadata.Namespace,
		Name:      exp.Metadata.Name,
		UID:       exp.Metadata.UID,
		Time:      now.UTC(),
		Source:    source,
	}
}

// Routing is the router's answer to a new experiment: mirroring is set up
// (Ready) or cannot be (Reason says why).
type Routing struct {
	Ready  bool                     `json:"ready"`
	Reason string                   `json:"reason,omitempty"`
	Status experiment.RoutingStatus `json:"status"`
}

// LoadProgress is loadgen's report for one interval, with totals since the
// traffic started. Latencies are measured from each request's intended send
// time (no coordinated omission), in milliseconds.
type LoadProgress struct {
	Sent      int64 `json:"sent"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	// Canceled were in flight when the traffic stopped: cut short by
	// loadgen itself, neither succeeded nor failed.
	Canceled     int64   `json:"canceled,omitempty"`
	AchievedRate float64 `json:"achievedRate"`
	TargetRate   float64 `json:"targetRate"`
	P50Ms        float64 `json:"p50Ms"`
	P95Ms        float64 `json:"p95Ms"`
	P99Ms        float64 `json:"p99Ms"`
	Done         bool    `json:"done,omitempty"`
	// Answered counts the requests that got an HTTP answer (any status)
	// that the proxy did not make up for want of a route; Window those of
	// them answered before the end of the last iteration that ended before
	// this report, for comparison with the live request-count of that
	// iteration (ObservationLoss). Totals survive a restart of loadgen: it
	// resumes from the last report the judge stored (status.load).
	Answered int64                   `json:"answered,omitempty"`
	Window   *experiment.WindowCount `json:"window,omitempty"`
	// CPUPerRequestUs is the CPU time (user and system) loadgen's process
	// used since the traffic started, in microseconds per request it sent
	// meanwhile; 0 where the system does not tell.
	CPUPerRequestUs float64 `json:"cpuPerRequestUs,omitempty"`
	// Instance is the loadgen instance that reports, and Instances how many
	// shared the traffic's rate when it reported (shared/members; 0 or 1:
	// it sent the whole rate alone). With more than one, each reports the
	// counts of its own share of the requests, which add up: the traffic's
	// are the sum of every instance's latest report. TargetRate is still
	// the experiment's rate, which they share; AchievedRate this one's.
	Instance  string `json:"instance,omitempty"`
	Instances int32  `json:"instances,omitempty"`
}

// HeaderUnrouted marks the answers the router's proxy makes up itself when
// no experiment mirrors the request's Host: no version saw the request, so
// loadgen does not count it among the answered ones (LoadProgress).
const HeaderUnrouted = "Darklaunch-Unrouted"

// Snapshot is the collector's measurement of one version at the end of one
// iteration: each value covers the window from the experiment's start to End
// (Iter8 semantics). A nil value is unavailable.
type Snapshot struct {
	Iteration int32               `json:"iteration"`
	Role      string              `json:"role"`
	Version   string              `json:"version"`
	Start     time.Time           `json:"start"`
	End       time.Time           `json:"end"`
	Source    string              `json:"source"`
	Values    map[string]*float64 `json:"values"`
	// Mirror counts what the proxy mirrored and dropped (dark, local mode).
	Mirror *experiment.MirrorStats `json:"mirror,omitempty"`
	// Errors explains unavailable values ("query failed: ...").
	Errors map[string]string `json:"errors,omitempty"`
	// Intervals holds a confidence interval per metric of Values, where the
	// data allows one (docs/statistics.md).
	Intervals map[string]*experiment.Interval `json:"intervals,omitempty"`
	// Needed says, for the objectives whose interval is inconclusive, how
	// many more requests of this version would make them conclusive if the
	// observed values held (the collector has the sketch to compute it).
	Needed []Needed `json:"needed,omitempty"`
	// Paired compares the dark version with live over the same window (dark
	// snapshots only), for objectives with `reference: live`: from pairs
	// with the proxy, unpaired with Prometheus (Comparison.Method).
	Paired *Comparison `json:"paired,omitempty"`
	// Loss is what the bus source found lost so far: gaps in the routers'
	// batch numbering, routers stopped without their last flush.
	Loss *experiment.ObservationLoss `json:"loss,omitempty"`
}

// Needed is the collector's estimate for one objective (its index in
// spec.criteria.objectives): Requests more, or none with Reason (never
// conclusive at the observed value, no bound on the latency known, ...).
type Needed struct {
	Objective int    `json:"objective"`
	Requests  int64  `json:"requests,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// Iteration is the judge's assessment after one iteration.
type Iteration struct {
	Number     int32                        `json:"number"`
	Total      int32                        `json:"total"`
	Satisfied  bool                         `json:"satisfied"`
	Objectives []experiment.ObjectiveResult `json:"objectives"`
	// Outcome is the verdict if this iteration were the last
	// (experiment.VerdictPass, VerdictFail or VerdictInconclusive).
	Outcome string `json:"outcome,omitempty"`
	// Loss says what observations were lost, when any were.
	Loss *experiment.ObservationLoss `json:"loss,omitempty"`
}

// Verdict is the judge's conclusion: the dark version passes when it meets
// every objective at the end of the last iteration. Outcome is
// experiment.VerdictPass, VerdictFail or, with a confidence level,
// VerdictInconclusive; Passed (kept for Iter8's readers) is Outcome == PASS.
type Verdict struct {
	Outcome string `json:"outcome,omitempty"`
	// Confidence is spec.criteria.confidence, when the verdict is judged on
	// the objectives' intervals.
	Confidence *float64                     `json:"confidence,omitempty"`
	Passed     bool                         `json:"passed"`
	Version    string                       `json:"version"`
	Iterations int32                        `json:"iterations"`
	Objectives []experiment.ObjectiveResult `json:"objectives"`
	Reason     string                       `json:"reason,omitempty"`
	// Loss says what observations were lost, when any were (Reason says
	// it too); it does not change the verdict.
	Loss *experiment.ObservationLoss `json:"loss,omitempty"`
	// StoppedEarly: spec.criteria.stopEarly ended the experiment at
	// Iterations, before the last, as the verdict was conclusive there.
	StoppedEarly bool `json:"stoppedEarly,omitempty"`
	// Sample is what the dark version saw of the live traffic (local
	// mode): when more than 5 % of its copies were dropped, Reason says so.
	Sample *experiment.Sample `json:"sample,omitempty"`
}

// ObservationBatch is what the router's proxy saw of one version of one
// experiment in one time slot: counts, the exact latency sum, and a
// mergeable latency sketch (DDSketch, 1 % relative accuracy). At most a few
// messages per flush and version, never one per request.
//
// A Slotted batch counts the requests that ended in [Start, End), a slot of
// the proxy's grid (slots of a whole fraction of a second from the
// experiment's start): the collector counts it in the windows that hold the
// slot (see Before). A batch from a router before slots (Slotted false)
// covers the flush period [Start, End) instead.
//
// A router numbers each route's batches (one experiment run on one proxy)
// 1, 2, 3, ... in a Series of their own, live and dark alike, and marks the
// last one, at teardown or shutdown, Final: so the collector sees a batch
// that never arrived (a gap) and a router that stopped without its last
// flush (no Final, and a later series went on). A batch without Series is
// from a router before numbering, and its Seq says nothing of gaps.
type ObservationBatch struct {
	UID    string `json:"uid"`
	Role   string `json:"role"`
	Router string `json:"router"`
	Seq    uint64 `json:"seq"`
	// Series names the numbering Seq belongs to: a new one per route a
	// proxy sets up (a restarted router, a route set up again).
	Series string    `json:"series,omitempty"`
	Final  bool      `json:"final,omitempty"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	// Slotted says that Start and End bound a slot, not a flush period.
	Slotted bool    `json:"slotted,omitempty"`
	Count   int64   `json:"count"`
	Errors  int64   `json:"errors"`
	SumMs   float64 `json:"sumMs"`
	Sketch  []byte  `json:"sketch,omitempty"`
	// Mirrored and Dropped count copies sent to the dark version and copies
	// not sent (by reason: inflight, body, method, upgrade), by the instant
	// the proxy decided.
	Mirrored int64            `json:"mirrored,omitempty"`
	Dropped  map[string]int64 `json:"dropped,omitempty"`
	// TimeoutMs is the largest latency the proxy can record for the role:
	// its mirror timeout for the dark copies (a copy that times out is
	// recorded at it). 0: no bound known (live requests end when live or
	// the client ends them). The mean's interval needs it (docs/statistics.md).
	TimeoutMs float64 `json:"timeoutMs,omitempty"`
	// Pairs sums the mirrored requests of the slot answered by both
	// versions (dark batches; absent from routers before pairs).
	Pairs *Pairs `json:"pairs,omitempty"`
}

// Before reports whether the batch counts in a window that ends at end: a
// slot whose midpoint is before end (so a slot ending exactly at end is in,
// one starting there is not, and a proxy whose grid is off by less than
// half a slot still cuts where the window does); a batch without slots when
// its period started before end, as before slots.
func (b *ObservationBatch) Before(end time.Time) bool {
	if b.Slotted {
		return b.Start.Add(b.End.Sub(b.Start) / 2).Before(end)
	}
	return b.Start.Before(end)
}
