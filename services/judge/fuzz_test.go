package judge

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// FuzzCreateRequest feeds the create endpoint's decoding (size check,
// content-type sniffing, YAML/JSON/msgpack decoding, defaulting, validation)
// arbitrary payloads. It must never panic; it must answer either a 400/413
// error (of at most maxDocumentErrorBytes once shortened) or a valid
// experiment, and a valid experiment must survive being encoded (in each
// encoding) and decoded again unchanged. The seed corpus
// in testdata/fuzz/FuzzCreateRequest holds the seed experiment as YAML, JSON
// and msgpack, and malformed documents.
func FuzzCreateRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, contentType string, data []byte) {
		e, err := decodeDocument(contentType, data, experiment.MaxDocumentBytes)
		if err != nil {
			if e != nil {
				t.Fatal("an experiment and an error")
			}
			code := shared.APICode(err)
			if code != http.StatusBadRequest && code != http.StatusRequestEntityTooLarge {
				t.Fatalf("code %d for a bad document, want 400 or 413: %v", code, err)
			}
			var inv *experiment.InvalidError
			if code == http.StatusBadRequest && (!errors.As(err, &inv) || len(inv.Errors) == 0) {
				t.Fatalf("a 400 must list its field problems: %v", err)
			}
			if strings.ContainsAny(bus.OneLine(err.Error()), "\r\n") {
				t.Fatalf("error header would span lines: %q", err.Error())
			}
			if _, merr := bus.Marshal(bus.ContentTypeJSON, errorBody(code, err)); merr != nil {
				t.Fatalf("error body cannot be encoded: %v", merr)
			}
			if msg := shortened(err).Error(); len(msg) > maxDocumentErrorBytes {
				t.Fatalf("a %d-byte error reply for a %d-byte document: %.300q", len(msg), len(data), msg)
			}
			return
		}
		if errs := e.Validate(); len(errs) > 0 {
			t.Fatalf("accepted an invalid experiment: %v", errs)
		}
		want := canonical(t, e)
		for _, ct := range []string{bus.ContentTypeMsgpack, bus.ContentTypeJSON, bus.ContentTypeYAML} {
			b, err := bus.Marshal(ct, e)
			if err != nil {
				t.Fatalf("%s: cannot encode an accepted experiment: %v", ct, err)
			}
			if len(b) > experiment.MaxDocumentBytes {
				continue // YAML can be larger than the JSON it came from
			}
			again, err := decodeDocument(ct, b, experiment.MaxDocumentBytes)
			if err != nil {
				t.Fatalf("%s: the re-encoded experiment does not parse: %v\n%s", ct, err, b)
			}
			if got := canonical(t, again); !bytes.Equal(got, want) {
				t.Fatalf("%s: round trip changed the experiment:\n got %s\nwant %s", ct, got, want)
			}
		}
	})
}

// canonical is the experiment's metadata and spec as JSON: Limit and
// Seconds compare by value there, not by their internal representation.
func canonical(t *testing.T, e *experiment.Experiment) []byte {
	t.Helper()
	b, err := json.Marshal(struct {
		M experiment.Metadata
		S experiment.Spec
	}{e.Metadata, e.Spec})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// maxDocumentErrorBytes bounds the message of a refused create request:
// maxProblems problems, each with a prefix of its value.
const maxDocumentErrorBytes = 32 << 10

// maxNameErrorBytes bounds the message of a refused get, delete or list
// request, whatever it held: a few quoted prefixes and the rules they break.
const maxNameErrorBytes = 2 << 10

// checkRequestError checks a refused request's error: 413 when the request
// is over bus.MaxNameRequestBytes, else 400; short, one line in the header,
// and encodable as a reply.
func checkRequestError(t *testing.T, data []byte, err error) {
	t.Helper()
	code := shared.APICode(err)
	if over := len(data) > bus.MaxNameRequestBytes; over != (code == http.StatusRequestEntityTooLarge) || (!over && code != http.StatusBadRequest) {
		t.Fatalf("code %d for a %d-byte request: %v", code, len(data), err)
	}
	msg := shortened(err).Error()
	if len(msg) > maxNameErrorBytes {
		t.Fatalf("a %d-byte error for a %d-byte request: %.300q", len(msg), len(data), msg)
	}
	if strings.ContainsAny(bus.OneLine(msg), "\r\n") {
		t.Fatalf("error header would span lines: %q", msg)
	}
	if _, merr := bus.Marshal(bus.ContentTypeJSON, errorBody(code, err)); merr != nil {
		t.Fatalf("error body cannot be encoded: %v", merr)
	}
}

// FuzzRefRequest feeds the get and delete endpoints' decoding (size limit,
// bare "namespace/name", strict JSON/YAML/msgpack objects, validation)
// arbitrary payloads: never a panic; a 400 or 413 with a short message, or a
// valid Ref that reads back the same from its text and from each encoding.
// The seed corpus is in testdata/fuzz/FuzzRefRequest.
func FuzzRefRequest(f *testing.F) {
	fuzzNameRequest(f, bus.ParseRef, bus.Ref.Validate, bus.Ref.String)
}

// FuzzListRequest is FuzzRefRequest for the list endpoint's filter: empty,
// a bare namespace or {"namespace": ...}.
func FuzzListRequest(f *testing.F) {
	fuzzNameRequest(f, bus.ParseListRequest, func(lr bus.ListRequest) error {
		if lr.Namespace == "" {
			return nil
		}
		return bus.Ref{Namespace: lr.Namespace, Name: "x"}.Validate()
	}, func(lr bus.ListRequest) string { return lr.Namespace })
}

// fuzzNameRequest is FuzzRefRequest and FuzzListRequest: parse is the
// endpoint's decoder, valid checks what it accepted, and text is the bare
// form people type.
func fuzzNameRequest[T comparable](f *testing.F, parse func(string, []byte) (T, error), valid func(T) error, text func(T) string) {
	f.Fuzz(func(t *testing.T, contentType string, data []byte) {
		v, err := parse(contentType, data)
		if err != nil {
			checkRequestError(t, data, err)
			return
		}
		if err := valid(v); err != nil {
			t.Fatalf("accepted an invalid request %+v: %v", v, err)
		}
		forms := map[string]string{"": text(v)}
		for _, ct := range []string{bus.ContentTypeMsgpack, bus.ContentTypeJSON, bus.ContentTypeYAML} {
			b, err := bus.Marshal(ct, v)
			if err != nil {
				t.Fatalf("%s: %v", ct, err)
			}
			forms[ct] = string(b)
		}
		for ct, form := range forms {
			if got, err := parse(ct, []byte(form)); err != nil || got != v {
				t.Fatalf("%q (%s) reads back as %+v, %v; want %+v", form, ct, got, err, v)
			}
		}
	})
}
