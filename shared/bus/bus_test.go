package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

func seed(t *testing.T) *experiment.Experiment {
	t.Helper()
	e, err := experiment.Parse(testenv.RepoFile(t, "examples", "mirroring", "experiment-local.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestCodecRoundTripsEveryEncoding(t *testing.T) {
	e := seed(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	e.Status.StartTime = &now
	for _, ct := range []string{bus.ContentTypeMsgpack, bus.ContentTypeJSON, bus.ContentTypeYAML} {
		t.Run(ct, func(t *testing.T) {
			data, err := bus.Marshal(ct, e)
			if err != nil {
				t.Fatal(err)
			}
			if got := bus.Sniff("", data); got != ct {
				t.Errorf("sniffed %s as %s", ct, got)
			}
			var back experiment.Experiment
			if err := bus.Unmarshal(ct, data, &back); err != nil {
				t.Fatal(err)
			}
			o, bo := e.Spec.Criteria.Objectives, back.Spec.Criteria.Objectives
			if len(bo) != 3 || bo[2].UpperLimit.Cmp(o[2].UpperLimit.Quantity) != 0 || bo[2].UpperLimit.Float64() != 0.01 {
				t.Errorf("objectives did not survive: %+v", bo)
			}
			if back.Spec.Load.Delay.Duration != time.Second || *back.Spec.Load.Rate != 20 {
				t.Errorf("load did not survive: %+v", back.Spec.Load)
			}
			// Decoded without its Go type (darklaunch decode), a duration
			// reads as text, not as bytes.
			var generic map[string]any
			if err := bus.Unmarshal(ct, data, &generic); err != nil {
				t.Fatal(err)
			}
			if d := generic["spec"].(map[string]any)["load"].(map[string]any)["delay"]; d != "1s" {
				t.Errorf("spec.load.delay decodes generically as %#v, want \"1s\"", d)
			}
			if !back.Status.StartTime.Equal(now) || back.Key() != e.Key() {
				t.Errorf("start %v key %s", back.Status.StartTime, back.Key())
			}
		})
	}
}

func TestParseRef(t *testing.T) {
	for in, want := range map[string]bus.Ref{
		"mirroring":                    {Namespace: "default", Name: "mirroring"},
		"team-a/mirroring":             {Namespace: "team-a", Name: "mirroring"},
		`{"namespace":"x","name":"y"}`: {Namespace: "x", Name: "y"},
		"name: web\nnamespace: x\n":    {Namespace: "x", Name: "web"},
		"  \"default/mirroring\"\n":    {Namespace: "default", Name: "mirroring"},
	} {
		got, err := bus.ParseRef("", []byte(in))
		if err != nil || got != want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a/b/c", "Bad_Name", `{"name":""}`} {
		if _, err := bus.ParseRef("", []byte(in)); !errors.Is(err, shared.ErrInvalid) {
			t.Errorf("ParseRef(%q) = %v, want ErrInvalid", in, err)
		}
	}
}

func TestStoreCreateConflictAndCompareAndSwap(t *testing.T) {
	srv := testenv.StartNATS(t)
	ctx := context.Background()
	infra, err := bus.EnsureInfra(ctx, srv.Conn(t), bus.StreamLimits{})
	if err != nil {
		t.Fatal(err)
	}
	// EnsureInfra is idempotent: every service calls it at start-up.
	if _, err := bus.EnsureInfra(ctx, srv.Conn(t), bus.StreamLimits{}); err != nil {
		t.Fatalf("second EnsureInfra: %v", err)
	}
	st := infra.Store
	e := seed(t)
	if _, err := st.Create(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, e); !errors.Is(err, shared.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	// 20 concurrent increments through Update: none may be lost.
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := st.Update(ctx, "default", "mirroring-local", func(x *experiment.Experiment) error {
				x.Status.CompletedIterations++
				return nil
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, rev, err := st.Get(ctx, "default", "mirroring-local")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.CompletedIterations != 20 {
		t.Errorf("completed = %d after 20 concurrent updates, want 20", got.Status.CompletedIterations)
	}
	if _, err := st.Replace(ctx, got, rev-1); !errors.Is(err, shared.ErrConflict) {
		t.Errorf("replace at a stale revision: %v, want ErrConflict", err)
	}
	seen := make(chan bus.Change, 4)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go st.Watch(wctx, func(c bus.Change) { seen <- c }, nil)
	if c := <-seen; c.Experiment == nil || c.Experiment.Status.CompletedIterations != 20 {
		t.Errorf("watch's first value %+v", c)
	}
	if err := st.Delete(ctx, "default", "mirroring-local", 0); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-seen:
		if c.Experiment != nil || c.Key != "default.mirroring-local" {
			t.Errorf("watch after delete %+v", c)
		}
	case <-time.After(testenv.Within):
		t.Fatal("watch did not see the deletion")
	}
	if _, _, err := st.Get(ctx, "default", "mirroring-local"); !errors.Is(err, shared.ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
}

// TestDecodeEventCanonicalFloats: what other services publish reaches its
// reader with finite floats only; a value that is not finite is unavailable
// and says why.
func TestDecodeEventCanonicalFloats(t *testing.T) {
	nan, inf, ninf, ok := math.NaN(), math.Inf(1), math.Inf(-1), 12.5
	ev := &bus.Event{Type: bus.EventMetrics, UID: "u1",
		Routing: &bus.Routing{Ready: true, Status: experiment.RoutingStatus{Percent: nan}},
		Load:    &bus.LoadProgress{Sent: 3, AchievedRate: inf, TargetRate: 2, P50Ms: nan, P95Ms: ninf, P99Ms: nan},
		Snapshot: &bus.Snapshot{Iteration: 1, Role: bus.RoleDark,
			Values: map[string]*float64{"a": &nan, "b": &inf, "c": &ninf, "d": &ok, "e": nil},
			Errors: map[string]string{"a": "query failed", "e": "no data"}},
	}
	data, err := bus.Marshal(bus.ContentTypeMsgpack, ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := bus.DecodeEvent(bus.ContentTypeMsgpack, data)
	if err != nil {
		t.Fatal(err)
	}
	if p := got.Routing.Status.Percent; p != 0 {
		t.Errorf("routing percent %v, want 0", p)
	}
	if l := got.Load; l.AchievedRate != 0 || l.TargetRate != 2 || l.P50Ms != 0 || l.P95Ms != 0 || l.P99Ms != 0 || l.Sent != 3 {
		t.Errorf("load %+v", l)
	}
	s := got.Snapshot
	for metric, why := range map[string]string{"a": "NaN", "b": "+Inf", "c": "-Inf", "e": "no data"} {
		if v, present := s.Values[metric]; !present || v != nil || s.Errors[metric] != why {
			t.Errorf("%s: value %v (present %v), reason %q; want unavailable: %s", metric, v, present, s.Errors[metric], why)
		}
	}
	if v := s.Values["d"]; v == nil || *v != 12.5 {
		t.Errorf("a finite value changed: %v", v)
	}
	if _, err := json.Marshal(got); err != nil {
		t.Errorf("a decoded event is not JSON: %v", err)
	}
}

// TestBatchBeforeAtWindowEdges: a slotted batch counts in the windows that
// hold its slot's midpoint, so a slot ending at a window's end is in and
// one starting there is out, even from a proxy whose grid is a little off;
// a batch from a router before slots (no "slotted" field) counts by its
// start, as it did.
func TestBatchBeforeAtWindowEdges(t *testing.T) {
	end := time.Unix(1700000010, 0).UTC()
	ms := func(d int) time.Time { return end.Add(time.Duration(d) * time.Millisecond) }
	for _, tc := range []struct {
		name        string
		start, stop time.Time
		slotted     bool
		want        bool
	}{
		{"slot ending at the end", ms(-1000), ms(0), true, true},
		{"slot starting at the end", ms(0), ms(1000), true, false},
		{"slot of a grid 100ms early", ms(-100), ms(900), true, false},
		{"slot of a grid 100ms late", ms(-900), ms(100), true, true},
		{"flush period straddling the end", ms(-1), ms(999), false, true},
		{"flush period starting at the end", ms(0), ms(1000), false, false},
	} {
		b := &bus.ObservationBatch{Start: tc.start, End: tc.stop, Slotted: tc.slotted}
		if got := b.Before(end); got != tc.want {
			t.Errorf("%s: Before = %v, want %v", tc.name, got, tc.want)
		}
	}

	// A batch as a router before slots encoded it.
	type legacy struct {
		UID   string    `json:"uid"`
		Role  string    `json:"role"`
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
		Count int64     `json:"count"`
	}
	data, err := bus.Marshal(bus.ContentTypeMsgpack, &legacy{UID: "u", Role: bus.RoleLive, Start: ms(-1), End: ms(999), Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	var b bus.ObservationBatch
	if err := bus.Unmarshal(bus.ContentTypeMsgpack, data, &b); err != nil {
		t.Fatal(err)
	}
	if b.Slotted || b.Count != 3 || !b.Before(end) {
		t.Errorf("legacy batch decoded as %+v (before the end: %v), want unslotted, counted by its start", b, b.Before(end))
	}
}
