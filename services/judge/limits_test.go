package judge

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// replySize is what a reply takes on the wire, headers included.
func replySize(m *nats.Msg) int {
	n := len(m.Data)
	for k, vs := range m.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// mp is v as msgpack.
func mp(t *testing.T, v any) string {
	t.Helper()
	b, err := bus.Marshal(bus.ContentTypeMsgpack, v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNameRequestsLimited: get, delete and list take at most
// bus.MaxNameRequestBytes. A 10 MB name (on a server whose max_payload lets
// it through) gets a small 413 that is sent and names the limit, instead of
// an error reply echoing it twice (20 MB, over max_payload: never sent, the
// client waited for its timeout). The limit counts bytes as sent.
func TestNameRequestsLimited(t *testing.T) {
	e := newEnvOn(t, testenv.StartNATSWith(t, func(o *server.Options) { o.MaxPayload = 16 << 20 }))
	e.startJudge(Config{})
	huge := strings.Repeat("x", 10<<20)
	for _, subject := range []string{bus.SubjectGet, bus.SubjectDelete, bus.SubjectList} {
		for name, payload := range map[string]string{
			"bare":         huge,
			"json":         `{"name": "` + huge + `"}`,
			"just over":    "default/" + strings.Repeat("x", bus.MaxNameRequestBytes-7),
			"unknown key":  `{"` + huge + `": 1}`,
			"many lines":   strings.Repeat("namespace: default\n", 1000),
			"one too many": strings.Repeat(" ", bus.MaxNameRequestBytes) + "x",
		} {
			t.Run(subject+"/"+name, func(t *testing.T) {
				reply := e.call(subject, []byte(payload), nil)
				body := e.failed(reply, "413")
				if !strings.Contains(body.Error, strconv.Itoa(bus.MaxNameRequestBytes)) || !strings.Contains(body.Error, strconv.Itoa(len(payload))) {
					t.Errorf("413 %q does not give the size and the limit", body.Error)
				}
				if n := replySize(reply); n > 1024 {
					t.Errorf("the 413 reply is %d bytes", n)
				}
			})
		}
	}
	// At the limit, the request is read: padding is not a name.
	padded := "default/nope" + strings.Repeat(" ", bus.MaxNameRequestBytes-len("default/nope"))
	e.failed(e.call(bus.SubjectGet, []byte(padded), nil), "404")
}

// TestErrorsQuoteAPrefix: an error reply quotes at most a short prefix of a
// bad input, on every endpoint: a 4000-byte name, namespace or unknown
// field, a document whose name is 200 KiB.
func TestErrorsQuoteAPrefix(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	long := strings.Repeat("X", 4000)
	check := func(t *testing.T, reply *nats.Msg, code string, max int) {
		t.Helper()
		body := e.failed(reply, code)
		if strings.Contains(body.Error, "XX") && !strings.Contains(body.Error, `"XXXXXXXX`) {
			t.Errorf("the error %q does not quote what it was given", body.Error)
		}
		if strings.Contains(body.Error, strings.Repeat("X", 65)) {
			t.Errorf("the error quotes more than a 64-byte prefix: %.300q", body.Error)
		}
		if n := replySize(reply); n > max {
			t.Errorf("the error reply is %d bytes, want at most %d: %.300q", n, max, body.Error)
		}
	}
	// YAML takes keys of at most 1024 bytes: the unknown fields are shorter.
	key := long[:1000]
	for name, c := range map[string]struct {
		subject, payload string
		n                int // the length of the bad input
	}{
		"get name":           {bus.SubjectGet, "default/" + long, len(long)},
		"delete namespace":   {bus.SubjectDelete, `{"namespace": "` + long + `", "name": "x"}`, len(long)},
		"list namespace":     {bus.SubjectList, long, len(long)},
		"list unknown field": {bus.SubjectList, `{"` + key + `": 1}`, len(key)},
		"get unknown field":  {bus.SubjectGet, "name: x\n" + key + ": 1\n", len(key)},
		"msgpack field":      {bus.SubjectDelete, mp(t, map[string]string{"name": "x", long: "y"}), len(long)},
	} {
		t.Run(name, func(t *testing.T) {
			reply := e.call(c.subject, []byte(c.payload), nil)
			check(t, reply, "400", 1024)
			if body := e.failed(reply, "400"); !strings.Contains(body.Error, fmt.Sprintf("(%d bytes)", c.n)) {
				t.Errorf("the error %q does not give the input's length", body.Error)
			}
		})
	}
	t.Run("create name", func(t *testing.T) {
		doc := bytes.Replace(seedYAML(t, strings.Repeat("X", 200<<10)), []byte("target: default/sample-app"), []byte("target: "+strings.Repeat("X", 50<<10)), 1)
		check(t, e.call(bus.SubjectCreate, doc, nil), "400", 4096)
	})
	t.Run("create with many problems", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("apiVersion: iter8.tools/v2alpha1\nkind: Experiment\nmetadata: {name: bad_name}\nspec:\n  target: default/app\n  criteria:\n    objectives:\n")
		for i := range 500 {
			fmt.Fprintf(&b, "    - {metric: nope-%d, upperLimit: 1}\n", i)
		}
		reply := e.call(bus.SubjectCreate, []byte(b.String()), nil)
		check(t, reply, "400", 16<<10)
		body := e.failed(reply, "400")
		if len(body.Errors) > maxProblems+1 || !strings.Contains(body.Error, "more problems not listed") {
			t.Errorf("%d problems listed, want at most %d and how many more: %.300q", len(body.Errors), maxProblems, body.Error)
		}
	})
	e.nothingCreated()
}

// TestRequestsRefuseUnknownFields: list, get and delete read their objects
// as strictly as create reads a document, in JSON, YAML and msgpack: an
// unknown field (a typo), a duplicate or a field in the wrong case is a
// 400 naming it, not ignored. The documented forms still work.
func TestRequestsRefuseUnknownFields(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	e.create(e.doc("strict", 1))
	for name, c := range map[string]struct{ subject, payload, field string }{
		"list json":      {bus.SubjectList, `{"namespace": "default", "namepsace": "x"}`, `"namepsace"`},
		"list yaml":      {bus.SubjectList, "namespace: default\nlimit: 3\n", `"limit"`},
		"list msgpack":   {bus.SubjectList, mp(t, map[string]string{"namespace": "default", "label": "x"}), `"label"`},
		"list case":      {bus.SubjectList, `{"Namespace": "default"}`, `"Namespace"`},
		"list duplicate": {bus.SubjectList, `{"namespace": "default", "namespace": "other"}`, `"namespace" already set`},
		"get json":       {bus.SubjectGet, `{"name": "strict", "nmae": "x"}`, `"nmae"`},
		"delete msgpack": {bus.SubjectDelete, mp(t, map[string]string{"name": "strict", "uid": "x"}), `"uid"`},
	} {
		t.Run(name, func(t *testing.T) {
			body := e.failed(e.call(c.subject, []byte(c.payload), nil), "400")
			if !strings.Contains(body.Error, "unknown field "+c.field) && !strings.Contains(body.Error, c.field) {
				t.Errorf("the error %q does not name %s", body.Error, c.field)
			}
		})
	}
	for name, payload := range map[string]string{
		"empty":        "",
		"bare":         "default",
		"quoted":       `"default"`,
		"json":         `{"namespace": "default"}`,
		"yaml":         "namespace: default\n# a comment\n",
		"msgpack":      mp(t, map[string]string{"namespace": "default"}),
		"empty object": `{}`,
	} {
		var list bus.ExperimentList
		reply := e.call(bus.SubjectList, []byte(payload), nil)
		if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
			t.Errorf("list %s: %s %s", name, code, reply.Header.Get(micro.ErrorHeader))
			continue
		}
		if err := bus.DecodeMsg(reply, &list); err != nil || len(list.Items) != 1 {
			t.Errorf("list %s: %d items, %v", name, len(list.Items), err)
		}
	}
	var got experiment.Experiment
	e.ok(e.call(bus.SubjectGet, []byte(mp(t, map[string]string{"namespace": "default", "name": "strict"})), nil), bus.ContentTypeMsgpack, &got)
	if got.Metadata.Name != "strict" {
		t.Errorf("get by a msgpack object: %+v", got.Metadata)
	}
}

// TestCreateRefusesDuplicateFields: a document that gives a field twice is
// a 400 naming it, as a list request that does is; before, the last one
// silently won.
func TestCreateRefusesDuplicateFields(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	doc := bytes.Replace(seedYAML(t, "twice"), []byte("  target: default/sample-app\n"), []byte("  target: default/sample-app\n  target: default/other\n"), 1)
	if body := e.failed(e.call(bus.SubjectCreate, doc, nil), "400"); !strings.Contains(body.Error, `"target" already set`) {
		t.Errorf("the error %q does not name the duplicate field", body.Error)
	}
	e.nothingCreated()
}
