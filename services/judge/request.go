package judge

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"
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
		var err error
		if e, err = decodeMsgpack(data); err != nil {
			return nil, err
		}
		e.Default()
		errs := e.Validate()
		// Only msgpack carries bytes that are not text (the YAML decoder
		// refuses them); JSON and YAML replies would show them altered.
		errs = append(errs, nonUTF8(nil, reflect.ValueOf(e).Elem())...)
		if len(errs) > 0 {
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

// decodeMsgpack decodes a msgpack document as strictly as experiment.Parse
// reads YAML and JSON: an unknown field (a typo) or trailing bytes are an
// error, not silently dropped; lengths the request cannot hold are refused
// before anything is allocated.
func decodeMsgpack(data []byte) (*experiment.Experiment, error) {
	var e experiment.Experiment
	if err := bus.UnmarshalMsgpackStrict(data, &e); err != nil {
		return nil, documentError(err.Error())
	}
	return &e, nil
}

// nonUTF8 lists the strings in v (map keys included) that are not UTF-8,
// by their field path.
func nonUTF8(p *field.Path, v reflect.Value) field.ErrorList {
	bad := func(p *field.Path, s string) field.ErrorList {
		if utf8.ValidString(s) {
			return nil
		}
		return field.ErrorList{field.Invalid(p, strconv.QuoteToASCII(s), "must be UTF-8 text")}
	}
	var errs field.ErrorList
	switch v.Kind() {
	case reflect.String:
		errs = bad(p, v.String())
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			errs = nonUTF8(p, v.Elem())
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			errs = append(errs, nonUTF8(p.Index(i), v.Index(i))...)
		}
	case reflect.Map:
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		for _, k := range keys {
			name := fmt.Sprint(k)
			if k.Kind() == reflect.String {
				errs = append(errs, bad(p, name)...)
			}
			errs = append(errs, nonUTF8(p.Key(name), v.MapIndex(k))...)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			errs = append(errs, nonUTF8(p.Child(cmp.Or(name, f.Name)), v.Field(i))...)
		}
	}
	return errs
}

func documentError(detail string) error {
	return &experiment.InvalidError{Errors: field.ErrorList{field.Invalid(field.NewPath("document"), "", detail)}}
}

// Bounds of an invalid document's problems in an error reply: whatever the
// document holds, the reply quotes at most a prefix of each value
// (shared.Excerpt) and stays a few KiB.
const (
	maxProblems    = 20
	maxFieldPath   = 128
	maxFieldDetail = 256
)

// shortened is err with an invalid document's problems cut short: at most
// maxProblems of them, each value a prefix, each field path and detail
// clipped (an unknown field's path is the document's own text), and the
// experiment's name too. Other errors quote no input beyond an Excerpt.
func shortened(err error) error {
	inv, ok := err.(*experiment.InvalidError)
	if !ok {
		return err
	}
	out := &experiment.InvalidError{Name: inv.Name}
	if len(out.Name) > 2*validation.DNS1123LabelMaxLength+1 { // not a name: a prefix
		out.Name = shared.Clip(out.Name, shared.ExcerptBytes)
	}
	for _, fe := range inv.Errors[:min(len(inv.Errors), maxProblems)] {
		c := *fe
		c.Field = shared.Clip(c.Field, maxFieldPath)
		c.Detail = shared.Clip(c.Detail, maxFieldDetail)
		switch v := c.BadValue.(type) {
		case nil, bool, int, int32, int64, uint64, float32, float64, field.OmitValueType:
		default:
			if s := fmt.Sprint(v); len(s) > shared.ExcerptBytes {
				c.BadValue = shared.Clip(s, shared.ExcerptBytes)
				c.Detail += fmt.Sprintf(" (the value is %d bytes)", len(s))
			}
		}
		out.Errors = append(out.Errors, &c)
	}
	if n := len(inv.Errors) - maxProblems; n > 0 {
		out.Errors = append(out.Errors, field.Invalid(field.NewPath("document"), field.OmitValueType{}, fmt.Sprintf("%d more problems not listed", n)))
	}
	return out
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
