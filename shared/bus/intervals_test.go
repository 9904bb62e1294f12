package bus

import (
	"math"
	"testing"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestDecodeEventDropsIntervalsThatCannotBeRight: a snapshot comes from any
// publisher; an interval with a NaN or infinite bound, lo above hi or a
// confidence outside (0, 1) is dropped (no interval), a good one or one
// unbounded on a side is kept.
func TestDecodeEventDropsIntervalsThatCannotBeRight(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	ev := &Event{Type: EventMetrics, Snapshot: &Snapshot{Values: map[string]*float64{}, Intervals: map[string]*experiment.Interval{
		"good":      {Lo: f(1), Hi: f(2), Confidence: 0.95, Method: "betting"},
		"unbounded": {Lo: f(1), Confidence: 0.95},
		"nan":       {Lo: f(math.NaN()), Hi: f(2), Confidence: 0.95},
		"inf":       {Lo: f(1), Hi: f(math.Inf(1)), Confidence: 0.95},
		"reversed":  {Lo: f(3), Hi: f(2), Confidence: 0.95},
		"level":     {Lo: f(1), Hi: f(2), Confidence: 95},
		"nil":       nil,
	}}}
	data, err := Marshal(ContentTypeMsgpack, ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeEvent(ContentTypeMsgpack, data)
	if err != nil {
		t.Fatal(err)
	}
	ivs := got.Snapshot.Intervals
	if len(ivs) != 2 || ivs["good"] == nil || ivs["unbounded"] == nil || ivs["unbounded"].Hi != nil {
		t.Errorf("intervals after decoding: %v, want good and unbounded only", ivs)
	}
}
