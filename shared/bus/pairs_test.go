package bus_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

func somePairs() *bus.Pairs {
	var p bus.Pairs
	p.CapMs = 5000
	p.Observe(10, 13, false, false)
	p.Observe(20, 5000, false, true)
	p.Observe(30, 31, true, false)
	return &p
}

// TestBatchPairsRoundTrip: a dark batch's pairs survive msgpack and JSON
// with the field names of docs/protocol.md, and a batch from a router
// before pairs still decodes, without them.
func TestBatchPairsRoundTrip(t *testing.T) {
	now := time.Unix(1700000000, 0).UTC()
	b := &bus.ObservationBatch{UID: "u1", Role: bus.RoleDark, Router: "r1", Seq: 7, Start: now, End: now.Add(time.Second), Slotted: true, Count: 3, Pairs: somePairs()}
	for _, ct := range []string{bus.ContentTypeMsgpack, bus.ContentTypeJSON} {
		data, err := bus.Marshal(ct, b)
		if err != nil {
			t.Fatal(err)
		}
		var back bus.ObservationBatch
		if err := bus.Unmarshal(ct, data, &back); err != nil {
			t.Fatal(err)
		}
		if back.Pairs == nil || *back.Pairs != *b.Pairs {
			t.Errorf("%s: pairs %+v, want %+v", ct, back.Pairs, b.Pairs)
		}
		var generic map[string]any
		if err := bus.Unmarshal(ct, data, &generic); err != nil {
			t.Fatal(err)
		}
		pairs, _ := generic["pairs"].(map[string]any)
		for _, f := range []string{"n", "sumLive", "sumDark", "sumLive2", "sumDark2", "sumCross", "darkFailed", "liveFailed", "capMs"} {
			if _, ok := pairs[f]; !ok {
				t.Errorf("%s: pairs.%s missing from %v", ct, f, generic["pairs"])
			}
		}
	}
	// What a router before pairs published.
	old := map[string]any{"uid": "u1", "role": "dark", "router": "r1", "seq": 1, "start": now, "end": now, "count": 0, "errors": 0, "sumMs": 0}
	data, err := bus.Marshal(bus.ContentTypeMsgpack, old)
	if err != nil {
		t.Fatal(err)
	}
	var back bus.ObservationBatch
	if err := bus.Unmarshal(bus.ContentTypeMsgpack, data, &back); err != nil || back.Pairs != nil || back.UID != "u1" {
		t.Errorf("an older batch: %+v, %v", back, err)
	}
	if data, _ := bus.Marshal(bus.ContentTypeJSON, &bus.ObservationBatch{UID: "u1"}); strings.Contains(string(data), "pairs") {
		t.Errorf("a batch without pairs names them: %s", data)
	}
}

func TestPairsValidate(t *testing.T) {
	if err := somePairs().Validate(); err != nil {
		t.Errorf("valid pairs: %v", err)
	}
	if err := (&bus.Pairs{}).Validate(); err != nil {
		t.Errorf("no pairs: %v", err)
	}
	for name, c := range map[string]struct {
		change func(*bus.Pairs)
		want   string
	}{
		"negative n":      {func(p *bus.Pairs) { p.N = -1 }, "pairs.n -1"},
		"too many failed": {func(p *bus.Pairs) { p.DarkFailed = 3 }, "pairs.n 3: fewer than the 4 failed"},
		"no cap":          {func(p *bus.Pairs) { p.CapMs = 0 }, "pairs.capMs 0"},
		"NaN sum":         {func(p *bus.Pairs) { p.SumDark = math.NaN() }, "pairs.sumDark NaN"},
		"above the cap":   {func(p *bus.Pairs) { p.SumLive = 3*5000 + 1 }, "pairs.sumLive 15001: outside [0, 15000"},
		"negative cross":  {func(p *bus.Pairs) { p.SumCross = -1 }, "pairs.sumCross -1"},
		"huge failed":     {func(p *bus.Pairs) { p.BothFailed = bus.MaxPairs + 1 }, "pairs.bothFailed"},
	} {
		p := somePairs()
		c.change(p)
		if err := p.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
}

func TestPairsAddKeepsTheLargerCap(t *testing.T) {
	a, b := somePairs(), somePairs()
	b.CapMs = 1000
	a.Add(b)
	a.Add(nil)
	want := bus.Pairs{N: 6, SumLive: 120, SumDark: 2 * 5044, SumLive2: 2 * 1400, SumDark2: 2 * (169 + 5000*5000 + 961), SumCross: 2 * (130 + 100000 + 930), DarkFailed: 2, LiveFailed: 2, CapMs: 5000}
	if *a != want {
		t.Errorf("merged %+v, want %+v capped at 5000", *a, want)
	}
}

// TestDecodeEventCanonicalComparison: a comparison's values that are not
// finite become unavailable, its interval ends unbounded, so the decoded
// event is JSON.
func TestDecodeEventCanonicalComparison(t *testing.T) {
	nan, inf, one := math.NaN(), math.Inf(1), 1.0
	ev := &bus.Event{Type: bus.EventMetrics, UID: "u1", Snapshot: &bus.Snapshot{Iteration: 1, Role: bus.RoleDark,
		Paired: &bus.Comparison{Method: bus.ComparisonPaired, Pairs: 3,
			MeanLatencyRatio:    &bus.Relative{Value: &nan, Interval: &experiment.Interval{Lo: &one, Hi: &inf, Confidence: nan}},
			ErrorRateDifference: &bus.Relative{Value: &one},
			Sums:                &bus.Pairs{N: 1, SumLive: nan, CapMs: inf}}}}
	data, err := bus.Marshal(bus.ContentTypeMsgpack, ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := bus.DecodeEvent(bus.ContentTypeMsgpack, data)
	if err != nil {
		t.Fatal(err)
	}
	c := got.Snapshot.Paired
	if r := c.MeanLatencyRatio; r.Value != nil || c.Errors["meanLatencyRatio"] != "NaN" || r.Interval.Hi != nil || *r.Interval.Lo != 1 || r.Interval.Confidence != 0 {
		t.Errorf("ratio %+v %+v, errors %v", r, r.Interval, c.Errors)
	}
	if v := c.ErrorRateDifference.Value; v == nil || *v != 1 {
		t.Errorf("a finite value changed: %v", v)
	}
	if _, err := json.Marshal(got); err != nil {
		t.Errorf("a decoded event is not JSON: %v", err)
	}
}
