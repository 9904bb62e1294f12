// Package sketch is the arithmetic of observed requests: a mergeable latency
// sketch with 1 % relative accuracy (DDSketch), the recorder the proxy
// writes to on its hot path, and the aggregate the collector builds from
// observation batches and turns into Iter8's metric values. (The services'
// own Prometheus metrics are package telemetry's; the collector's PromQL
// metric definitions are the collector's.)
package sketch

import (
	"errors"
	"fmt"
	"math"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/store"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// RelativeAccuracy of every latency quantile darklaunch reports.
const RelativeAccuracy = 0.01

// Sketch is a latency distribution in milliseconds. Quantiles are within 1 %
// of the true value, whatever the shape, and sketches merge exactly — unlike
// Prometheus' fixed buckets, which are off by 7–40 % on realistic shapes.
type Sketch struct {
	s *ddsketch.DDSketch
}

// NewSketch returns an empty sketch.
func NewSketch() *Sketch {
	s, err := ddsketch.NewDefaultDDSketch(RelativeAccuracy)
	if err != nil {
		panic(err) // only for an accuracy outside (0, 1)
	}
	return &Sketch{s: s}
}

// Add records one latency in milliseconds; negative and NaN values count as 0.
func (s *Sketch) Add(ms float64) {
	if !(ms > 0) || math.IsInf(ms, 0) {
		ms = 0
	}
	_ = s.s.Add(ms)
}

// Merge adds o into s.
func (s *Sketch) Merge(o *Sketch) error { return s.s.MergeWith(o.s) }

// Count is the number of recorded values.
func (s *Sketch) Count() float64 { return s.s.GetCount() }

// Quantile returns the q-quantile (0 ≤ q ≤ 1); false when empty.
func (s *Sketch) Quantile(q float64) (float64, bool) {
	if s.s.IsEmpty() {
		return 0, false
	}
	v, err := s.s.GetValueAtQuantile(q)
	if err != nil {
		return 0, false
	}
	return v, true
}

// Encode serialises the sketch (DDSketch's own compact encoding).
func (s *Sketch) Encode() []byte {
	var b []byte
	s.s.Encode(&b, false)
	return b
}

// Bounds of an encoded sketch from the bus. A sketch of real latencies
// (between MinSketchMs and MaxSketchMs) spans about 2,000 bins at 1 %
// accuracy, a few KiB encoded.
const (
	MaxSketchBytes = 64 << 10
	MinSketchMs    = 1e-9 // a positive latency below a picosecond is not one
	MaxSketchMs    = 1e9  // 11.6 days
)

// sketchMapping is the index mapping of every sketch NewSketch makes.
var sketchMapping = NewSketch().s.IndexMapping

// DecodeSketch reads what Encode wrote. A sketch comes off the bus, from any
// publisher, so it is decoded into a sparse store and checked before it is
// merged anywhere: a 25-byte sketch can name bin indexes whose dense store
// would take gigabytes (found by FuzzAggregateAdd). It must use darklaunch's
// index mapping, hold no negative values, only latencies between
// MinSketchMs and MaxSketchMs, and finite non-negative counts.
func DecodeSketch(b []byte) (*Sketch, error) {
	if len(b) > MaxSketchBytes {
		return nil, fmt.Errorf("decode latency sketch: %d bytes, more than the %d a sketch of real latencies needs", len(b), MaxSketchBytes)
	}
	// No mapping given: the encoding must carry its own (Encode writes it),
	// which must be darklaunch's.
	sparse, err := ddsketch.DecodeDDSketch(b, store.SparseStoreConstructor, nil)
	if err != nil {
		return nil, fmt.Errorf("decode latency sketch: %w", err)
	}
	if sparse.IndexMapping == nil || !sparse.IndexMapping.Equals(sketchMapping) {
		return nil, errors.New("decode latency sketch: not darklaunch's index mapping (1 % relative accuracy)")
	}
	if !sparse.GetNegativeValueStore().IsEmpty() {
		return nil, errors.New("decode latency sketch: negative latencies")
	}
	if z := sparse.GetZeroCount(); !(z >= 0) || math.IsInf(z, 0) {
		return nil, fmt.Errorf("decode latency sketch: zero count %v", z)
	}
	lo, hi := sketchMapping.Index(MinSketchMs), sketchMapping.Index(MaxSketchMs)
	var bad error
	sparse.GetPositiveValueStore().ForEach(func(index int, count float64) bool {
		switch {
		case index < lo || index > hi:
			bad = fmt.Errorf("decode latency sketch: bin %d holds latencies outside [%g, %g] ms", index, MinSketchMs, MaxSketchMs)
		case !(count >= 0) || math.IsInf(count, 0):
			bad = fmt.Errorf("decode latency sketch: bin %d has count %v", index, count)
		}
		return bad != nil
	})
	if bad != nil {
		return nil, bad
	}
	s := NewSketch()
	if err := s.s.MergeWith(sparse); err != nil {
		return nil, fmt.Errorf("decode latency sketch: %w", err)
	}
	return s, nil
}

// Aggregate is the cumulative measurement of one version: the sum of the
// observation batches from the experiment's start to a point in time.
type Aggregate struct {
	Count    int64
	Errors   int64
	SumMs    float64
	Sketch   *Sketch
	Mirrored int64
	Dropped  map[string]int64
	// TimeoutMs is the largest of the batches' TimeoutMs: the bound on
	// every latency recorded, 0 when none is known.
	TimeoutMs float64
	// Pairs sums the pairs of live and dark answers (dark batches).
	Pairs bus.Pairs
}

// NewAggregate returns an empty aggregate.
func NewAggregate() *Aggregate { return &Aggregate{Sketch: NewSketch()} }

// MaxBatchCount bounds the requests one observation batch may report: far
// above what one proxy observes in a slot, far below an overflow.
const MaxBatchCount = 1 << 40

// Add merges one batch, or refuses it, changing nothing, when it does not
// hold together: negative or oversized counts, more errors than requests, a
// latency sum that is not a finite non-negative number, pairs that
// bus.Pairs.Validate refuses, or a sketch that does not decode or does not
// hold exactly the batch's count of latencies.
func (a *Aggregate) Add(b *bus.ObservationBatch) error {
	switch {
	case b.Count < 0 || b.Count > MaxBatchCount:
		return fmt.Errorf("observation batch: count %d outside [0, %d]", b.Count, int64(MaxBatchCount))
	case b.Errors < 0 || b.Errors > b.Count:
		return fmt.Errorf("observation batch: errors %d outside [0, count %d]", b.Errors, b.Count)
	case !(b.SumMs >= 0) || math.IsInf(b.SumMs, 0):
		return fmt.Errorf("observation batch: sumMs %v is not a finite non-negative number", b.SumMs)
	case b.Mirrored < 0 || b.Mirrored > MaxBatchCount:
		return fmt.Errorf("observation batch: mirrored %d outside [0, %d]", b.Mirrored, int64(MaxBatchCount))
	case !(b.TimeoutMs >= 0) || b.TimeoutMs > MaxSketchMs:
		return fmt.Errorf("observation batch: timeoutMs %v outside [0, %g]", b.TimeoutMs, MaxSketchMs)
	case b.Count > 0 && len(b.Sketch) == 0:
		return fmt.Errorf("observation batch: count %d without a latency sketch", b.Count)
	}
	for reason, n := range b.Dropped {
		if n < 0 || n > MaxBatchCount {
			return fmt.Errorf("observation batch: dropped[%s] %d outside [0, %d]", reason, n, int64(MaxBatchCount))
		}
	}
	if b.Pairs != nil {
		if err := b.Pairs.Validate(); err != nil {
			return fmt.Errorf("observation batch: %w", err)
		}
	}
	if len(b.Sketch) > 0 {
		s, err := DecodeSketch(b.Sketch)
		if err != nil {
			return err
		}
		if n := s.Count(); n != float64(b.Count) {
			return fmt.Errorf("observation batch: the sketch holds %v latencies, the count says %d", n, b.Count)
		}
		if err := a.Sketch.Merge(s); err != nil {
			return err
		}
	}
	a.Count += b.Count
	a.Errors += b.Errors
	a.SumMs += b.SumMs
	a.Mirrored += b.Mirrored
	a.TimeoutMs = max(a.TimeoutMs, b.TimeoutMs)
	for reason, n := range b.Dropped {
		if a.Dropped == nil {
			a.Dropped = map[string]int64{}
		}
		a.Dropped[reason] += n
	}
	a.Pairs.Add(b.Pairs)
	return nil
}

// Values computes every metric darklaunch knows. With no request, the
// counts are 0 and every ratio and latency is unavailable (nil), so an
// objective on them is false, as in Iter8.
func (a *Aggregate) Values() map[string]*float64 {
	v := map[string]*float64{
		experiment.MetricRequestCount: ptr(float64(a.Count)),
		experiment.MetricErrorCount:   ptr(float64(a.Errors)),
		experiment.MetricErrorRate:    nil,
		experiment.MetricMeanLatency:  nil,
		experiment.MetricP50Latency:   nil,
		experiment.MetricP95Latency:   nil,
		experiment.MetricP99Latency:   nil,
	}
	if a.Count == 0 {
		return v
	}
	v[experiment.MetricErrorRate] = ptr(float64(a.Errors) / float64(a.Count))
	v[experiment.MetricMeanLatency] = ptr(a.SumMs / float64(a.Count))
	for name, q := range map[string]float64{experiment.MetricP50Latency: 0.50, experiment.MetricP95Latency: 0.95, experiment.MetricP99Latency: 0.99} {
		if x, ok := a.Sketch.Quantile(q); ok {
			v[name] = ptr(x)
		}
	}
	return v
}

func ptr(f float64) *float64 { return &f }
