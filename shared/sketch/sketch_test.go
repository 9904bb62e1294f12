package sketch

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// exactQuantile is the q-quantile of sorted values with the lower-rank
// convention DDSketch uses.
func exactQuantile(sorted []float64, q float64) float64 {
	return sorted[int(q*float64(len(sorted)-1))]
}

func TestSketchRelativeAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	shapes := map[string]func() float64{
		"lognormal":  func() float64 { return math.Exp(rng.NormFloat64()*0.8 + 2) },
		"bimodal":    func() float64 { return []float64{4, 180}[rng.IntN(2)] + rng.Float64() },
		"long tail":  func() float64 { return 1 + rng.ExpFloat64()*30 },
		"sub-millis": func() float64 { return 0.05 + rng.Float64()*0.9 },
	}
	for name, draw := range shapes {
		t.Run(name, func(t *testing.T) {
			s := NewSketch()
			vals := make([]float64, 20000)
			for i := range vals {
				vals[i] = draw()
				s.Add(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0.5, 0.95, 0.99} {
				got, ok := s.Quantile(q)
				want := exactQuantile(vals, q)
				if !ok || math.Abs(got-want)/want > RelativeAccuracy {
					t.Errorf("p%v = %v, exact %v: relative error %.4f > %v", q*100, got, want, math.Abs(got-want)/want, RelativeAccuracy)
				}
			}
		})
	}
}

// TestAggregateMergesBatches checks that merging per-slot batches gives
// the same values as one recorder seeing every request in one slot.
func TestAggregateMergesBatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	t0 := time.Unix(1700000000, 0)
	whole := NewRecorder(Grid{Origin: t0, Width: time.Hour}, 0)
	slotted := NewRecorder(Grid{Origin: t0, Width: 100 * time.Millisecond}, 1)
	slotted.SetPairCap(500)
	var sum float64
	var n, errs int64
	want := bus.Pairs{CapMs: 500} // whole milliseconds: every sum is exact
	for i := range 1000 {
		ms := 1 + rng.Float64()*99
		failed := rng.IntN(10) == 0
		at := t0.Add(time.Duration(i) * time.Millisecond) // 10 slots of 100
		slotted.Observe(at, ms, failed)
		live, dark := float64(1+rng.IntN(200)), float64(1+rng.IntN(600))
		slotted.ObservePair(at, live, dark, rng.IntN(5) == 0, failed)
		want.Observe(live, min(dark, 500), false, false)
		whole.Observe(at, ms, failed)
		if i%100 == 0 {
			slotted.Tally(at, 0)
		}
		sum += ms
		n++
		if failed {
			errs++
		}
	}
	agg := NewAggregate()
	slots := slotted.Flush(time.Time{})
	if len(slots) != 10 {
		t.Fatalf("%d slots, want 10", len(slots))
	}
	for _, s := range slots {
		b := s.Batch("u", bus.RoleDark, "r")
		b.Mirrored, b.Dropped = s.Tallies[0], map[string]int64{"inflight": 2}
		if err := agg.Add(b); err != nil {
			t.Fatal(err)
		}
	}
	v := agg.Values()
	if *v[experiment.MetricRequestCount] != float64(n) || *v[experiment.MetricErrorCount] != float64(errs) {
		t.Errorf("counts %v/%v, want %d/%d", *v[experiment.MetricRequestCount], *v[experiment.MetricErrorCount], n, errs)
	}
	if got := *v[experiment.MetricMeanLatency]; math.Abs(got-sum/float64(n)) > 1e-9 {
		t.Errorf("mean %v, want %v", got, sum/float64(n))
	}
	if got := *v[experiment.MetricErrorRate]; got != float64(errs)/float64(n) {
		t.Errorf("error rate %v", got)
	}
	all := whole.Flush(time.Time{})
	ws, err := DecodeSketch(all[0].Sketch)
	if err != nil || all[0].Count != n {
		t.Fatal(err, all[0].Count)
	}
	for _, q := range []float64{0.5, 0.95, 0.99} {
		a, _ := agg.Sketch.Quantile(q)
		b, _ := ws.Quantile(q)
		if a != b {
			t.Errorf("merged p%v = %v, whole = %v: merging must be exact", q*100, a, b)
		}
	}
	if agg.Pairs.N != 1000 || agg.Pairs.SumLive != want.SumLive || agg.Pairs.SumDark != want.SumDark || agg.Pairs.SumLive2 != want.SumLive2 ||
		agg.Pairs.SumDark2 != want.SumDark2 || agg.Pairs.SumCross != want.SumCross || agg.Pairs.CapMs != 500 {
		t.Errorf("merged pairs %+v, want the sums %+v", agg.Pairs, want)
	}
	if f := agg.Pairs.DarkFailed + agg.Pairs.LiveFailed + agg.Pairs.BothFailed; f == 0 || agg.Pairs.BothFailed == 0 || agg.Pairs.DarkFailed == 0 || agg.Pairs.LiveFailed == 0 {
		t.Errorf("failed pairs %+v", agg.Pairs)
	}
	if agg.Mirrored != 10 || agg.Dropped["inflight"] != 20 {
		t.Errorf("mirror stats %d %v", agg.Mirrored, agg.Dropped)
	}
}

func TestNoRequestsIsUnavailableNotZero(t *testing.T) {
	v := NewAggregate().Values()
	if *v[experiment.MetricRequestCount] != 0 {
		t.Error("request-count must be 0")
	}
	for _, m := range []string{experiment.MetricMeanLatency, experiment.MetricErrorRate, experiment.MetricP95Latency} {
		if v[m] != nil {
			t.Errorf("%s = %v with no requests, want unavailable (nil)", m, *v[m])
		}
	}
	if _, err := DecodeSketch([]byte{0xff, 0x01}); err == nil {
		t.Error("garbage decoded as a sketch")
	}
}

func BenchmarkRecorderObserve(b *testing.B) {
	now := time.Now()
	r := NewRecorder(Grid{Origin: now, Width: time.Second}, 0)
	for i := 0; b.Loop(); i++ {
		r.Observe(now, float64(i%500)+0.5, false)
	}
}

func BenchmarkRecorderObserveParallel(b *testing.B) {
	now := time.Now()
	r := NewRecorder(Grid{Origin: now, Width: time.Second}, 0)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Observe(now, float64(i%500)+0.5, i%50 == 0)
			i++
		}
	})
}

// TestAddRefusesIncoherentBatches: a batch from the bus that does not hold
// together is refused with the field named, and the aggregate is unchanged.
func TestAddRefusesIncoherentBatches(t *testing.T) {
	good := *batchOf([]float64{5, 7}, 0)
	good.Errors = 1
	other := NewSketch()
	other.Add(5)
	huge := NewSketch()
	huge.Add(5)
	huge.s.Add(1e12) // bypasses Sketch.Add: a latency no proxy reports
	lowAccuracy, _ := ddsketch.NewDefaultDDSketch(0.05)
	lowAccuracy.Add(5)
	lowAccuracy.Add(7)
	var lowBytes []byte
	lowAccuracy.Encode(&lowBytes, false)

	for name, tc := range map[string]struct {
		mutate func(*bus.ObservationBatch)
		want   string
	}{
		"negative count":    {func(b *bus.ObservationBatch) { b.Count = -1 }, "count -1"},
		"errors over count": {func(b *bus.ObservationBatch) { b.Errors = 3 }, "errors 3"},
		"NaN sum":           {func(b *bus.ObservationBatch) { b.SumMs = math.NaN() }, "sumMs NaN"},
		"negative mirrored": {func(b *bus.ObservationBatch) { b.Mirrored = -2 }, "mirrored -2"},
		"negative dropped":  {func(b *bus.ObservationBatch) { b.Dropped = map[string]int64{"inflight": -1} }, "dropped[inflight]"},
		"no sketch":         {func(b *bus.ObservationBatch) { b.Sketch = nil }, "without a latency sketch"},
		"sketch count":      {func(b *bus.ObservationBatch) { b.Sketch = other.Encode() }, "holds 1 latencies, the count says 2"},
		"sketch range":      {func(b *bus.ObservationBatch) { b.Sketch = huge.Encode(); b.Count = 2 }, "outside"},
		"sketch mapping":    {func(b *bus.ObservationBatch) { b.Sketch = lowBytes }, "index mapping"},
		"sketch too large":  {func(b *bus.ObservationBatch) { b.Sketch = make([]byte, MaxSketchBytes+1) }, "bytes"},
		"NaN timeout":       {func(b *bus.ObservationBatch) { b.TimeoutMs = math.NaN() }, "timeoutMs NaN"},
		"negative timeout":  {func(b *bus.ObservationBatch) { b.TimeoutMs = -1 }, "timeoutMs -1"},
		"pairs over count": {func(b *bus.ObservationBatch) {
			b.Pairs = &bus.Pairs{N: 1, DarkFailed: 2, CapMs: 10}
		}, "pairs.n 1"},
		"pairs over cap": {func(b *bus.ObservationBatch) { b.Pairs = &bus.Pairs{N: 1, SumDark: 11, CapMs: 10} }, "pairs.sumDark 11"},
	} {
		t.Run(name, func(t *testing.T) {
			b := good
			tc.mutate(&b)
			a := NewAggregate()
			err := a.Add(&b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
			if a.Count != 0 || a.Sketch.Count() != 0 || a.Mirrored != 0 || len(a.Dropped) != 0 || a.Pairs != (bus.Pairs{}) {
				t.Errorf("a refused batch changed the aggregate: %+v", a)
			}
		})
	}
	a := NewAggregate()
	if err := a.Add(&good); err != nil || a.Count != 2 {
		t.Fatalf("the coherent batch: %v, count %d", err, a.Count)
	}
	// The latency bound of batches merged is the largest (two proxies with
	// different mirror timeouts): every latency is within it.
	for _, ms := range []float64{5000, 1000, 0} {
		b := good
		b.TimeoutMs = ms
		if err := a.Add(&b); err != nil {
			t.Fatal(err)
		}
	}
	if a.TimeoutMs != 5000 {
		t.Errorf("timeoutMs %v after batches of 5000, 1000 and 0, want 5000", a.TimeoutMs)
	}
}
