package bus

import (
	"fmt"
	"math"
	"strconv"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Pairs is what the proxy saw of the mirrored requests answered by both
// versions, in one dark batch (ObservationBatch.Pairs): the live latency L
// and the dark latency D of the same request (ms), and who failed, summed
// over the pairs completed in the batch's slot (the instant the later of
// the two answers ended), with the cap both latencies were held to. The
// sums add up across batches, proxies and time. They are the sums of
// stats.Pairs, which the collector computes the intervals from (bus does
// not import stats: stats' own tests build on sketch, which imports bus).
type Pairs struct {
	N          int64   `json:"n"`
	SumLive    float64 `json:"sumLive,omitempty"`    // Σ L
	SumDark    float64 `json:"sumDark,omitempty"`    // Σ D
	SumLive2   float64 `json:"sumLive2,omitempty"`   // Σ L²
	SumDark2   float64 `json:"sumDark2,omitempty"`   // Σ D²
	SumCross   float64 `json:"sumCross,omitempty"`   // Σ L·D
	DarkFailed int64   `json:"darkFailed,omitempty"` // live succeeded, dark failed
	LiveFailed int64   `json:"liveFailed,omitempty"` // dark succeeded, live failed
	BothFailed int64   `json:"bothFailed,omitempty"`
	// CapMs is the largest latency a pair may hold, in ms: the proxy's
	// mirror timeout. A longer live or dark latency is counted as CapMs,
	// as a copy that times out is; the intervals need the bound.
	CapMs float64 `json:"capMs,omitempty"`
}

// Observe adds one pair (the caller holds each latency to CapMs).
func (p *Pairs) Observe(live, dark float64, liveFailed, darkFailed bool) {
	p.N++
	p.SumLive += live
	p.SumDark += dark
	p.SumLive2 += live * live
	p.SumDark2 += dark * dark
	p.SumCross += live * dark
	switch {
	case liveFailed && darkFailed:
		p.BothFailed++
	case darkFailed:
		p.DarkFailed++
	case liveFailed:
		p.LiveFailed++
	}
}

// MaxPairs bounds the pairs one batch may report, as sketch.MaxBatchCount
// does its requests: far above what a proxy sees, far below an overflow.
const MaxPairs = 1 << 40

// Validate reports why p cannot be the sums of pairs of latencies in
// [0, CapMs], naming the field; nil when it can.
func (p *Pairs) Validate() error {
	bad := func(field string, v any, why string) error {
		return fmt.Errorf("pairs.%s %v: %s", field, v, why)
	}
	counts := []struct {
		name string
		v    int64
	}{{"n", p.N}, {"darkFailed", p.DarkFailed}, {"liveFailed", p.LiveFailed}, {"bothFailed", p.BothFailed}}
	for _, c := range counts {
		if c.v < 0 || c.v > MaxPairs {
			return bad(c.name, c.v, fmt.Sprintf("outside [0, %d]", int64(MaxPairs)))
		}
	}
	if f := p.DarkFailed + p.LiveFailed + p.BothFailed; f > p.N {
		return bad("n", p.N, fmt.Sprintf("fewer than the %d failed pairs", f))
	}
	if p.N == 0 {
		return nil
	}
	if !(p.CapMs > 0) || math.IsInf(p.CapMs, 0) {
		return bad("capMs", p.CapMs, "must be a finite positive number")
	}
	// Each latency is in [0, CapMs]: every sum is at most n·CapMs (n·CapMs²
	// for the squares and the cross product), with room for rounding.
	n, c := float64(p.N), p.CapMs*(1+1e-9)
	sums := []struct {
		name     string
		v, limit float64
	}{
		{"sumLive", p.SumLive, n * c}, {"sumDark", p.SumDark, n * c},
		{"sumLive2", p.SumLive2, n * c * c}, {"sumDark2", p.SumDark2, n * c * c}, {"sumCross", p.SumCross, n * c * c},
	}
	for _, s := range sums {
		if !(s.v >= 0 && s.v <= s.limit) {
			return bad(s.name, s.v, fmt.Sprintf("outside [0, %g] for %d pairs capped at %g ms", s.limit, p.N, p.CapMs))
		}
	}
	return nil
}

// Add merges o into p: sums add, and the cap is the larger one, which
// bounds the latencies of both.
func (p *Pairs) Add(o *Pairs) {
	if o == nil {
		return
	}
	p.N += o.N
	p.SumLive += o.SumLive
	p.SumDark += o.SumDark
	p.SumLive2 += o.SumLive2
	p.SumDark2 += o.SumDark2
	p.SumCross += o.SumCross
	p.DarkFailed += o.DarkFailed
	p.LiveFailed += o.LiveFailed
	p.BothFailed += o.BothFailed
	p.CapMs = max(p.CapMs, o.CapMs)
}

// Comparison methods: whether the dark version is compared with live on
// the same requests or on the two versions' own values.
const (
	// ComparisonPaired: from pairs, the live and the dark answer to the
	// same mirrored request (the proxy), so the load of the moment cancels.
	ComparisonPaired = "paired"
	// ComparisonUnpaired: from the two versions' own values (Prometheus),
	// each interval at 1 − α/2; honest and wider.
	ComparisonUnpaired = "unpaired"
)

// Comparison is a dark snapshot's comparison with the live version over
// the same window, for objectives with `reference: live`
// (docs/statistics.md). A nil value is unavailable, with why in Errors.
type Comparison struct {
	// Method is ComparisonPaired or ComparisonUnpaired.
	Method string `json:"method"`
	// Pairs counts the pairs compared (paired only).
	Pairs int64 `json:"pairs,omitempty"`
	// MeanLatencyRatio is mean dark latency ÷ mean live latency (1.10:
	// dark 10 % slower); paired, Fieller's interval.
	MeanLatencyRatio *Relative `json:"meanLatencyRatio,omitempty"`
	// MeanLatencyDifference is the mean of dark − live latency, in ms.
	MeanLatencyDifference *Relative `json:"meanLatencyDifference,omitempty"`
	// ErrorRateDifference is dark's error rate − live's.
	ErrorRateDifference *Relative `json:"errorRateDifference,omitempty"`
	// Sums are the merged pairs themselves, so that a reader can compute
	// another interval (at another confidence, a confidence sequence) or
	// the pairs still needed.
	Sums *Pairs `json:"sums,omitempty"`
	// Errors explains unavailable values, by the field's JSON name.
	Errors map[string]string `json:"errors,omitempty"`
}

// Relative is one relative value and its interval (nil bounds unbounded).
type Relative struct {
	Value    *float64             `json:"value"`
	Interval *experiment.Interval `json:"interval,omitempty"`
}

// canonicalize turns what is not finite into unavailable (a value) or
// unbounded (an interval's end), as Snapshot.Canonicalize does the values.
func (c *Comparison) canonicalize() {
	for name, r := range map[string]*Relative{"meanLatencyRatio": c.MeanLatencyRatio, "meanLatencyDifference": c.MeanLatencyDifference, "errorRateDifference": c.ErrorRateDifference} {
		if r == nil {
			continue
		}
		if r.Value != nil && !isFinite(*r.Value) {
			if c.Errors == nil {
				c.Errors = map[string]string{}
			}
			c.Errors[name] = strconv.FormatFloat(*r.Value, 'f', -1, 64)
			r.Value = nil
		}
		if iv := r.Interval; iv != nil {
			if iv.Lo != nil && !isFinite(*iv.Lo) {
				iv.Lo = nil
			}
			if iv.Hi != nil && !isFinite(*iv.Hi) {
				iv.Hi = nil
			}
			iv.Confidence = finiteOrZero(iv.Confidence)
		}
	}
	if s := c.Sums; s != nil {
		for _, f := range []*float64{&s.SumLive, &s.SumDark, &s.SumLive2, &s.SumDark2, &s.SumCross, &s.CapMs} {
			*f = finiteOrZero(*f)
		}
	}
}

func isFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
