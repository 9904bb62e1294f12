package bus

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// FuzzUnmarshal: every message a service reads off the bus (events, the
// stored experiments, observation batches) goes through Unmarshal, and any
// publisher can send one. Malformed input is an error, never a panic; a
// message that decodes can be encoded again.
func FuzzUnmarshal(f *testing.F) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	exp := &experiment.Experiment{
		APIVersion: experiment.APIVersionV2Alpha1, Kind: experiment.Kind,
		Metadata: experiment.Metadata{Name: "mirroring", Namespace: "default", UID: "u1", CreationTimestamp: &now},
		Spec:     experiment.Spec{Target: "default/sample-app"},
	}
	rate, nan := 0.5, math.NaN()
	seeds := []any{
		&Event{Type: EventMetrics, Namespace: "default", Name: "mirroring", UID: "u1", Time: now, Source: "collector",
			Snapshot: &Snapshot{Iteration: 1, Role: RoleDark, Start: now, End: now, Values: map[string]*float64{experiment.MetricErrorRate: &rate, experiment.MetricMeanLatency: nil, experiment.MetricP95Latency: &nan}}},
		&Event{Type: EventRouting, Time: now, Routing: &Routing{Ready: true, Status: experiment.RoutingStatus{Percent: nan}}},
		&Event{Type: EventCreated, Time: now, Experiment: exp},
		&Event{Type: EventLoad, Time: now, Load: &LoadProgress{Sent: 3, Succeeded: 2, Failed: 1}},
		&ObservationBatch{UID: "u1", Role: RoleLive, Start: now, End: now, Count: 2, Sketch: []byte{1, 2, 3}, Dropped: map[string]int64{"inflight": 1}},
		&ObservationBatch{UID: "u1", Role: RoleDark, Start: now, End: now, Count: 1, Pairs: &Pairs{N: 1, SumLive: 2, SumDark: nan, DarkFailed: 1, CapMs: 5000}},
		&Event{Type: EventMetrics, Time: now, Snapshot: &Snapshot{Role: RoleDark, Paired: &Comparison{Method: ComparisonPaired, Pairs: 1,
			MeanLatencyRatio: &Relative{Value: &nan, Interval: &experiment.Interval{Lo: &rate, Hi: &nan, Confidence: 0.95, Method: "fieller"}},
			Sums:             &Pairs{N: 1, CapMs: nan}}}},
		exp,
	}
	for _, s := range seeds {
		for _, ct := range []string{ContentTypeMsgpack, ContentTypeJSON} {
			b, err := Marshal(ct, s)
			if err != nil && ct == ContentTypeJSON {
				continue // a NaN travels as msgpack only
			}
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte("\x89\xa5start\xc0")) // a nil time.Time: msgpack v5 panics on it
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range []any{&Event{}, &ObservationBatch{}, &experiment.Experiment{}} {
			if err := Unmarshal("", data, v); err != nil {
				continue
			}
			if _, err := Marshal(ContentTypeMsgpack, v); err != nil {
				t.Fatalf("%T decoded but does not encode: %v", v, err)
			}
		}
		// DecodeEvent's canonical form: what other services publish can be
		// written as JSON (a reply, the state the judge derives from it).
		if ev, err := DecodeEvent("", data); err == nil {
			if _, err := json.Marshal([]any{ev.Routing, ev.Load, ev.Snapshot}); err != nil {
				t.Fatalf("a decoded event's sections are not JSON: %v", err)
			}
		}
	})
}
