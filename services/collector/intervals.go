package collector

import (
	"errors"
	"fmt"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
	"github.com/darklaunch/darklaunch/shared/stats"
)

// Interval methods, as Interval.Method names them (docs/statistics.md).
const (
	MethodClopperPearson = "clopper-pearson"
	MethodBetting        = "betting"
	// With spec.criteria.stopEarly, the anytime-valid confidence sequences
	// (docs/statistics.md): the judge looks after every iteration.
	MethodBetaBinomialSequence   = "beta-binomial-sequence"
	MethodOrderStatisticSequence = "order-statistic-sequence"
	MethodOrderStatistic         = "order-statistic"
	MethodBucketEdges            = "bucket-edges"
)

// percentileLevels are the percentile metrics and their levels.
var percentileLevels = map[string]float64{
	experiment.MetricP50Latency: 0.50,
	experiment.MetricP95Latency: 0.95,
	experiment.MetricP99Latency: 0.99,
}

// intervalPlan says at which level each metric's interval is computed, and
// which objectives need an estimate of the requests still needed.
//
// Every interval is at the experiment's confidence (spec.criteria.confidence
// or experiment.DefaultConfidence), except the dark version's metrics that
// objectives judge: those are at stats.Split(confidence, objectives), so that
// the chance of any wrong conclusion among all objectives, which is what a
// FAIL needs, stays at most 1 − confidence. Interval.Confidence says which.
type intervalPlan struct {
	confidence float64
	split      float64
	decision   map[string]bool // metric names an absolute objective judges
	// relative: latency metrics a reference: live objective judges. Judged
	// unpaired (no pairs, or a percentile), its ratio needs both versions'
	// intervals at 1 − (1 − split)/2 (Bonferroni), for both roles.
	relative map[string]bool
	// sequence: spec.criteria.stopEarly, so every interval must hold at
	// every look at once (the betting interval of the mean already does).
	sequence   bool
	unpaired   float64
	objectives []planObjective
}

// planObjective is one absolute objective of spec.criteria.objectives.
type planObjective struct {
	index  int
	metric string // plain name (no Iter8 v2alpha2 prefix)
	limits stats.Limits
}

func newIntervalPlan(exp *experiment.Experiment) *intervalPlan {
	c, _ := exp.Confidence()
	p := &intervalPlan{confidence: c, split: c, decision: map[string]bool{}, relative: map[string]bool{}}
	p.sequence = exp.Spec.Criteria != nil && exp.Spec.Criteria.StopEarly
	var objectives []experiment.Objective
	if exp.Spec.Criteria != nil {
		objectives = exp.Spec.Criteria.Objectives
	}
	if len(objectives) > 0 {
		if s, err := stats.Split(c, len(objectives)); err == nil {
			p.split = s
		}
	}
	for i, o := range objectives {
		info, ok := experiment.LookupMetric(o.Metric)
		if ok && o.Reference != "" && info.Name != experiment.MetricErrorRate {
			p.relative[info.Name] = true
		}
		if !ok || o.Reference != "" {
			// A relative objective is judged on paired data, not on this
			// version's interval; it still counts in the split above.
			continue
		}
		po := planObjective{index: i, metric: info.Name}
		if o.UpperLimit != nil {
			po.limits.Upper = ptr(o.UpperLimit.Float64())
		}
		if o.LowerLimit != nil {
			po.limits.Lower = ptr(o.LowerLimit.Float64())
		}
		p.decision[info.Name] = true
		p.objectives = append(p.objectives, po)
	}
	return p
}

func ptr[T any](v T) *T { return &v }

// level is the confidence of metric's interval for role.
func (p *intervalPlan) level(role, metric string) float64 {
	l := p.confidence
	if role == bus.RoleDark && p.decision[metric] {
		l = p.split
	}
	if p.relative[metric] {
		l = max(l, 1-(1-p.split)/2)
	}
	return l
}

// aggStats is what an aggregate offers the interval methods.
type aggStats struct {
	agg       *sketch.Aggregate
	bins      []stats.Bin
	ranks     stats.RankReader
	rg        stats.Range
	unbounded bool // no bound on the latency is known: rg.Max is a stand-in
	raw       map[string]stats.Interval
}

// intervals computes the interval of every metric of agg that has one
// (counts are exact and have none) and, for the dark version, how many
// requests each inconclusive objective still needs. A metric whose interval
// cannot be computed has none.
func (p *intervalPlan) intervals(agg *sketch.Aggregate, role string) (map[string]*experiment.Interval, []bus.Needed) {
	if agg.Count == 0 {
		return nil, nil
	}
	a := &aggStats{agg: agg, raw: map[string]stats.Interval{}}
	a.bins, _ = stats.SketchBins(agg.Sketch, sketch.RelativeAccuracy)
	a.rg = stats.Range{Min: 0, Max: agg.TimeoutMs}
	if agg.TimeoutMs <= 0 {
		// Nothing bounds a live request but live itself or its client. The
		// lower bounds still hold: the bets that the mean is above m do not
		// depend on the range, and a percentile's low rank is in the sample
		// or at 0. The upper ends are unbounded; the stand-in range is
		// twice the largest latency seen, so that no bin is clipped and the
		// search for the mean's bound keeps its precision.
		top := 0.0
		for _, b := range a.bins {
			top = max(top, b.Hi)
		}
		a.rg.Max, a.unbounded = max(2*top, 1e-3), true
	}
	a.ranks, _ = stats.SketchRanks(agg.Sketch, sketch.RelativeAccuracy)
	out := map[string]*experiment.Interval{}
	add := func(metric, method string, c float64, iv stats.Interval, err error) {
		if err != nil {
			return
		}
		a.raw[metric] = iv
		e := &experiment.Interval{Lo: ptr(iv.Lo), Hi: ptr(iv.Hi), Confidence: c, Method: method}
		// Without a bound, the mean's upper end and a percentile's whose
		// rank falls off the sample are only the stand-in's.
		if a.unbounded && (metric == experiment.MetricMeanLatency || metric != experiment.MetricErrorRate && iv.Hi >= a.rg.Max) {
			e.Hi = nil
		}
		out[metric] = e
	}
	c := p.level(role, experiment.MetricErrorRate)
	if p.sequence {
		iv, err := stats.ProportionSequence(agg.Errors, agg.Count, c)
		add(experiment.MetricErrorRate, MethodBetaBinomialSequence, c, iv, err)
	} else {
		iv, err := stats.Proportion(agg.Errors, agg.Count, c, stats.ClopperPearson)
		add(experiment.MetricErrorRate, MethodClopperPearson, c, iv, err)
	}

	c = p.level(role, experiment.MetricMeanLatency)
	iv, err := stats.MeanSequence(a.bins, a.rg, c) // the same as MeanInterval: anytime-valid
	add(experiment.MetricMeanLatency, MethodBetting, c, iv, err)

	for metric, q := range percentileLevels {
		if a.ranks == nil {
			break
		}
		c := p.level(role, metric)
		if p.sequence {
			iv, err := stats.QuantileSequence(a.ranks, q, c, a.rg)
			add(metric, MethodOrderStatisticSequence, c, iv, err)
			continue
		}
		iv, err := stats.QuantileInterval(a.ranks, q, c, a.rg)
		add(metric, MethodOrderStatistic, c, iv, err)
	}
	if role != bus.RoleDark {
		return out, nil
	}
	return out, p.needed(a)
}

// needed estimates, for each absolute objective whose interval is
// inconclusive, the further requests that would make it conclusive if the
// observed values held (stats.*Needed, at the objective's level).
func (p *intervalPlan) needed(a *aggStats) []bus.Needed {
	var out []bus.Needed
	for _, o := range p.objectives {
		iv, ok := a.raw[o.metric]
		if !ok {
			continue // a count (exact), or no interval
		}
		if outcome, err := stats.Judge(iv, o.limits); err != nil || outcome != stats.Inconclusive {
			continue
		}
		// The level of the interval judged: the split, or higher when a
		// relative objective on the same metric raised it.
		c := p.level(bus.RoleDark, o.metric)
		var n int64
		var err error
		switch q, isQuantile := percentileLevels[o.metric]; {
		case o.metric == experiment.MetricErrorRate:
			if p.sequence {
				n, err = stats.ProportionSequenceNeeded(a.agg.Errors, a.agg.Count, c, o.limits)
			} else {
				n, err = stats.ProportionNeeded(a.agg.Errors, a.agg.Count, c, stats.ClopperPearson, o.limits)
			}
		case a.unbounded:
			out = append(out, bus.Needed{Objective: o.index, Reason: "no bound on the latency is known (the proxy's mirror timeout), so no sample size would bound the " + o.metric})
			continue
		case o.metric == experiment.MetricMeanLatency:
			n, err = stats.MeanNeeded(a.bins, a.rg, c, o.limits)
		case isQuantile:
			n, err = stats.QuantileNeeded(a.ranks, q, c, a.rg, o.limits, p.sequence)
		default:
			continue
		}
		out = append(out, neededFrom(o.index, n, err))
	}
	return out
}

// neededFrom is the requests objective index needs, as a sample-size
// function answered (n, err): both sources, the bus's and Prometheus's.
func neededFrom(index int, n int64, err error) bus.Needed {
	switch {
	case errors.Is(err, stats.ErrNeverConclusive):
		return bus.Needed{Objective: index, Reason: "not conclusive at any sample size: the observed value is on the limit"}
	case err != nil:
		return bus.Needed{Objective: index, Reason: fmt.Sprintf("not computed: %v", err)}
	}
	return bus.Needed{Objective: index, Requests: n}
}
