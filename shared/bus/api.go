package bus

import (
	"bytes"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// MaxNameRequestBytes bounds a get, delete or list request. It carries at
// most a namespace and a name, DNS-1123 labels of at most 63 characters
// each: 4 KiB holds them in any of the three encodings, indented and
// commented, and a larger request is refused (413) before it is decoded, so
// nothing made of it (an error message, a log line) can be large.
const MaxNameRequestBytes = 4 << 10

// Ref names an experiment on the get and delete endpoints. On the wire it is
// "namespace/name", "name" (namespace "default"), or a JSON/YAML/msgpack
// object {"namespace": ..., "name": ...}.
type Ref struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// ParseRef reads a Ref from a get or delete request's payload: at most
// MaxNameRequestBytes, and an object without unknown fields.
func ParseRef(contentType string, data []byte) (Ref, error) {
	var r Ref
	t, err := requestPayload("get or delete", data)
	if err != nil {
		return r, err
	}
	if len(t) == 0 {
		return r, fmt.Errorf("%w: name: Required value: send \"namespace/name\" or \"name\"", shared.ErrInvalid)
	}
	if s, ok := bareText(contentType, t); ok {
		if ns, name, ok := strings.Cut(s, "/"); ok {
			r = Ref{Namespace: ns, Name: name}
		} else {
			r = Ref{Name: s}
		}
	} else if err := UnmarshalStrict(Sniff(contentType, t), t, &r); err != nil {
		return r, fmt.Errorf(`%w: want "namespace/name", "name" or {"namespace": ..., "name": ...}: %v`, shared.ErrInvalid, err)
	}
	if r.Namespace == "" {
		r.Namespace = experiment.DefaultNamespace
	}
	if err := r.Validate(); err != nil {
		return r, err
	}
	return r, nil
}

// requestPayload checks a get, delete or list request's size and trims it.
func requestPayload(endpoint string, data []byte) ([]byte, error) {
	if len(data) > MaxNameRequestBytes {
		return nil, fmt.Errorf("%w: the %s request is %d bytes; the limit is %d (it names at most a namespace and an experiment, 63 characters each)",
			shared.ErrTooLarge, endpoint, len(data), MaxNameRequestBytes)
	}
	return bytes.TrimSpace(data), nil
}

// bareText is a payload that is plain text rather than a document, as
// people type it ("namespace/name", a namespace), without its quotes: YAML
// that is neither a mapping nor a flow collection ("{}" is an object).
func bareText(contentType string, t []byte) (string, bool) {
	if len(t) == 0 || Sniff(contentType, t) != ContentTypeYAML || bytes.ContainsAny(t, ":\n") || t[0] == '{' || t[0] == '[' {
		return "", false
	}
	return strings.Trim(string(t), `"'`), true
}

// Validate checks that both parts are DNS-1123 labels, as
// experiment.Validate checks a document's metadata.
func (r Ref) Validate() error {
	if msgs := labelProblems([2]string{"name", r.Name}, [2]string{"namespace", r.Namespace}); len(msgs) > 0 {
		return fmt.Errorf("%w: %s", shared.ErrInvalid, strings.Join(msgs, "; "))
	}
	return nil
}

// labelProblems checks that each {field, value} is a DNS-1123 label: one
// message per bad field, quoting at most a prefix of its value.
func labelProblems(fields ...[2]string) []string {
	var msgs []string
	for _, f := range fields {
		if f[1] == "" {
			msgs = append(msgs, f[0]+": Required value")
			continue
		}
		if m := validation.IsDNS1123Label(f[1]); len(m) > 0 {
			msgs = append(msgs, fmt.Sprintf("%s %s: %s", f[0], shared.Excerpt(f[1]), strings.Join(m, "; ")))
		}
	}
	return msgs
}

// ListRequest filters the list endpoint; an empty payload lists everything.
type ListRequest struct {
	Namespace string `json:"namespace,omitempty"`
}

// ParseListRequest reads a list request's payload: empty (every
// experiment), a bare namespace, or {"namespace": ...}; at most
// MaxNameRequestBytes, and an object without unknown fields.
func ParseListRequest(contentType string, data []byte) (ListRequest, error) {
	var lr ListRequest
	t, err := requestPayload("list", data)
	if err != nil || len(t) == 0 {
		return lr, err
	}
	if s, ok := bareText(contentType, t); ok {
		lr.Namespace = s
	} else if err := UnmarshalStrict(Sniff(contentType, t), t, &lr); err != nil {
		return lr, fmt.Errorf(`%w: list request: want empty, a namespace or {"namespace": ...}: %v`, shared.ErrInvalid, err)
	}
	if lr.Namespace == "" {
		return lr, nil
	}
	if msgs := labelProblems([2]string{"namespace", lr.Namespace}); len(msgs) > 0 {
		return lr, fmt.Errorf("%w: list request: %s", shared.ErrInvalid, strings.Join(msgs, "; "))
	}
	return lr, nil
}

// ExperimentList is the list endpoint's reply.
type ExperimentList struct {
	Items []*experiment.Experiment `json:"items"`
}

// APIError is an error reply of the experiments API: micro's
// Nats-Service-Error-Code and Nats-Service-Error headers.
type APIError struct {
	Code        int
	Description string
}

func (e *APIError) Error() string { return e.Description }

// Is maps the code back to the shared sentinel errors.
func (e *APIError) Is(target error) bool {
	switch e.Code {
	case 400:
		return target == shared.ErrInvalid
	case 404:
		return target == shared.ErrNotFound
	case 409:
		return target == shared.ErrConflict
	case 413:
		return target == shared.ErrTooLarge || target == shared.ErrInvalid
	}
	return false
}

// ErrorBody is the payload of an error reply (JSON, or the request's
// encoding): the full message, which may span lines, and for invalid
// documents one entry per problem. The Nats-Service-Error header carries the
// same message on one line, since a header cannot hold a newline.
type ErrorBody struct {
	Code   int          `json:"code"`
	Error  string       `json:"error"`
	Errors []FieldError `json:"errors,omitempty"`
}

// FieldError is one problem of an invalid document.
type FieldError struct {
	Field  string `json:"field"`
	Type   string `json:"type"`
	Value  string `json:"value,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// OneLine flattens a message for the Nats-Service-Error header.
func OneLine(s string) string {
	s = strings.ReplaceAll(s, "\r", "")
	s = strings.ReplaceAll(s, "\n  - ", "; ")
	return strings.ReplaceAll(s, "\n", "; ")
}
