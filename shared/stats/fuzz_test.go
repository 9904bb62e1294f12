package stats

import (
	"math"
	"testing"
)

// FuzzStats throws arbitrary counts, confidences and values at every entry
// point: each returns an interval or an error, never panics, and an
// interval it returns is ordered and holds its estimate.
func FuzzStats(f *testing.F) {
	f.Add(int64(0), int64(48), 0.95, 0.5, 6.0, 9.0, 5000.0)
	f.Add(int64(3), int64(3), 0.999, 0.99, 0.0, 0.0, 1.0)
	f.Add(int64(-1), int64(0), math.NaN(), math.Inf(1), math.NaN(), -1.0, 0.0)
	f.Fuzz(func(t *testing.T, x, n int64, conf, q, a, b, cap float64) {
		ordered := func(name string, iv Interval, err error) {
			if err == nil && !(iv.Lo <= iv.Hi) {
				t.Fatalf("%s: %v", name, iv)
			}
		}
		n %= 1 << 32
		x %= 1 << 32
		iv, err := Proportion(x, n, conf, ClopperPearson)
		ordered("cp", iv, err)
		iv, err = Proportion(x, n, conf, Wilson)
		ordered("wilson", iv, err)
		iv, err = ProportionSequence(x, n, conf)
		ordered("sequence", iv, err)
		_, _ = ProportionNeeded(x, n, conf, ClopperPearson, Upper(a))
		_, _, _ = QuantileRanks(n%100000, q, conf)
		_, _, _ = QuantileSequenceRanks(n%100000, q, conf)
		s, err := NewSample([]float64{a, b, a + b})
		if err == nil {
			iv, err = QuantileInterval(s, q, conf, Range{Min: 0, Max: cap})
			ordered("quantile", iv, err)
			iv, err = QuantileSequence(s, q, conf, Range{Min: 0, Max: cap})
			ordered("quantile sequence", iv, err)
		}
		bins := []Bin{{Lo: a, Hi: b, Count: float64(x % 1000)}, {Lo: b, Hi: b, Count: float64(n % 1000)}}
		iv, err = MeanInterval(bins, Range{Min: 0, Max: cap}, conf)
		ordered("mean", iv, err)
		_, _ = MeanOutcome(bins, Range{Min: 0, Max: cap}, conf, Upper(a))
		iv, err = MomentsInterval(Moments{N: float64(n), Sum: a, SumSq: b}, Range{Min: 0, Max: cap}, conf)
		ordered("moments", iv, err)
		p := Pairs{N: n, SumLive: a, SumDark: b, SumLive2: a * a, SumDark2: b * b, SumCross: a * b, DarkFailed: x}
		iv, err = PairedRatio(p, Range{Min: 0, Max: cap}, conf)
		ordered("ratio", iv, err)
		iv, err = PairedErrorDifference(p, conf)
		ordered("paired errors", iv, err)
	})
}
