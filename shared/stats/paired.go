package stats

import (
	"math"
)

// Pairs aggregates what the proxy sees of mirrored requests answered by
// both versions: the live latency L and the dark latency D of the same
// request (ms, each capped at its timeout), and who failed. All fields are
// sums, so batches merge by adding them, across proxies and time.
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
}

// Add merges o into p.
func (p *Pairs) Add(o Pairs) {
	p.N += o.N
	p.SumLive += o.SumLive
	p.SumDark += o.SumDark
	p.SumLive2 += o.SumLive2
	p.SumDark2 += o.SumDark2
	p.SumCross += o.SumCross
	p.DarkFailed += o.DarkFailed
	p.LiveFailed += o.LiveFailed
	p.BothFailed += o.BothFailed
}

// Observe adds one pair.
func (p *Pairs) Observe(live, dark float64, liveFailed, darkFailed bool) {
	p.Add(Pairs{N: 1, SumLive: live, SumDark: dark, SumLive2: live * live, SumDark2: dark * dark, SumCross: live * dark})
	switch {
	case liveFailed && darkFailed:
		p.BothFailed++
	case darkFailed:
		p.DarkFailed++
	case liveFailed:
		p.LiveFailed++
	}
}

func (p Pairs) check(rg Range) error {
	if err := rg.check(); err != nil {
		return err
	}
	switch {
	case p.N < 0 || p.DarkFailed < 0 || p.LiveFailed < 0 || p.BothFailed < 0:
		return invalid("negative pair counts")
	case p.DarkFailed+p.LiveFailed+p.BothFailed > p.N:
		return invalid("%d failed pairs among %d", p.DarkFailed+p.LiveFailed+p.BothFailed, p.N)
	case !finite(p.SumLive) || !finite(p.SumDark) || !finite(p.SumLive2) || !finite(p.SumDark2) || !finite(p.SumCross):
		return invalid("pair sums are not finite")
	case p.N == 0:
		return ErrNoData
	}
	return nil
}

// PairedDifference is the interval of the mean paired difference D − L,
// from the sums alone (MomentsInterval on values in [−Max, Max]): the load
// of the moment, common to both answers of a pair, cancels out.
func PairedDifference(p Pairs, rg Range, confidence float64) (Interval, error) {
	if err := p.check(rg); err != nil {
		return Interval{}, err
	}
	n := float64(p.N)
	m := Moments{N: n, Sum: p.SumDark - p.SumLive, SumSq: math.Max(0, p.SumDark2-2*p.SumCross+p.SumLive2)}
	w := rg.Max - rg.Min
	return MomentsInterval(m, Range{Min: -w, Max: w}, confidence)
}

// PairedRatio is the interval of the ratio of mean latencies
// μ_D / μ_L (1.10: dark 10 % slower), by Fieller's construction (E. C.
// Fieller, "Some problems in interval estimation", JRSS-B 16, 1954): the
// ratios r for which the mean of Z = D − r·L is not shown to differ from 0,
// with Z's interval from MomentsInterval on [−r·Max, Max]. Its sums follow
// from the pairs' (ΣZ = ΣD − rΣL, ΣZ² = ΣD² − 2rΣLD + r²ΣL²), so no
// assumption of normality and no delta method is needed. Ratios are
// searched in [0, 1000]; Hi is +Inf when live's mean is not shown above 0.
func PairedRatio(p Pairs, rg Range, confidence float64) (Interval, error) {
	if err := p.check(rg); err != nil {
		return Interval{}, err
	}
	if err := checkConfidence(confidence); err != nil {
		return Interval{}, err
	}
	if rg.Min < 0 {
		return Interval{}, invalid("latency range [%v, %v] below 0", rg.Min, rg.Max)
	}
	n := float64(p.N)
	z := func(r float64) Interval {
		m := Moments{N: n, Sum: p.SumDark - r*p.SumLive, SumSq: math.Max(0, p.SumDark2-2*r*p.SumCross+r*r*p.SumLive2)}
		return momentsInterval(m, Range{Min: -r * rg.Max, Max: rg.Max}, confidence)
	}
	const maxRatio = 1000.0
	est := math.Inf(1)
	if p.SumLive > 0 {
		est = p.SumDark / p.SumLive
	}
	iv := Interval{Estimate: est, Lo: 0, Hi: math.Inf(1)}
	// E[Z(r)] = μ_D − rμ_L falls with r: below the ratio Z's interval is
	// wholly above 0 (r rejected from below), above it wholly below 0.
	if z(0).Lo > 0 {
		iv.Lo = bisectTol(0, math.Min(est, maxRatio), func(r float64) bool { return !(z(r).Lo > 0) }, false, maxRatio)
	}
	if z(maxRatio).Hi < 0 {
		iv.Hi = bisectTol(math.Min(est, maxRatio), maxRatio, func(r float64) bool { return !(z(r).Hi < 0) }, true, maxRatio)
	}
	return iv, nil
}

// PairedErrorDifference is the interval of the difference of error rates
// dark − live on the same requests: the mean of e = [dark failed] − [live
// failed], which is −1, 0 or 1, so its distribution is known exactly from the
// counts and MeanInterval bounds it exactly (McNemar's setting; only the
// discordant pairs move it).
func PairedErrorDifference(p Pairs, confidence float64) (Interval, error) {
	if err := p.check(Range{Min: 0, Max: 1}); err != nil {
		return Interval{}, err
	}
	n := float64(p.N)
	bins := []Bin{
		{Lo: -1, Hi: -1, Count: float64(p.LiveFailed)},
		{Lo: 0, Hi: 0, Count: n - float64(p.DarkFailed+p.LiveFailed)},
		{Lo: 1, Hi: 1, Count: float64(p.DarkFailed)},
	}
	iv, err := MeanInterval(bins, Range{Min: -1, Max: 1}, confidence)
	iv.Estimate = float64(p.DarkFailed-p.LiveFailed) / n
	return iv, err
}

// UnpairedErrorDifference is the interval of the difference of error rates
// dark − live from the two versions' own counts (Prometheus): each
// Clopper-Pearson interval at 1 − α/2, so that both hold together at 1 − α
// (Bonferroni), and the difference of their ends. Honest, and wider than
// the paired one.
func UnpairedErrorDifference(darkErrors, darkN, liveErrors, liveN int64, confidence float64) (Interval, error) {
	if err := checkConfidence(confidence); err != nil {
		return Interval{}, err
	}
	half := 1 - (1-confidence)/2
	d, err := Proportion(darkErrors, darkN, half, ClopperPearson)
	if err != nil {
		return Interval{}, err
	}
	l, err := Proportion(liveErrors, liveN, half, ClopperPearson)
	if err != nil {
		return Interval{}, err
	}
	return Interval{Estimate: d.Estimate - l.Estimate, Lo: d.Lo - l.Hi, Hi: d.Hi - l.Lo}, nil
}

// UnpairedRatio is the interval of μ_D/μ_L from the two versions' own mean
// intervals, each computed at 1 − α/2 (Bonferroni): [Lo_D/Hi_L, Hi_D/Lo_L],
// +Inf where live's lower bound is 0.
func UnpairedRatio(dark, live Interval) (Interval, error) {
	if !(dark.Lo >= 0 && dark.Lo <= dark.Hi && live.Lo >= 0 && live.Lo <= live.Hi) {
		return Interval{}, invalid("intervals %v and %v are not latency intervals", dark, live)
	}
	iv := Interval{Estimate: math.Inf(1), Lo: 0, Hi: math.Inf(1)}
	if live.Estimate > 0 {
		iv.Estimate = dark.Estimate / live.Estimate
	}
	if live.Hi > 0 {
		iv.Lo = dark.Lo / live.Hi
	}
	if live.Lo > 0 {
		iv.Hi = dark.Hi / live.Lo
	}
	return iv, nil
}
