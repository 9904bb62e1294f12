package experiment

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Seconds is a duration written as a Go duration string ("10s", "1m30s") or
// a number of seconds (10, 0.5). It encodes as a duration string. Text that
// does not parse is kept and reported by Validate with its field path.
type Seconds struct {
	time.Duration
	invalid string
}

// Sec returns a *Seconds of d, for literals.
func Sec(d time.Duration) *Seconds { return &Seconds{Duration: d} }

// MarshalJSON writes the duration as a string like "10s".
func (s Seconds) MarshalJSON() ([]byte, error) { return json.Marshal(s.Duration.String()) }

// UnmarshalJSON accepts "10s" or 10; anything else is kept for Validate.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	var err error
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err = json.Unmarshal(b, &str); err == nil {
			err = s.UnmarshalText([]byte(str))
		}
	} else {
		var f float64
		if f, err = strconv.ParseFloat(string(b), 64); err == nil {
			err = s.fromSeconds(f)
		}
	}
	if err != nil {
		*s = Seconds{invalid: unquote(b)}
	}
	return nil
}

// Invalid returns the text that did not parse as a duration, if any.
func (s *Seconds) Invalid() (string, bool) { return s.invalid, s.invalid != "" }

// MarshalText writes the duration as a string like "10s" (msgpack uses it).
func (s Seconds) MarshalText() ([]byte, error) { return []byte(s.Duration.String()), nil }

// UnmarshalText accepts "10s" or "10".
func (s *Seconds) UnmarshalText(b []byte) error {
	if f, err := strconv.ParseFloat(string(b), 64); err == nil {
		return s.fromSeconds(f)
	}
	d, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want a string like \"10s\" or a number of seconds", b)
	}
	s.Duration = d
	return nil
}

func (s *Seconds) fromSeconds(f float64) error {
	if f > float64(1<<62)/float64(time.Second) || f < -float64(1<<62)/float64(time.Second) || f != f {
		return fmt.Errorf("duration %v seconds is out of range", f)
	}
	s.Duration = time.Duration(f * float64(time.Second))
	return nil
}

// EncodeMsgpack writes the duration as a string like "10s", so a message
// decoded without its Go type (darklaunch decode, other languages) reads it.
func (s *Seconds) EncodeMsgpack(enc *msgpack.Encoder) error {
	if s.invalid != "" {
		return enc.EncodeString(s.invalid)
	}
	return enc.EncodeString(s.Duration.String())
}

// DecodeMsgpack reads a duration string (or, from older writers, bytes).
func (s *Seconds) DecodeMsgpack(dec *msgpack.Decoder) error {
	v, err := dec.DecodeInterface()
	if err != nil {
		return err
	}
	var text string
	switch t := v.(type) {
	case string:
		text = t
	case []byte:
		text = string(t)
	default:
		text = fmt.Sprint(t)
	}
	if err := s.UnmarshalText([]byte(text)); err != nil {
		*s = Seconds{invalid: text}
	}
	return nil
}
