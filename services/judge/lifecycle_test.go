package judge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// lifecycleCase is one file of testdata/lifecycle: a stored experiment,
// facts stepped one after the other, and what each must leave and publish.
// testdata/lifecycle/README.md says how to write one.
type lifecycleCase struct {
	Description string `json:"description"`
	Limits      struct {
		InitTimeout    string `json:"initTimeout"`
		MetricsTimeout string `json:"metricsTimeout"`
	} `json:"limits"`
	// State is merged over the seed experiment; absent: none stored.
	State json.RawMessage `json:"state"`
	Steps []lifecycleStep `json:"steps"`
}

type lifecycleStep struct {
	At time.Time `json:"at"`
	// Exactly one fact.
	Event  *caseEvent `json:"event"`
	Tick   *Tick      `json:"tick"`
	Create *struct {
		UID      string          `json:"uid"`
		Document json.RawMessage `json:"document"`
	} `json:"create"`
	Delete *struct{} `json:"delete"`
	Want   struct {
		Unchanged bool  `json:"unchanged"`
		Removed   bool  `json:"removed"`
		State     any   `json:"state"`
		Events    []any `json:"events"`
		Count     Count `json:"count"`
		Error     *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Log []string `json:"log"`
	} `json:"want"`
}

// caseEvent is an event as a case writes it: a snapshot value may be "NaN",
// "+Inf" or "-Inf", which JSON (what YAML becomes) cannot hold.
type caseEvent struct {
	bus.Event
	Snapshot *struct {
		bus.Snapshot
		Values map[string]caseValue `json:"values"`
	} `json:"snapshot"`
}

// TestLifecycleCases steps every case of testdata/lifecycle through Step.
// Besides what a case says, every step must leave its input unchanged and
// its result JSON-encodable, and every event, stepped again on the state it
// left, must change nothing and publish the same events under the same
// Msg-Ids: that is how the judge republishes what a crash may have lost.
func TestLifecycleCases(t *testing.T) {
	files, err := filepath.Glob("testdata/lifecycle/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases in testdata/lifecycle: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var c lifecycleCase
			if err := yaml.UnmarshalStrict(must(os.ReadFile(f))(t), &c); err != nil {
				t.Fatal(err)
			}
			if c.Description == "" || len(c.Steps) == 0 {
				t.Fatal("a case needs a description and steps")
			}
			runLifecycle(t, &c)
		})
	}
}

func runLifecycle(t *testing.T, c *lifecycleCase) {
	lim := Limits{InitTimeout: DefaultInitTimeout, MetricsTimeout: DefaultMetricsTimeout}
	for _, l := range []struct {
		s string
		d *time.Duration
	}{{c.Limits.InitTimeout, &lim.InitTimeout}, {c.Limits.MetricsTimeout, &lim.MetricsTimeout}} {
		if s, d := l.s, l.d; s != "" {
			var err error
			if *d, err = time.ParseDuration(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	var cur *experiment.Experiment
	if len(c.State) > 0 && string(c.State) != "null" {
		cur = seedWith(t, nil)
		cur.Metadata.UID = "u1"
		mergeInto(t, cur, c.State)
	}
	for i, step := range c.Steps {
		where := fmt.Sprintf("step %d", i+1)
		if step.At.IsZero() {
			t.Fatalf("%s: no time (at)", where)
		}
		in, ignored := stepInput(t, where, cur, step)
		before := encoded(t, cur)
		var res Result
		if ignored != nil {
			res.Notes = []Note{*ignored}
		} else {
			res = Step(cur, in, step.At, lim)
		}
		if !bytes.Equal(encoded(t, cur), before) {
			t.Errorf("%s: Step changed the experiment it was given", where)
		}
		checkStep(t, where, cur, step, res)
		switch in.(type) {
		case RoutingEvent, LoadEvent, LiveSnapshot, DarkSnapshot:
			again := Step(res.state(cur), in, step.At, lim)
			if again.Changed() || !slices.Equal(msgIDs(again.Out), msgIDs(res.Out)) {
				t.Errorf("%s: stepped again, the event changed the state (%v) or published %v instead of %v",
					where, again.Changed(), msgIDs(again.Out), msgIDs(res.Out))
			}
		}
		switch {
		case res.Remove:
			cur = nil
		case res.Next != nil:
			cur = res.Next
		}
	}
}

// seedWith is the seed experiment, defaulted, with the document in doc
// merged over it.
func seedWith(t *testing.T, doc json.RawMessage) *experiment.Experiment {
	t.Helper()
	e := must(experiment.Parse(seedBytes(t)))(t)
	mergeInto(t, e, doc)
	return e
}

// mergeInto decodes doc over e, strictly: a field e does not have is a typo.
func mergeInto(t *testing.T, e *experiment.Experiment, doc json.RawMessage) {
	t.Helper()
	if len(doc) == 0 {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(e); err != nil {
		t.Fatal(err)
	}
}

// stepInput is the fact a step gives, as the shell would pass it to Step:
// an event goes through the bus's encoding and DecodeEvent.
func stepInput(t *testing.T, where string, cur *experiment.Experiment, step lifecycleStep) (Input, *Note) {
	t.Helper()
	ref := seedWith(t, nil).Metadata
	uid := ""
	if cur != nil {
		ref, uid = cur.Metadata, cur.Metadata.UID
	}
	var n int
	var in Input
	var ignored *Note
	if ce := step.Event; ce != nil {
		n++
		ev := ce.Event
		if ce.Snapshot != nil {
			snap := ce.Snapshot.Snapshot
			snap.Values = map[string]*float64{}
			for k, v := range ce.Snapshot.Values {
				snap.Values[k] = v.v
			}
			ev.Snapshot = &snap
		}
		ev.Namespace, ev.Name, ev.Source = ref.Namespace, ref.Name, "test"
		if ev.UID == "" {
			ev.UID = uid
		}
		if ev.Time.IsZero() {
			ev.Time = step.At
		}
		data := must(bus.Marshal(bus.ContentTypeMsgpack, &ev))(t)
		in, ignored = EventInput(must(bus.DecodeEvent(bus.ContentTypeMsgpack, data))(t))
	}
	if step.Tick != nil {
		n++
		tick := *step.Tick
		if tick.UID == "" {
			tick.UID = uid
		}
		in = tick
	}
	if cr := step.Create; cr != nil {
		n++
		in = Create{Doc: seedWith(t, cr.Document), UID: cr.UID}
	}
	if step.Delete != nil {
		n++
		in = Delete{Ref: bus.Ref{Namespace: ref.Namespace, Name: ref.Name}}
	}
	if n != 1 {
		t.Fatalf("%s: want exactly one of event, tick, create, delete; got %d", where, n)
	}
	return in, ignored
}

// checkStep compares a result with what the step wants.
func checkStep(t *testing.T, where string, cur *experiment.Experiment, step lifecycleStep, res Result) {
	t.Helper()
	w := step.Want
	if w.Unchanged && res.Changed() {
		t.Errorf("%s: the state changed, want it unchanged", where)
	}
	if !w.Unchanged && !w.Removed && w.Error == nil && !res.Changed() {
		t.Errorf("%s: the state did not change (say unchanged: true if it should not)", where)
	}
	if res.Remove != w.Removed {
		t.Errorf("%s: removed %v, want %v", where, res.Remove, w.Removed)
	}
	switch {
	case w.Error == nil && res.Err != nil:
		t.Errorf("%s: refused: %v", where, res.Err)
	case w.Error != nil && (res.Err == nil || res.Err.Error() != w.Error.Message || shared.APICode(res.Err) != w.Error.Code):
		t.Errorf("%s: error %v (code %d), want %d %q", where, res.Err, shared.APICode(res.Err), w.Error.Code, w.Error.Message)
	}
	if res.Next != nil {
		if _, err := json.Marshal(res.Next); err != nil {
			t.Errorf("%s: the new state cannot be written as JSON: %v", where, err)
		}
	}
	if w.State != nil {
		for _, d := range match("state", w.State, generic(t, res.state(cur))) {
			t.Errorf("%s: %s", where, d)
		}
	}
	if len(res.Out) != len(w.Events) {
		t.Errorf("%s: %d events %v, want %d", where, len(res.Out), msgIDs(res.Out), len(w.Events))
	}
	for i := range min(len(res.Out), len(w.Events)) {
		got := generic(t, res.Out[i].Event).(map[string]any)
		got["msgId"] = res.Out[i].MsgID
		for _, d := range match(fmt.Sprintf("events[%d]", i), w.Events[i], got) {
			t.Errorf("%s: %s", where, d)
		}
	}
	if res.Count != w.Count {
		t.Errorf("%s: counted %+v, want %+v", where, res.Count, w.Count)
	}
	if w.Log != nil {
		var got []string
		for _, n := range res.Notes {
			got = append(got, n.Msg)
		}
		if !slices.Equal(got, w.Log) {
			t.Errorf("%s: log %q, want %q", where, got, w.Log)
		}
	}
}

// match lists where got differs from want, which holds the fields that
// matter: every key want has must match, lists element by element; a key
// want does not have is not looked at.
func match(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %v, want an object", path, got)}
		}
		var diffs []string
		for k, v := range w {
			diffs = append(diffs, match(path+"."+k, v, g[k])...)
		}
		slices.Sort(diffs)
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: %v, want %d elements", path, got, len(w))}
		}
		var diffs []string
		for i := range w {
			diffs = append(diffs, match(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return diffs
	}
	if !reflect.DeepEqual(want, got) {
		return []string{fmt.Sprintf("%s: %v, want %v", path, got, want)}
	}
	return nil
}

// generic is v as JSON values (maps, lists, strings, float64), as a case's
// YAML reads.
func generic(t *testing.T, v any) any {
	t.Helper()
	var out any
	if err := json.Unmarshal(must(json.Marshal(v))(t), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// encoded is e as JSON, whose maps are sorted, for comparing.
func encoded(t *testing.T, e *experiment.Experiment) []byte {
	t.Helper()
	if e == nil {
		return nil
	}
	return must(json.Marshal(e))(t)
}

func msgIDs(out []Output) []string {
	ids := []string{}
	for _, o := range out {
		ids = append(ids, o.MsgID)
	}
	return ids
}
