package stats

import (
	"math"
	"slices"
)

// Bin counts values known to lie in [Lo, Hi]: a sketch's bin, or one exact
// value (Lo = Hi). Count may be fractional (a scaled sample, see Needed).
type Bin struct {
	Lo, Hi float64
	Count  float64
}

// BinSketch is a sketch that can list its bins: each value it returns is
// within the sketch's relative accuracy of every value counted there.
// DDSketch's ForEach has this shape; shared/sketch.Sketch.ForEach forwards to
// it.
type BinSketch interface {
	ForEach(f func(value, count float64) (stop bool))
}

// SketchBins lists the bins of s: a value v stands for true values in
// [v/(1+relAcc), v/(1−relAcc)] (for negative v, the mirror image).
func SketchBins(s BinSketch, relAcc float64) ([]Bin, error) {
	if !(relAcc >= 0 && relAcc < 1) {
		return nil, invalid("relative accuracy %v outside [0, 1)", relAcc)
	}
	var bins []Bin
	var bad error
	s.ForEach(func(v, c float64) bool {
		switch {
		case !finite(v):
			bad = invalid("sketch bin value %v", v)
		case !(c >= 0) || math.IsInf(c, 0):
			bad = invalid("sketch bin count %v", c)
		case c == 0:
		case v >= 0:
			bins = append(bins, Bin{Lo: v / (1 + relAcc), Hi: v / (1 - relAcc), Count: c})
		default:
			bins = append(bins, Bin{Lo: v / (1 - relAcc), Hi: v / (1 + relAcc), Count: c})
		}
		return bad != nil
	})
	return bins, bad
}

// ExactBins turns exact values into bins of one value each (equal values
// merged).
func ExactBins(xs []float64) ([]Bin, error) {
	s := slices.Clone(xs)
	for i, x := range s {
		if !finite(x) {
			return nil, invalid("value %d is %v", i, x)
		}
	}
	slices.Sort(s)
	var bins []Bin
	for _, x := range s {
		if k := len(bins) - 1; k >= 0 && bins[k].Lo == x {
			bins[k].Count++
			continue
		}
		bins = append(bins, Bin{Lo: x, Hi: x, Count: 1})
	}
	return bins, nil
}

// Scale multiplies every count by f: the sample as it would be at f times
// the requests, if the observed distribution held (for Needed).
func Scale(bins []Bin, f float64) []Bin {
	out := slices.Clone(bins)
	for i := range out {
		out[i].Count *= f
	}
	return out
}

// binned is bins checked, clipped to a range and shifted to [0, R].
type binned struct {
	lo, hi, c []float64
	n         float64
	r         float64 // R = Max − Min
	min       float64
}

func newBinned(bins []Bin, rg Range) (*binned, error) {
	if err := rg.check(); err != nil {
		return nil, err
	}
	b := &binned{r: rg.Max - rg.Min, min: rg.Min}
	for i, x := range bins {
		switch {
		case !finite(x.Lo) || !finite(x.Hi) || x.Lo > x.Hi:
			return nil, invalid("bin %d: bounds [%v, %v]", i, x.Lo, x.Hi)
		case !(x.Count >= 0) || math.IsInf(x.Count, 0):
			return nil, invalid("bin %d: count %v", i, x.Count)
		case x.Count == 0:
			continue
		}
		// A value beyond the range (a latency a little over the timeout) is
		// counted at the range's edge: the mean bounded is that of the
		// values capped at the timeout.
		lo := math.Min(b.r, math.Max(0, x.Lo-rg.Min))
		hi := math.Min(b.r, math.Max(0, x.Hi-rg.Min))
		b.lo, b.hi, b.c = append(b.lo, lo), append(b.hi, hi), append(b.c, x.Count)
		b.n += x.Count
	}
	if b.n == 0 {
		return nil, ErrNoData
	}
	return b, nil
}

// means returns the mean of the bins' lower edges, midpoints and upper
// edges (shifted).
func (b *binned) means() (lo, mid, hi float64) {
	for i, c := range b.c {
		lo += c * b.lo[i]
		hi += c * b.hi[i]
	}
	lo, hi = lo/b.n, hi/b.n
	return lo, (lo + hi) / 2, hi
}
