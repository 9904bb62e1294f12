package judge

import (
	"encoding/json"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// decodeDocument turns a create request's payload into a defaulted, valid
// experiment, or an error: shared.ErrTooLarge over maxBytes (checked before
// any decoding), otherwise an *experiment.InvalidError listing every
// problem. contentType is the request's Content-Type header; without one the
// payload is sniffed. It never panics, whatever the input (FuzzCreateRequest).
func decodeDocument(contentType string, data []byte, maxBytes int) (*experiment.Experiment, error) {
	if len(data) > maxBytes {
		return nil, fmt.Errorf("%w: the document is %d bytes; the limit is %d", shared.ErrTooLarge, len(data), maxBytes)
	}
	var e *experiment.Experiment
	if bus.Sniff(contentType, data) == bus.ContentTypeMsgpack {
		e = new(experiment.Experiment)
		if err := bus.Unmarshal(bus.ContentTypeMsgpack, data, e); err != nil {
			return nil, documentError(err.Error())
		}
		e.Default()
		if errs := e.Validate(); len(errs) > 0 {
			return nil, &experiment.InvalidError{Name: e.Key(), Errors: errs}
		}
	} else {
		var err error
		// Parse reads YAML and JSON alike (JSON is YAML), strictly.
		if e, err = experiment.Parse(data); err != nil {
			return nil, err
		}
	}
	// Every reply may be JSON, which has no NaN or infinity: a msgpack
	// document smuggling one into a free-form field (a task's "with") would
	// be stored and then be unreadable. Refuse it now, with a reason.
	if _, err := json.Marshal(e); err != nil {
		return nil, documentError("cannot be represented as JSON: " + err.Error())
	}
	return e, nil
}

func documentError(detail string) error {
	return &experiment.InvalidError{Errors: field.ErrorList{field.Invalid(field.NewPath("document"), "", detail)}}
}

// errorBody is the body of an error reply: the full message and, for an
// invalid document, one entry per field problem.
func errorBody(code int, err error) bus.ErrorBody {
	b := bus.ErrorBody{Code: code, Error: err.Error()}
	var inv *experiment.InvalidError
	if errors.As(err, &inv) {
		for _, fe := range inv.Errors {
			f := bus.FieldError{Field: fe.Field, Type: string(fe.Type), Detail: fe.Detail}
			if fe.BadValue != nil && fe.BadValue != "" {
				f.Value = fmt.Sprint(fe.BadValue)
			}
			b.Errors = append(b.Errors, f)
		}
	}
	return b
}
