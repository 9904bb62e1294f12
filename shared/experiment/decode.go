package experiment

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/darklaunch/darklaunch/shared"
)

// MaxDocumentBytes bounds an experiment document. The seed's is 1 KiB; a
// document a thousand times larger is a mistake, not an experiment.
const MaxDocumentBytes = 256 << 10

// InvalidError is a document that cannot be accepted: it lists every problem
// with its field path. errors.Is(err, shared.ErrInvalid) holds for it.
type InvalidError struct {
	// Name is "namespace/name" when known.
	Name   string
	Errors field.ErrorList
}

func (e *InvalidError) Error() string {
	what := "invalid experiment"
	if e.Name != "" && !strings.HasSuffix(e.Name, "/") {
		what += " " + e.Name
	}
	switch len(e.Errors) {
	case 0:
		return what
	case 1:
		return what + ": " + e.Errors[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problems:", what, len(e.Errors))
	for _, fe := range e.Errors {
		b.WriteString("\n  - ")
		b.WriteString(fe.Error())
	}
	return b.String()
}

// Is makes errors.Is(err, shared.ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == shared.ErrInvalid }

// Decode reads one experiment document, YAML or JSON, strictly: unknown
// fields are an error (a typo like "upperlimit" must not silently drop an
// objective). It does not default or validate; Parse does all three.
func Decode(data []byte) (*Experiment, error) {
	if len(data) > MaxDocumentBytes {
		return nil, fmt.Errorf("%w: the document is %d bytes; the limit is %d", shared.ErrTooLarge, len(data), MaxDocumentBytes)
	}
	body := bytes.TrimSpace(data)
	body = bytes.TrimPrefix(body, []byte("---"))
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &InvalidError{Errors: field.ErrorList{field.Required(field.NewPath("document"), "the document is empty")}}
	}
	if n := countDocuments(body); n > 1 {
		return nil, &InvalidError{Errors: field.ErrorList{field.Invalid(field.NewPath("document"), fmt.Sprintf("%d YAML documents", n), "send one experiment per request")}}
	}
	// Strict: a key given twice is an error, not the last one silently.
	j, err := yaml.YAMLToJSONStrict(body)
	if err != nil {
		return nil, &InvalidError{Errors: field.ErrorList{field.Invalid(field.NewPath("document"), "", cleanYAMLError(err))}}
	}
	// Kubernetes' own strict decoder: case-sensitive field names (encoding/json
	// would take "upperlimit" for "upperLimit") and unknown or duplicate
	// fields reported with their paths.
	var e Experiment
	strict, err := kjson.UnmarshalStrict(j, &e)
	if err != nil {
		return nil, &InvalidError{Errors: field.ErrorList{field.Invalid(field.NewPath("document"), "", cleanYAMLError(err))}}
	}
	if len(strict) > 0 {
		var errs field.ErrorList
		for _, se := range strict {
			var fe kjson.FieldError
			if errors.As(se, &fe) {
				errs = append(errs, field.Forbidden(field.NewPath(fe.FieldPath()), strings.TrimSuffix(se.Error(), " "+strconv.Quote(fe.FieldPath()))+"; check its spelling and case"))
				continue
			}
			errs = append(errs, field.Invalid(field.NewPath("document"), "", se.Error()))
		}
		return nil, &InvalidError{Name: e.Key(), Errors: errs}
	}
	return &e, nil
}

// Parse decodes, defaults and validates a document.
func Parse(data []byte) (*Experiment, error) {
	e, err := Decode(data)
	if err != nil {
		return nil, err
	}
	e.Default()
	if errs := e.Validate(); len(errs) > 0 {
		return nil, &InvalidError{Name: e.Key(), Errors: errs}
	}
	return e, nil
}

// countDocuments counts the non-empty YAML documents separated by "---".
func countDocuments(b []byte) int {
	n, cur := 0, false
	for _, line := range bytes.Split(b, []byte("\n")) {
		t := bytes.TrimRight(line, " \t\r")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			if cur {
				n++
			}
			cur = false
			continue
		}
		if s := bytes.TrimSpace(t); len(s) > 0 && s[0] != '#' {
			cur = true
		}
	}
	if cur {
		n++
	}
	return n
}

// cleanYAMLError drops the conversion layers sigs.k8s.io/yaml adds, which
// say nothing to a user ("error unmarshaling JSON: while decoding JSON: ").
func cleanYAMLError(err error) string {
	msg := err.Error()
	for _, p := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "error converting YAML to JSON: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	msg = strings.ReplaceAll(msg, "Go struct field Experiment.", "field ")
	return msg
}
