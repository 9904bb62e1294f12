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
// error or a valid experiment, and a valid experiment must survive being
// encoded (in each encoding) and decoded again unchanged. The seed corpus
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
