package experiment

import (
	"cmp"
	"encoding/json"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Limit is an objective's bound: a Kubernetes quantity written as a number
// (50) or a string ("0.01", "100m"). Text that does not parse is kept and
// reported by Validate with its field path, instead of failing the whole
// decode with an error that names no field.
type Limit struct {
	resource.Quantity
	invalid string
}

// NewLimit parses s as a quantity; it panics on bad input, for literals.
func NewLimit(s string) *Limit { return &Limit{Quantity: resource.MustParse(s)} }

// UnmarshalJSON accepts a number or a quantity string.
func (l *Limit) UnmarshalJSON(b []byte) error {
	var q resource.Quantity
	if err := q.UnmarshalJSON(b); err != nil {
		*l = Limit{invalid: cmp.Or(unquote(b), emptyText)}
		return nil
	}
	*l = Limit{Quantity: q}
	return nil
}

// emptyText stands for an empty limit ("") in invalid: an empty invalid
// would read as "no problem" and the limit as 0.
const emptyText = `""`

// unquote returns a JSON string's text, or the raw JSON for other values.
func unquote(b []byte) string {
	var s string
	if json.Unmarshal(b, &s) == nil {
		return s
	}
	return string(b)
}

// EncodeMsgpack writes the quantity as its canonical string.
func (l *Limit) EncodeMsgpack(enc *msgpack.Encoder) error {
	if l.invalid != "" {
		return enc.EncodeString(l.invalid)
	}
	return enc.EncodeString(l.Quantity.String())
}

// DecodeMsgpack reads a quantity string.
func (l *Limit) DecodeMsgpack(dec *msgpack.Decoder) error {
	s, err := dec.DecodeString()
	if err != nil {
		return err
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		*l = Limit{invalid: cmp.Or(s, emptyText)}
		return nil
	}
	*l = Limit{Quantity: q}
	return nil
}

// Float64 returns the limit as the float64 nearest to its decimal value.
// Quantity's AsApproximateFloat64 rounds up many decimals ("0.95" becomes
// 0.9500000000000001), which would make a value exactly at a lowerLimit fail
// against Iter8's inclusive bound; parsing the decimal text rounds correctly.
func (l *Limit) Float64() float64 {
	if f, err := strconv.ParseFloat(l.AsDec().String(), 64); err == nil {
		return f
	}
	return l.AsApproximateFloat64()
}

// Invalid returns the text that did not parse as a quantity, if any.
func (l *Limit) Invalid() (string, bool) { return l.invalid, l.invalid != "" }

// IsZero reports whether the limit is absent. It shadows Quantity.IsZero,
// which msgpack's omitempty consults: without it a limit of 0 (error-count
// upperLimit 0) was dropped when the experiment was stored, leaving an
// objective with no limit at all.
func (l *Limit) IsZero() bool { return l == nil }
