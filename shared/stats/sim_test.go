package stats

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/darklaunch/darklaunch/shared/sketch"
)

// timeoutMs is the cap of every simulated latency: the proxy's default
// mirror timeout (5 s), as a timed-out copy is recorded.
const timeoutMs = 5000.0

var latencyRange = Range{Min: 0, Max: timeoutMs}

// latencyDist is a simulated latency distribution in milliseconds, capped
// at timeoutMs, with its true (capped) mean and quantiles.
type latencyDist struct {
	name string
	draw func(r *rand.Rand) float64 // uncapped
	cdf  func(x float64) float64    // uncapped
	mean float64                    // of the capped values
}

func (d latencyDist) sample(r *rand.Rand) float64 { return math.Min(timeoutMs, d.draw(r)) }

// quantile of the capped distribution, by bisection on the CDF.
func (d latencyDist) quantile(q float64) float64 {
	lo, hi := 0.0, timeoutMs
	if d.cdf(hi) < q {
		return timeoutMs
	}
	for range 200 {
		mid := (lo + hi) / 2
		if d.cdf(mid) < q {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// scaled is d with every latency multiplied by f (a version f times slower).
func (d latencyDist) scaled(f float64) latencyDist {
	s := latencyDist{name: d.name, draw: func(r *rand.Rand) float64 { return f * d.draw(r) }, cdf: func(x float64) float64 { return d.cdf(x / f) }}
	s.mean = cappedMean(s.cdf)
	return s
}

// cappedMean is ∫₀^T (1 − F(x)) dx, by Simpson's rule on a log grid plus
// the head.
func cappedMean(cdf func(float64) float64) float64 {
	const k = 20000
	lo, hi := math.Log(1e-6), math.Log(timeoutMs)
	h := (hi - lo) / k
	f := func(u float64) float64 { x := math.Exp(u); return (1 - cdf(x)) * x }
	s := f(lo) + f(hi)
	for i := 1; i < k; i++ {
		w := 2.0
		if i%2 == 1 {
			w = 4
		}
		s += w * f(lo+float64(i)*h)
	}
	return 1e-6 + s*h/3
}

func lognormalDist(median, sigma float64) (func(*rand.Rand) float64, func(float64) float64) {
	mu := math.Log(median)
	return func(r *rand.Rand) float64 { return math.Exp(mu + sigma*r.NormFloat64()) },
		func(x float64) float64 {
			if x <= 0 {
				return 0
			}
			return distuv.UnitNormal.CDF((math.Log(x) - mu) / sigma)
		}
}

// latencyDists are the three shapes of the calibration test.
var latencyDists = func() []latencyDist {
	lnDraw, lnCDF := lognormalDist(20, 1)
	fastDraw, fastCDF := lognormalDist(10, 0.25)
	slowDraw, slowCDF := lognormalDist(300, 0.25)
	const xm, shape = 10.0, 3.0
	ds := []latencyDist{
		{name: "lognormal", draw: lnDraw, cdf: lnCDF},
		{name: "bimodal", draw: func(r *rand.Rand) float64 {
			if r.Float64() < 0.1 {
				return slowDraw(r)
			}
			return fastDraw(r)
		}, cdf: func(x float64) float64 { return 0.9*fastCDF(x) + 0.1*slowCDF(x) }},
		{name: "pareto3", draw: func(r *rand.Rand) float64 { return xm * math.Pow(1-r.Float64(), -1/shape) },
			cdf: func(x float64) float64 {
				if x < xm {
					return 0
				}
				return 1 - math.Pow(xm/x, shape)
			}},
	}
	for i := range ds {
		ds[i].mean = cappedMean(ds[i].cdf)
	}
	return ds
}()

// observed is one simulated version's aggregate, as the collector holds it.
type observed struct {
	n, errors int64
	sum       float64
	sk        *sketch.Sketch
	sumSq     float64
}

func newObserved() *observed { return &observed{sk: sketch.NewSketch()} }

func (o *observed) add(ms float64, failed bool) {
	o.n++
	o.sum += ms
	o.sumSq += ms * ms
	o.sk.Add(ms)
	if failed {
		o.errors++
	}
}

func (o *observed) bins(t testing.TB) []Bin {
	b, err := SketchBins(o.sk, sketch.RelativeAccuracy)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (o *observed) ranks(t testing.TB) RankReader {
	r, err := SketchRanks(o.sk, sketch.RelativeAccuracy)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// simulate draws n requests of d with error rate p.
func simulate(r *rand.Rand, d latencyDist, p float64, n int) *observed {
	o := newObserved()
	for range n {
		o.add(d.sample(r), r.Float64() < p)
	}
	return o
}

// replicas is the number of simulated experiments per case: 1,000 as the
// issue asks, fewer under -short.
func replicas() int {
	if testing.Short() {
		return 200
	}
	return 1000
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }
