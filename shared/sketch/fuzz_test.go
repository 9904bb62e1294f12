package sketch

import (
	"math"
	"testing"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/stats"
)

// FuzzDecodeSketch: the latency sketch of an observation batch comes off the
// bus, from any publisher: decoding it must fail cleanly, never panic, and a
// sketch that decodes must answer quantiles.
func FuzzDecodeSketch(f *testing.F) {
	for _, values := range [][]float64{{1}, {0.5, 12, 40, 250}, {0, 1e6}} {
		s := NewSketch()
		for _, v := range values {
			s.Add(v)
		}
		f.Add(s.Encode())
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSketch(b)
		if err != nil {
			return
		}
		for _, q := range []float64{0, 0.5, 0.95, 0.99, 1} {
			if v, ok := s.Quantile(q); ok && math.IsNaN(v) {
				t.Fatalf("quantile %v is NaN", q)
			}
		}
	})
}

// FuzzAggregateAdd: an observation batch as the collector receives it
// (msgpack). Add either refuses it or leaves an aggregate whose values make
// sense: counts ≥ 0, an error rate in [0, 1], finite non-negative latencies.
func FuzzAggregateAdd(f *testing.F) {
	b := batchOf([]float64{210, 3, 5, 8, 13}, 1)
	b.Seq, b.Mirrored, b.Dropped, b.TimeoutMs = 1, 5, map[string]int64{"inflight": 1}, 5000
	b.Pairs = &bus.Pairs{CapMs: 5000}
	b.Pairs.Observe(12, 30, false, true)
	b.Pairs.Observe(4000, 5000, true, true)
	data, err := bus.Marshal(bus.ContentTypeMsgpack, b)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	empty, _ := bus.Marshal(bus.ContentTypeMsgpack, &bus.ObservationBatch{UID: "u", Role: bus.RoleLive})
	f.Add(empty)
	f.Fuzz(func(t *testing.T, data []byte) {
		var b bus.ObservationBatch
		if err := bus.Unmarshal(bus.ContentTypeMsgpack, data, &b); err != nil {
			return
		}
		a := NewAggregate()
		if err := a.Add(&b); err != nil {
			return
		}
		if err := a.Add(&b); err != nil { // the same batch twice merges too
			t.Fatalf("a batch accepted once is refused the second time: %v", err)
		}
		v := a.Values()
		if c := v[experiment.MetricRequestCount]; c == nil || *c < 0 {
			t.Fatalf("request-count %v", c)
		}
		if r := v[experiment.MetricErrorRate]; r != nil && (*r < 0 || *r > 1 || math.IsNaN(*r)) {
			t.Fatalf("error-rate %v", *r)
		}
		for _, name := range []string{experiment.MetricMeanLatency, experiment.MetricP50Latency, experiment.MetricP95Latency, experiment.MetricP99Latency} {
			if x := v[name]; x != nil && (*x < 0 || math.IsNaN(*x) || math.IsInf(*x, 0)) {
				t.Fatalf("%s %v", name, *x)
			}
		}
		if err := a.Pairs.Validate(); err != nil {
			t.Fatalf("merged pairs: %v", err)
		}
		if p := a.Pairs; p.N > 0 {
			sp := stats.Pairs{N: p.N, SumLive: p.SumLive, SumDark: p.SumDark, SumLive2: p.SumLive2, SumDark2: p.SumDark2, SumCross: p.SumCross, DarkFailed: p.DarkFailed, LiveFailed: p.LiveFailed, BothFailed: p.BothFailed}
			rg := stats.Range{Min: 0, Max: p.CapMs}
			for _, f := range []func() (stats.Interval, error){
				func() (stats.Interval, error) { return stats.PairedRatio(sp, rg, 0.95) },
				func() (stats.Interval, error) { return stats.PairedDifference(sp, rg, 0.95) },
				func() (stats.Interval, error) { return stats.PairedErrorDifference(sp, 0.95) },
			} {
				if iv, err := f(); err == nil && !(iv.Lo <= iv.Hi) {
					t.Fatalf("paired interval %v", iv)
				}
			}
		}
		if a.Mirrored < 0 {
			t.Fatalf("mirrored %d", a.Mirrored)
		}
		for reason, n := range a.Dropped {
			if n < 0 {
				t.Fatalf("dropped[%s] %d", reason, n)
			}
		}
	})
}
