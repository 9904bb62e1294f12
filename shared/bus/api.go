package bus

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Ref names an experiment on the get and delete endpoints. On the wire it is
// "namespace/name", "name" (namespace "default"), or a JSON/YAML/msgpack
// object {"namespace": ..., "name": ...}.
type Ref struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// ParseRef reads a Ref from a request payload.
func ParseRef(contentType string, data []byte) (Ref, error) {
	t := bytes.TrimSpace(data)
	var r Ref
	if len(t) == 0 {
		return r, fmt.Errorf("%w: name: Required value: send \"namespace/name\" or \"name\"", shared.ErrInvalid)
	}
	ct := Sniff(contentType, t)
	if ct == ContentTypeYAML && !bytes.ContainsAny(t, ":\n") {
		// A bare "namespace/name" or "name".
		s := strings.Trim(string(t), `"'`)
		if ns, name, ok := strings.Cut(s, "/"); ok {
			r = Ref{Namespace: ns, Name: name}
		} else {
			r = Ref{Name: s}
		}
	} else if err := Unmarshal(ct, t, &r); err != nil {
		return r, fmt.Errorf("%w: %v", shared.ErrInvalid, err)
	}
	if r.Namespace == "" {
		r.Namespace = experiment.DefaultNamespace
	}
	if err := r.Validate(); err != nil {
		return r, err
	}
	return r, nil
}

// Validate checks that both parts are DNS-1123 labels.
func (r Ref) Validate() error {
	e := experiment.Experiment{Metadata: experiment.Metadata{Name: r.Name, Namespace: r.Namespace}}
	probe := e.Validate()
	var msgs []string
	for _, fe := range probe {
		if fe.Field == "metadata.name" || fe.Field == "metadata.namespace" {
			msgs = append(msgs, strings.TrimPrefix(fe.Error(), "metadata."))
		}
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%w: %s", shared.ErrInvalid, strings.Join(msgs, "; "))
	}
	return nil
}

// ListRequest filters the list endpoint; an empty payload lists everything.
type ListRequest struct {
	Namespace string `json:"namespace,omitempty"`
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
