package judge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// call sends a raw API request with the given headers.
func (e *env) call(subject string, data []byte, headers map[string]string) *nats.Msg {
	e.t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	for k, v := range headers {
		m.Header.Set(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply, err := e.nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		e.t.Fatalf("%s: %v", subject, err)
	}
	return reply
}

// ok decodes a successful reply, checking its encoding.
func (e *env) ok(reply *nats.Msg, wantCT string, v any) {
	e.t.Helper()
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		e.t.Fatalf("error %s: %s", code, reply.Header.Get(micro.ErrorHeader))
	}
	if ct := reply.Header.Get(bus.HeaderContentType); ct != wantCT {
		e.t.Fatalf("reply Content-Type %q, want %q", ct, wantCT)
	}
	if sniffed := bus.Sniff("", reply.Data); sniffed != wantCT {
		e.t.Fatalf("reply looks like %s, want %s: %.200q", sniffed, wantCT, reply.Data)
	}
	if err := bus.Unmarshal(wantCT, reply.Data, v); err != nil {
		e.t.Fatal(err)
	}
}

// failed checks an error reply's code and headers and decodes its body.
func (e *env) failed(reply *nats.Msg, wantCode string) bus.ErrorBody {
	e.t.Helper()
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != wantCode {
		e.t.Fatalf("code %q (%s), want %s", code, reply.Header.Get(micro.ErrorHeader), wantCode)
	}
	desc := reply.Header.Get(micro.ErrorHeader)
	if desc == "" || strings.ContainsAny(desc, "\r\n") {
		e.t.Fatalf("error header must be one non-empty line: %q", desc)
	}
	var body bus.ErrorBody
	if err := bus.DecodeMsg(reply, &body); err != nil {
		e.t.Fatalf("error body: %v: %q", err, reply.Data)
	}
	if body.Code == 0 || body.Error == "" || bus.OneLine(body.Error) != desc {
		e.t.Fatalf("error body %+v does not match header %q", body, desc)
	}
	return body
}

func seedYAML(t *testing.T, name string) []byte {
	t.Helper()
	return bytes.Replace(seedBytes(t), []byte("name: mirroring"), []byte("name: "+name), 1)
}

func TestAPIRoundTrip(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	seed := seedYAML(t, "x")
	var x experiment.Experiment
	if err := bus.Unmarshal(bus.ContentTypeYAML, seed, &x); err != nil {
		t.Fatal(err)
	}
	encode := func(ct, name string) []byte {
		if ct == bus.ContentTypeYAML {
			return seedYAML(t, name) // the seed verbatim, comments and all
		}
		x.Metadata.Name = name
		b, err := bus.Marshal(ct, &x)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []struct {
		name    string
		ct      string // request encoding
		header  bool   // sent with Content-Type, else sniffed
		accept  string // Accept header on get
		replyCT string // expected reply encoding of get
	}{
		{"in-yaml", bus.ContentTypeYAML, false, "", bus.ContentTypeJSON},
		{"in-json", bus.ContentTypeJSON, true, "yaml", bus.ContentTypeYAML},
		{"in-msgpack", bus.ContentTypeMsgpack, false, "application/x-msgpack", bus.ContentTypeMsgpack},
		{"in-msgpack-header", bus.ContentTypeMsgpack, true, "", bus.ContentTypeJSON},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := map[string]string{}
			if c.header {
				h[bus.HeaderContentType] = c.ct
			}
			before := time.Now().Add(-time.Second)
			var created experiment.Experiment
			e.ok(e.call(bus.SubjectCreate, encode(c.ct, c.name), h), c.ct, &created) // reply follows the request
			md, st := created.Metadata, created.Status
			if md.Name != c.name || md.Namespace != "default" || md.UID == "" || md.Generation != 1 ||
				md.CreationTimestamp == nil || md.CreationTimestamp.Before(before) {
				t.Errorf("metadata %+v", md)
			}
			if st.Stage != experiment.StageInitializing || st.Message != "ExperimentInitialized: Started initialization" || st.InitTime == nil {
				t.Errorf("status %+v", st)
			}
			if tc := st.Condition(experiment.ConditionTargetAcquired); tc == nil || tc.Status != "Unknown" {
				t.Errorf("TargetAcquired condition %+v, want Unknown", tc)
			}
			if got := created.Spec.Criteria.Objectives; len(got) != 3 || got[2].UpperLimit.Float64() != 0.01 {
				t.Errorf("objectives %+v", got)
			}
			if created.TotalIterations() != 7 || created.IntervalSeconds() != 10 || created.BaselineName() != "current" {
				t.Errorf("duration/baseline not as the seed says: %+v", created.Spec.Duration)
			}

			stored := e.get("default", c.name)
			if stored == nil || stored.Metadata.UID != md.UID {
				t.Fatalf("stored %+v, want uid %s", stored, md.UID)
			}
			evs := eventsOf(e.events(c.name), bus.EventCreated)
			if len(evs) != 1 || evs[0].UID != md.UID || evs[0].Experiment == nil || evs[0].Experiment.Metadata.UID != md.UID {
				t.Fatalf("created events %+v", evs)
			}

			// get: by "namespace/name" text, as JSON/msgpack objects, with Accept.
			h = map[string]string{}
			if c.accept != "" {
				h[bus.HeaderAccept] = c.accept
			}
			var got experiment.Experiment
			e.ok(e.call(bus.SubjectGet, []byte("default/"+c.name), h), c.replyCT, &got)
			if got.Metadata.UID != md.UID {
				t.Errorf("get uid %s, want %s", got.Metadata.UID, md.UID)
			}
			ref, _ := bus.Marshal(c.ct, bus.Ref{Name: c.name})
			if c.ct != bus.ContentTypeYAML {
				got = experiment.Experiment{}
				e.ok(e.call(bus.SubjectGet, ref, nil), c.ct, &got)
				if got.Metadata.UID != md.UID {
					t.Errorf("get by %s object: uid %s", c.ct, got.Metadata.UID)
				}
			}
		})
	}

	// list: every experiment, sorted; a namespace filter; YAML in, YAML out.
	var list bus.ExperimentList
	e.ok(e.call(bus.SubjectList, nil, nil), bus.ContentTypeJSON, &list)
	var names []string
	for _, it := range list.Items {
		names = append(names, it.Metadata.Name)
	}
	if want := []string{"in-json", "in-msgpack", "in-msgpack-header", "in-yaml"}; !slices.Equal(names, want) {
		t.Errorf("list %v, want %v", names, want)
	}
	empty := e.call(bus.SubjectList, []byte(`{"namespace":"elsewhere"}`), nil)
	e.ok(empty, bus.ContentTypeJSON, &list)
	if len(list.Items) != 0 || !bytes.Contains(empty.Data, []byte(`"items":[]`)) {
		t.Errorf("list of an empty namespace: %s", empty.Data)
	}
	list = bus.ExperimentList{}
	e.ok(e.call(bus.SubjectList, []byte("namespace: default\n"), nil), bus.ContentTypeYAML, &list)
	if len(list.Items) != 4 {
		t.Errorf("list by YAML filter: %d items", len(list.Items))
	}
	if items, err := e.api.List(context.Background(), "default"); err != nil || len(items) != 4 {
		t.Errorf("client list: %d items, %v", len(items), err)
	}

	// delete: replies with the last state, removes the key, publishes deleted.
	before := e.get("default", "in-yaml")
	var last experiment.Experiment
	e.ok(e.call(bus.SubjectDelete, []byte(`{"name":"in-yaml"}`), nil), bus.ContentTypeJSON, &last)
	if last.Metadata.UID != before.Metadata.UID || last.Status.Stage != experiment.StageInitializing {
		t.Errorf("delete replied %+v", last.Metadata)
	}
	if e.get("default", "in-yaml") != nil {
		t.Error("key still there after delete")
	}
	del := eventsOf(e.events("in-yaml"), bus.EventDeleted)
	if len(del) != 1 || del[0].UID != before.Metadata.UID || del[0].Experiment == nil {
		t.Errorf("deleted events %+v", del)
	}
	body := e.failed(e.call(bus.SubjectGet, []byte("in-yaml"), nil), "404")
	if body.Error != "experiment default/in-yaml not found" {
		t.Errorf("404 message %q", body.Error)
	}
	if _, err := e.api.Delete(context.Background(), bus.Ref{Namespace: "default", Name: "in-yaml"}); !errors.Is(err, shared.ErrNotFound) {
		t.Errorf("second delete: %v, want not found", err)
	}
}

func TestCreateInvalidListsEveryField(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	doc := []byte(`apiVersion: iter8.tools/v2alpha1
kind: Experiment
metadata:
  name: broken
spec:
  strategy:
    testingPattern: Conformance
  mirroring:
    percent: -40
  criteria:
    objectives:
    - metric: p99-latency
      upperLimit: 50
    - metric: mean-latency
      upperLimit: fifty
`)
	body := e.failed(e.call(bus.SubjectCreate, doc, nil), "400")
	if body.Code != 400 {
		t.Errorf("body code %d", body.Code)
	}
	fields := map[string]bus.FieldError{}
	for _, fe := range body.Errors {
		fields[fe.Field] = fe
	}
	for _, f := range []string{"spec.target", "spec.mirroring.percent", "spec.criteria.objectives[0].metric", "spec.criteria.objectives[1].upperLimit"} {
		fe, ok := fields[f]
		if !ok {
			t.Errorf("no error for %s in %+v", f, body.Errors)
			continue
		}
		if fe.Type == "" || !strings.Contains(body.Error, f) {
			t.Errorf("%s: %+v not in the message %q", f, fe, body.Error)
		}
	}
	if fe := fields["spec.criteria.objectives[1].upperLimit"]; fe.Value != "fifty" {
		t.Errorf("bad limit reported as %+v", fe)
	}
	if len(body.Errors) != 4 {
		t.Errorf("%d errors, want exactly the 4 problems: %+v", len(body.Errors), body.Errors)
	}
	// YAML in, YAML out, errors included.
	if ct := bus.Sniff("", e.call(bus.SubjectCreate, doc, nil).Data); ct != bus.ContentTypeYAML {
		t.Errorf("error body is %s, want YAML", ct)
	}
	e.nothingCreated()
}

// nothingCreated checks that no experiment and no event exist.
func (e *env) nothingCreated() {
	e.t.Helper()
	ctx := context.Background()
	if items, err := e.store.List(ctx); err != nil || len(items) != 0 {
		e.t.Errorf("KV holds %d experiments (%v), want none", len(items), err)
	}
	st, err := e.js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		e.t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 0 {
		e.t.Errorf("events stream holds %d messages (%v), want none", info.State.Msgs, err)
	}
}

func TestCreateBadInput(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	t.Run("malformed YAML", func(t *testing.T) {
		body := e.failed(e.call(bus.SubjectCreate, []byte("apiVersion: iter8.tools/v2alpha1\nkind: [Experiment\n"), nil), "400")
		if len(body.Errors) != 1 || body.Errors[0].Field != "document" {
			t.Errorf("errors %+v", body.Errors)
		}
	})
	t.Run("malformed msgpack", func(t *testing.T) {
		body := e.failed(e.call(bus.SubjectCreate, []byte("\x85\xaaapiVersion\xb4iter8"), map[string]string{bus.HeaderContentType: "application/msgpack"}), "400")
		if !strings.Contains(body.Error, "msgpack") {
			t.Errorf("message %q", body.Error)
		}
	})
	t.Run("msgpack unknown field", func(t *testing.T) {
		doc, _ := bus.Marshal(bus.ContentTypeMsgpack, map[string]any{"apiVersion": experiment.APIVersionV2Alpha1, "kind": "Experiment", "spek": map[string]any{}})
		body := e.failed(e.call(bus.SubjectCreate, doc, nil), "400")
		if !strings.Contains(body.Error, "spek") {
			t.Errorf("message %q does not name the unknown field", body.Error)
		}
	})
	t.Run("msgpack not UTF-8", func(t *testing.T) {
		x := e.doc("binary", 3)
		x.Spec.VersionInfo.Baseline.Name = "dark\xff"
		doc, _ := bus.Marshal(bus.ContentTypeMsgpack, x)
		body := e.failed(e.call(bus.SubjectCreate, doc, nil), "400")
		if len(body.Errors) != 1 || body.Errors[0].Field != "spec.versionInfo.baseline.name" {
			t.Errorf("errors %+v", body.Errors)
		}
	})
	t.Run("unknown field", func(t *testing.T) {
		doc := bytes.Replace(seedYAML(t, "typo"), []byte("upperLimit: 50"), []byte("upperlimit: 50"), 1)
		body := e.failed(e.call(bus.SubjectCreate, doc, nil), "400")
		if !strings.Contains(body.Error, "upperlimit") {
			t.Errorf("message %q does not name the unknown field", body.Error)
		}
	})
	t.Run("too large", func(t *testing.T) {
		doc := append(seedYAML(t, "big"), []byte("# "+strings.Repeat("x", 300<<10)+"\n")...)
		body := e.failed(e.call(bus.SubjectCreate, doc, nil), "413")
		if !strings.Contains(body.Error, "262144") {
			t.Errorf("message %q does not give the limit", body.Error)
		}
	})
	t.Run("bad ref", func(t *testing.T) {
		e.failed(e.call(bus.SubjectGet, []byte("Not_A_Name"), nil), "400")
		e.failed(e.call(bus.SubjectDelete, nil, nil), "400")
		e.failed(e.call(bus.SubjectList, []byte(`{"namespace": [1]}`), nil), "400")
	})
	t.Run("unknown", func(t *testing.T) {
		e.failed(e.call(bus.SubjectGet, []byte("default/nope"), nil), "404")
		e.failed(e.call(bus.SubjectDelete, []byte("nope"), nil), "404")
	})
	e.nothingCreated()
}

func TestCreateConflictAndReplace(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	first := e.create(e.doc("mirroring", 3))

	body := e.failed(e.call(bus.SubjectCreate, seedYAML(t, "mirroring"), nil), "409")
	if want := "experiment default/mirroring is already running (stage Initializing); delete it first"; body.Error != want {
		t.Errorf("409 message %q, want %q", body.Error, want)
	}
	e.routing(first, true, "")
	e.waitStatus("mirroring", "Running", func(x *experiment.Experiment) bool { return x.Status.Stage == experiment.StageRunning })
	body = e.failed(e.call(bus.SubjectCreate, seedYAML(t, "mirroring"), nil), "409")
	if want := "experiment default/mirroring is already running (stage Running); delete it first"; body.Error != want {
		t.Errorf("409 message %q, want %q", body.Error, want)
	}
	if _, err := e.api.Create(context.Background(), seedYAML(t, "mirroring")); !errors.Is(err, shared.ErrConflict) {
		t.Errorf("client create: %v, want conflict", err)
	}
	if got := e.get("default", "mirroring"); got.Metadata.UID != first.Metadata.UID {
		t.Fatal("a refused create changed the stored experiment")
	}

	// Once it completed, the name can run again: a new run replaces it.
	for k := int32(1); k <= 3; k++ {
		e.snapshot(first, bus.RoleDark, k, good(k))
	}
	e.waitStatus("mirroring", "Completed", func(x *experiment.Experiment) bool { return x.Status.Terminal() })
	second := e.create(e.doc("mirroring", 3))
	if second.Metadata.UID == first.Metadata.UID || second.Status.Stage != experiment.StageInitializing || second.Status.CompletedIterations != 0 {
		t.Errorf("new run %+v", second.Metadata)
	}
	if got := e.get("default", "mirroring"); got.Metadata.UID != second.Metadata.UID || got.Status.Analysis != nil {
		t.Errorf("stored %s, want the new run %s with no analysis", got.Metadata.UID, second.Metadata.UID)
	}
	// The old run's late events are ignored.
	e.routing(first, false, "late")
	e.routing(second, true, "")
	e.waitStatus("mirroring", "Running", func(x *experiment.Experiment) bool { return x.Status.Stage == experiment.StageRunning })
	if got := e.get("default", "mirroring"); got.Status.Failed() {
		t.Error("an event of the old run failed the new one")
	}
}

func TestMicroDiscovery(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{Version: "1.2.3", Instance: "judge-a"})
	reply := e.call("$SRV.INFO."+bus.ServiceName, nil, nil)
	var info micro.Info
	if err := json.Unmarshal(reply.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != bus.ServiceName || info.Version != "1.2.3" || info.Description == "" || info.Metadata["instance"] != "judge-a" {
		t.Errorf("info %+v", info)
	}
	got := map[string]string{}
	for _, ep := range info.Endpoints {
		got[ep.Name] = ep.Subject
		if ep.QueueGroup != DefaultQueueGroup {
			t.Errorf("endpoint %s queue group %q", ep.Name, ep.QueueGroup)
		}
	}
	want := map[string]string{
		bus.EndpointCreate: bus.SubjectCreate, bus.EndpointGet: bus.SubjectGet,
		bus.EndpointList: bus.SubjectList, bus.EndpointDelete: bus.SubjectDelete,
	}
	if len(got) != len(want) {
		t.Errorf("endpoints %v, want %v", got, want)
	}
	for name, subj := range want {
		if got[name] != subj {
			t.Errorf("endpoint %s on %q, want %q", name, got[name], subj)
		}
	}
}

func TestNewDefaults(t *testing.T) {
	e := newEnv(t)
	s, err := New(Config{}, e.nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.Instance == "" || c.Version != DefaultVersion || c.QueueGroup != DefaultQueueGroup || c.InitTimeout != 2*time.Minute ||
		c.MetricsTimeout != 2*time.Minute || c.WatchdogInterval != 5*time.Second || c.MaxRequestBytes != experiment.MaxDocumentBytes || c.Now == nil {
		t.Errorf("defaults %+v", c)
	}
	if _, err := New(Config{InitTimeout: -1}, e.nc, nil); err == nil {
		t.Error("a negative timeout was accepted")
	}
	if _, err := New(Config{}, nil, nil); err == nil {
		t.Error("no connection was accepted")
	}
}

// TestListOverMaxPayload: a list whose reply would be over the server's
// max_payload (8 MiB here) is answered with an error that says so and how to
// narrow it, instead of no reply at all (the client's timeout); a narrower
// list still works.
func TestListOverMaxPayload(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	big := strings.Repeat("x", 240<<10)
	for i := range 36 {
		x := e.doc(fmt.Sprintf("big-%02d", i), 1)
		x.Metadata.Namespace = "crowded"
		x.Metadata.Annotations = map[string]string{"note": big}
		e.create(x)
	}
	small := e.doc("small", 1)
	small.Metadata.Namespace = "quiet"
	e.create(small)

	start := time.Now()
	_, err := e.api.List(context.Background(), "")
	var apiErr *bus.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != http.StatusInternalServerError ||
		!strings.Contains(apiErr.Description, "max_payload") || !strings.Contains(apiErr.Description, "one namespace at a time") {
		t.Fatalf("list of ~8.6 MB: err %v, want a 500 naming max_payload and how to narrow the list", err)
	}
	if d := time.Since(start); d > 8*time.Second { // the client gives up at 10 s
		t.Errorf("the error took %v: it came from the client's timeout, not from the judge", d)
	}
	if items, err := e.api.List(context.Background(), "quiet"); err != nil || len(items) != 1 {
		t.Errorf("list of one namespace: %d items, %v", len(items), err)
	}
}

// TestCreateUndoneWhenNotAnnounced: when the created event cannot be
// published, the client is told create failed, and nothing is left behind
// for the router to start on; a later create of the name works.
func TestCreateUndoneWhenNotAnnounced(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	ctx := context.Background()
	if err := e.js.DeleteStream(ctx, bus.StreamEvents); err != nil {
		t.Fatal(err)
	}
	b, err := bus.Marshal(bus.ContentTypeMsgpack, e.doc("unannounced", 1))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = e.api.Create(ctx, b)
	var apiErr *bus.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != http.StatusInternalServerError || !strings.Contains(apiErr.Description, "publish created event") {
		t.Fatalf("create with no events stream: err %v, want a 500 about the created event", err)
	}
	t.Logf("create failed after %v", time.Since(start))
	if _, _, err := e.store.Get(ctx, "default", "unannounced"); !errors.Is(err, shared.ErrNotFound) {
		t.Fatalf("after the failed create: %v, want the experiment not stored", err)
	}
	// With the stream back, the same name can be created.
	if _, err := bus.EnsureInfra(ctx, e.nc, bus.StreamLimits{}); err != nil {
		t.Fatal(err)
	}
	e.create(e.doc("unannounced", 1))
}

// TestDamagedEntryDeletedOrReplaced: a state entry that does not decode
// (written with nats kv put, say) does not block its name: delete removes it
// and says so, and create replaces it.
func TestDamagedEntryDeletedOrReplaced(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	ctx := context.Background()
	damage := func() {
		t.Helper()
		if _, err := e.store.KV.Put(ctx, bus.Key("default", "damaged"), []byte("not an experiment")); err != nil {
			t.Fatal(err)
		}
	}
	ref := bus.Ref{Namespace: "default", Name: "damaged"}

	damage()
	if _, err := e.api.Get(ctx, ref); err == nil || !strings.Contains(err.Error(), "undecodable") {
		t.Errorf("get of a damaged entry: %v, want an error saying it is undecodable", err)
	}
	got, err := e.api.Delete(ctx, ref)
	if err != nil || got.Metadata.Name != "damaged" {
		t.Fatalf("delete of a damaged entry: %+v, %v", got, err)
	}
	if _, _, err := e.store.Get(ctx, "default", "damaged"); !errors.Is(err, shared.ErrNotFound) {
		t.Errorf("after delete: %v, want not found", err)
	}
	if evs := e.waitEvents("damaged", bus.EventDeleted, 1); !strings.Contains(evs[0].Message, "damaged state entry deleted") {
		t.Errorf("deleted event %q", evs[0].Message)
	}

	damage()
	created := e.create(e.doc("damaged", 1))
	if stored, _, err := e.store.Get(ctx, "default", "damaged"); err != nil || stored.Metadata.UID != created.Metadata.UID {
		t.Errorf("create over a damaged entry: stored %v, %v", stored, err)
	}
}

// TestListBadNamespace: a namespace that cannot exist is a 400 that names
// it, not an empty list.
func TestListBadNamespace(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	_, err := e.api.List(context.Background(), "Bad NS")
	var apiErr *bus.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != http.StatusBadRequest || !strings.Contains(apiErr.Description, `namespace "Bad NS"`) {
		t.Errorf("list -n 'Bad NS': %v, want a 400 naming the namespace", err)
	}
}
