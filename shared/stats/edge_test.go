package stats

import (
	"errors"
	"math"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/darklaunch/darklaunch/shared/sketch"
)

// Edge inputs give clear errors, never a panic.
func TestEdgeInputs(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		name string
		err  error
		call func() error
	}{
		{"proportion n=0", ErrNoData, func() error { _, err := Proportion(0, 0, 0.95, ClopperPearson); return err }},
		{"proportion negative", ErrInvalid, func() error { _, err := Proportion(-1, 10, 0.95, ClopperPearson); return err }},
		{"proportion errors > n", ErrInvalid, func() error { _, err := Proportion(11, 10, 0.95, Wilson); return err }},
		{"proportion confidence NaN", ErrInvalid, func() error { _, err := Proportion(1, 10, nan, ClopperPearson); return err }},
		{"proportion confidence 1", ErrInvalid, func() error { _, err := Proportion(1, 10, 1, ClopperPearson); return err }},
		{"sequence n=0", ErrNoData, func() error { _, err := ProportionSequence(0, 0, 0.95); return err }},
		{"ranks n=0", ErrNoData, func() error { _, _, err := QuantileRanks(0, 0.5, 0.95); return err }},
		{"ranks q=1", ErrInvalid, func() error { _, _, err := QuantileRanks(10, 1, 0.95); return err }},
		{"ranks q NaN", ErrInvalid, func() error { _, _, err := QuantileSequenceRanks(10, nan, 0.95); return err }},
		{"sample NaN", ErrInvalid, func() error { _, err := NewSample([]float64{1, nan}); return err }},
		{"bins NaN", ErrInvalid, func() error { _, err := ExactBins([]float64{nan}); return err }},
		{"mean no bins", ErrNoData, func() error { _, err := MeanInterval(nil, latencyRange, 0.95); return err }},
		{"mean NaN bin", ErrInvalid, func() error {
			_, err := MeanInterval([]Bin{{Lo: nan, Hi: 1, Count: 1}}, latencyRange, 0.95)
			return err
		}},
		{"mean negative count", ErrInvalid, func() error {
			_, err := MeanInterval([]Bin{{Lo: 1, Hi: 1, Count: -1}}, latencyRange, 0.95)
			return err
		}},
		{"mean empty range", ErrInvalid, func() error { _, err := MeanInterval([]Bin{{1, 1, 1}}, Range{5, 5}, 0.95); return err }},
		{"mean range Inf", ErrInvalid, func() error {
			_, err := MeanInterval([]Bin{{1, 1, 1}}, Range{0, math.Inf(1)}, 0.95)
			return err
		}},
		{"outcome no limit", ErrInvalid, func() error { _, err := MeanOutcome([]Bin{{1, 1, 1}}, latencyRange, 0.95, Limits{}); return err }},
		{"judge NaN limit", ErrInvalid, func() error { _, err := Judge(Interval{Lo: 0, Hi: 1}, Upper(nan)); return err }},
		{"judge NaN interval", ErrInvalid, func() error { _, err := Judge(Interval{Lo: nan, Hi: 1}, Upper(1)); return err }},
		{"judge lower > upper", ErrInvalid, func() error {
			lo, up := 2.0, 1.0
			_, err := Judge(Interval{Lo: 0, Hi: 1}, Limits{Lower: &lo, Upper: &up})
			return err
		}},
		{"moments n=0", ErrNoData, func() error { _, err := StudentT(Moments{}, 0.95); return err }},
		{"moments NaN", ErrInvalid, func() error { _, err := MomentsInterval(Moments{N: 1, Sum: nan}, latencyRange, 0.95); return err }},
		{"moments outside range", ErrInvalid, func() error {
			_, err := MomentsInterval(Moments{N: 1, Sum: 9000, SumSq: 81e6}, latencyRange, 0.95)
			return err
		}},
		{"pairs n=0", ErrNoData, func() error { _, err := PairedRatio(Pairs{}, latencyRange, 0.95); return err }},
		{"pairs failed > n", ErrInvalid, func() error { _, err := PairedErrorDifference(Pairs{N: 1, DarkFailed: 2}, 0.95); return err }},
		{"pairs NaN", ErrInvalid, func() error { _, err := PairedDifference(Pairs{N: 1, SumDark: nan}, latencyRange, 0.95); return err }},
		{"split k=0", ErrInvalid, func() error { _, err := Split(0.95, 0); return err }},
		{"needed n=0", ErrNoData, func() error { _, err := ProportionNeeded(0, 0, 0.95, ClopperPearson, Upper(0.01)); return err }},
		{"needed on the limit", ErrNeverConclusive, func() error {
			_, err := ProportionNeeded(1, 100, 0.95, ClopperPearson, Upper(0.01))
			return err
		}},
		{"sketch accuracy 1", ErrInvalid, func() error { _, err := SketchRanks(sketch.NewSketch(), 1); return err }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if !errors.Is(err, c.err) {
				t.Fatalf("error %v, want %v", err, c.err)
			}
			if err.Error() == "" {
				t.Fatal("empty message")
			}
		})
	}
}

func TestAllErrorsAndExtremes(t *testing.T) {
	iv, err := Proportion(20, 20, 0.95, ClopperPearson)
	if err != nil || iv.Hi != 1 || !(iv.Lo > 0.8 && iv.Lo < 0.9) {
		t.Fatalf("20 errors in 20: %v %v (want [0.832, 1])", iv, err)
	}
	// Rule of three: 0 errors in n, one-sided 97.5 %: about 3.7/n.
	iv, _ = Proportion(0, 1000, 0.95, ClopperPearson)
	if iv.Lo != 0 || math.Abs(iv.Hi-0.003682) > 1e-5 {
		t.Fatalf("0 in 1000: %v", iv)
	}
	// All latencies at the cap: the mean is the cap.
	m, err := MeanInterval([]Bin{{Lo: 5000, Hi: 5000, Count: 50}}, latencyRange, 0.95)
	if err != nil || m.Hi != 5000 || m.Lo < 4000 {
		t.Fatalf("all at the cap: %v %v", m, err)
	}
	// All zero.
	m, err = MeanInterval([]Bin{{Lo: 0, Hi: 0, Count: 50}}, latencyRange, 0.95)
	if err != nil || m.Lo != 0 || m.Hi > 500 {
		t.Fatalf("all zero: %v %v", m, err)
	}
	// One request: p99 spans the range.
	s, _ := NewSample([]float64{7})
	q, err := QuantileInterval(s, 0.99, 0.95, latencyRange)
	// P(X ≤ ξ_0.99) = 0.99: the one value is a 99 % lower bound.
	if err != nil || q.Lo != 7 || q.Hi != 5000 {
		t.Fatalf("p99 of one: %v %v", q, err)
	}
}

func TestClopperPearsonKnownValues(t *testing.T) {
	// 0 or n events: closed forms 1 − (α/2)^(1/n) and (α/2)^(1/n).
	for _, n := range []int64{3, 48, 1000} {
		iv, _ := Proportion(0, n, 0.95, ClopperPearson)
		if want := 1 - math.Pow(0.025, 1/float64(n)); math.Abs(iv.Hi-want) > 1e-9 {
			t.Errorf("0/%d: upper %v, want %v", n, iv.Hi, want)
		}
		iv, _ = Proportion(n, n, 0.95, ClopperPearson)
		if want := math.Pow(0.025, 1/float64(n)); math.Abs(iv.Lo-want) > 1e-9 {
			t.Errorf("%d/%d: lower %v, want %v", n, n, iv.Lo, want)
		}
	}
	// Otherwise the ends are where the binomial tails are α/2 (checked
	// through the binomial CDF, not the beta quantile that computed them).
	for _, c := range [][2]int64{{1, 20}, {10, 500}, {3, 7}} {
		iv, _ := Proportion(c[0], c[1], 0.95, ClopperPearson)
		up := distuv.Binomial{N: float64(c[1]), P: iv.Hi}.CDF(float64(c[0]))
		lo := distuv.Binomial{N: float64(c[1]), P: iv.Lo}.Survival(float64(c[0] - 1))
		if math.Abs(up-0.025) > 1e-7 || math.Abs(lo-0.025) > 1e-7 {
			t.Errorf("%d/%d: %v: tails %v and %v, want 0.025", c[0], c[1], iv, lo, up)
		}
	}
}

func TestQuantileRanksKnown(t *testing.T) {
	// Median of 20: ranks 6 and 15 (P = 0.9586).
	lo, hi, err := QuantileRanks(20, 0.5, 0.95)
	if err != nil || lo != 6 || hi != 15 {
		t.Fatalf("median of 20: ranks %d, %d (%v), want 6, 15", lo, hi, err)
	}
	// p99 of 20: no rank is high enough.
	if _, hi, _ := QuantileRanks(20, 0.99, 0.95); hi != 21 {
		t.Fatalf("p99 of 20: upper rank %d, want 21", hi)
	}
	// The sequence's ranks are wider.
	slo, shi, _ := QuantileSequenceRanks(2000, 0.95, 0.95)
	flo, fhi, _ := QuantileRanks(2000, 0.95, 0.95)
	if !(slo < flo && shi > fhi) {
		t.Fatalf("sequence ranks [%d, %d] not wider than [%d, %d]", slo, shi, flo, fhi)
	}
}

// The sketch reads the same ranks as the exact sample, within 1 %.
func TestSketchRanksMatchSample(t *testing.T) {
	r := newRand(3)
	xs := make([]float64, 999)
	sk := sketch.NewSketch()
	for i := range xs {
		xs[i] = latencyDists[0].sample(r)
		sk.Add(xs[i])
	}
	s, _ := NewSample(xs)
	sr, err := SketchRanks(sk, sketch.RelativeAccuracy)
	if err != nil {
		t.Fatal(err)
	}
	for _, rank := range []int64{1, 2, 500, 950, 998, 999} {
		lo, hi, err := sr.AtRank(rank)
		x, _, _ := s.AtRank(rank)
		if err != nil || x < lo || x > hi {
			t.Errorf("rank %d: exact %v outside the sketch's [%v, %v] (%v)", rank, x, lo, hi, err)
		}
	}
	bins, err := SketchBins(sk, sketch.RelativeAccuracy)
	if err != nil {
		t.Fatal(err)
	}
	exact, _ := ExactBins(xs)
	a, _ := MeanInterval(bins, latencyRange, 0.95)
	b, _ := MeanInterval(exact, latencyRange, 0.95)
	if !(a.Lo <= b.Lo && a.Hi >= b.Hi) || a.Width() > 1.05*b.Width() {
		t.Errorf("sketch interval %v is not the exact %v widened by about 1 %%", a, b)
	}
}

func TestNeeded(t *testing.T) {
	// The example: 0 errors in 48; about 320 more with no error are
	// needed to show ≤ 0.01 at 95 % (Clopper-Pearson: 367 in all).
	more, err := ProportionNeeded(0, 48, 0.95, ClopperPearson, Upper(0.01))
	if err != nil || more+48 < 360 || more+48 > 370 {
		t.Fatalf("0 in 48: %d more (%v), want about 319", more, err)
	}
	iv, _ := Proportion(0, 48+more, 0.95, ClopperPearson)
	if o, _ := Judge(iv, Upper(0.01)); o != Satisfied {
		t.Fatalf("at %d requests the interval %v is still %v", 48+more, iv, o)
	}
	seq, err := ProportionSequenceNeeded(0, 48, 0.95, Upper(0.01))
	if err != nil || seq < more-40 {
		t.Fatalf("sequence: %d more (%v)", seq, err)
	}
	// Already conclusive: 0 more.
	if more, err := ProportionNeeded(50, 100, 0.95, ClopperPearson, Upper(0.01)); more != 0 || err != nil {
		t.Fatalf("already violated: %d, %v", more, err)
	}
	// Mean: 48 requests around 6 ms against ≤ 50 ms with a 5 s cap.
	var xs []float64
	r := newRand(4)
	for range 48 {
		xs = append(xs, 6*math.Exp(0.2*r.NormFloat64()))
	}
	bins, _ := ExactBins(xs)
	m, err := MeanNeeded(bins, latencyRange, 0.95, Upper(50))
	if err != nil || m < 100 || m > 2000 {
		t.Fatalf("mean: %d more (%v)", m, err)
	}
	if o, _ := MeanOutcome(Scale(bins, float64(48+m)/48), latencyRange, 0.95, Upper(50)); o != Satisfied {
		t.Fatalf("mean at %d: %v", 48+m, o)
	}
}

func TestJudgeAndVerdict(t *testing.T) {
	iv := Interval{Estimate: 5, Lo: 4, Hi: 6}
	for _, c := range []struct {
		l    Limits
		want Outcome
	}{{Upper(6), Satisfied}, {Upper(5), Inconclusive}, {Upper(3.9), Violated}, {Lower(4), Satisfied}, {Lower(6.1), Violated}} {
		if o, err := Judge(iv, c.l); o != c.want || err != nil {
			t.Errorf("%v: %v %v, want %v", c.l, o, err, c.want)
		}
	}
	if Verdict(Satisfied, Inconclusive, Violated) != Violated || Verdict(Satisfied, Satisfied) != Satisfied ||
		Verdict(Satisfied, Inconclusive) != Inconclusive || Verdict() != Inconclusive {
		t.Error("verdict")
	}
}

func TestPaired(t *testing.T) {
	r := newRand(5)
	d := latencyDists[0]
	var same, slower Pairs
	for range 20000 {
		l := d.sample(r)
		same.Observe(l, math.Min(timeoutMs, l*math.Exp(0.05*r.NormFloat64())), false, r.Float64() < 0.001)
		slower.Observe(l, math.Min(timeoutMs, 1.3*l*math.Exp(0.05*r.NormFloat64())), false, r.Float64() < 0.05)
	}
	ratio, err := PairedRatio(slower, latencyRange, 0.95)
	if err != nil || !ratio.Contains(1.3) || ratio.Lo < 1.1 {
		t.Fatalf("ratio of a 30 %% slower version: %v %v", ratio, err)
	}
	sameRatio, _ := PairedRatio(same, latencyRange, 0.95)
	if !sameRatio.Contains(1.00125) {
		t.Fatalf("ratio of the same version: %v", sameRatio)
	}
	diff, err := PairedDifference(slower, latencyRange, 0.95)
	if err != nil || !(diff.Lo > 0) {
		t.Fatalf("difference: %v %v", diff, err)
	}
	e, err := PairedErrorDifference(slower, 0.95)
	if err != nil || !e.Contains(0.05) || e.Lo < 0.04 {
		t.Fatalf("paired error difference: %v %v", e, err)
	}
	u, err := UnpairedErrorDifference(slower.DarkFailed, slower.N, 0, slower.N, 0.95)
	if err != nil || !u.Contains(0.05) {
		t.Fatalf("unpaired error difference %v (paired %v) %v", u, e, err)
	}
	t.Logf("20,000 pairs, 30 %% slower: ratio %v, difference %v ms, errors %v (unpaired %v); same: ratio %v", ratio, diff, e, u, sameRatio)
}

func TestQuantileNeeded(t *testing.T) {
	r := newRand(6)
	var xs []float64
	for range 40 {
		xs = append(xs, latencyDists[0].sample(r))
	}
	s, _ := NewSample(xs)
	p95 := latencyDists[0].quantile(0.95)
	more, err := QuantileNeeded(s, 0.95, 0.95, latencyRange, Upper(2*p95), false)
	if err != nil || more <= 0 || more > 5000 {
		t.Fatalf("p95 of 40 against twice its value: %d more (%v)", more, err)
	}
	seq, err := QuantileNeeded(s, 0.95, 0.95, latencyRange, Upper(2*p95), true)
	if err != nil || seq < more {
		t.Fatalf("sequence: %d more (%v), interval %d", seq, err, more)
	}
}
