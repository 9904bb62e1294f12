package bus

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// DecodeEvent decodes an event of content type ct (sniffed when empty) and
// puts the floats of the sections other services publish (routing, load,
// snapshot) in their canonical form, so that its reader never meets a NaN or
// an infinity: a snapshot value that is not finite is unavailable (nil), with
// "NaN", "+Inf" or "-Inf" as its reason in Snapshot.Errors; any other float
// that is not finite is 0. JSON, a reply and state encoding, has neither, and
// a NaN compares false with every limit. The judge's own sections (iteration,
// verdict, experiment) are finite by construction and left as they are.
func DecodeEvent(ct string, data []byte) (*Event, error) {
	var ev Event
	if err := Unmarshal(ct, data, &ev); err != nil {
		return nil, err
	}
	// msgpack carries any instant; JSON only years 0 to 9999 (found by
	// FuzzUnmarshal): such an event could not be replied or stored.
	times := map[string]time.Time{"time": ev.Time}
	if ev.Snapshot != nil {
		times["snapshot.start"], times["snapshot.end"] = ev.Snapshot.Start, ev.Snapshot.End
	}
	for field, t := range times {
		if y := t.Year(); y < 0 || y > 9999 {
			return nil, fmt.Errorf("event %s: year %d outside 0..9999", field, y)
		}
	}
	if ev.Routing != nil {
		ev.Routing.Status.Percent = finiteOrZero(ev.Routing.Status.Percent)
	}
	if p := ev.Load; p != nil {
		for _, f := range []*float64{&p.AchievedRate, &p.TargetRate, &p.P50Ms, &p.P95Ms, &p.P99Ms} {
			*f = finiteOrZero(*f)
		}
	}
	if ev.Snapshot != nil {
		ev.Snapshot.Canonicalize()
	}
	return &ev, nil
}

// Canonicalize makes every value that is not finite unavailable (nil), with
// why in Errors ("NaN", "+Inf", "-Inf"): that reason wins over any other the
// collector gave, since the value itself was measured. An interval that
// cannot be right (a bound that is not finite, lo above hi, a confidence
// outside (0, 1)) is dropped. DecodeEvent calls it;
// a snapshot built in memory needs it before it is judged.
func (s *Snapshot) Canonicalize() {
	for metric, v := range s.Values {
		if v == nil || !(math.IsNaN(*v) || math.IsInf(*v, 0)) {
			continue
		}
		if s.Errors == nil {
			s.Errors = map[string]string{}
		}
		s.Errors[metric] = strconv.FormatFloat(*v, 'f', -1, 64)
		s.Values[metric] = nil
	}
	for metric, iv := range s.Intervals {
		if !iv.Valid() {
			delete(s.Intervals, metric) // no interval rather than a wrong one
		}
	}
	if s.Paired != nil {
		s.Paired.canonicalize()
	}
}

func finiteOrZero(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}
