package experiment

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// DropWarnShare is the share of the copies meant for the dark version that
// may be dropped before the verdict says the dark version saw a different
// experiment than the one asked for.
const DropWarnShare = 0.05

// Sample is what the dark version really saw of the live traffic (local
// mode, where the proxy mirrors): the copies sent against the live requests
// and the share requested, and the copies dropped by reason.
type Sample struct {
	// Requested is the percent of live requests to mirror (routing status).
	Requested float64 `json:"requested,omitempty"`
	// Live counts the live requests; Mirrored the copies sent, Share
	// Mirrored ÷ Live in percent.
	Live     int64   `json:"live"`
	Mirrored int64   `json:"mirrored"`
	Share    float64 `json:"share"`
	// Dropped counts the copies selected but not sent, by reason;
	// DroppedShare is their share of the copies meant for dark (sent and
	// dropped), in percent.
	Dropped      map[string]int64 `json:"dropped,omitempty"`
	DroppedShare float64          `json:"droppedShare,omitempty"`
}

// SampleOf is the sample of a's last iteration; nil when the proxy did not
// say what it mirrored (Prometheus, Istio) or no live request was counted.
func SampleOf(a *Analysis, routing *RoutingStatus) *Sample {
	if a == nil || a.Mirror == nil {
		return nil
	}
	live := a.AggregatedMetrics[MetricRequestCount][LiveVersion]
	if live == nil || *live <= 0 {
		return nil
	}
	s := &Sample{Live: int64(*live), Mirrored: a.Mirror.Mirrored, Dropped: maps.Clone(a.Mirror.Dropped)}
	if routing != nil {
		s.Requested = routing.Percent
	}
	s.Share = 100 * float64(s.Mirrored) / float64(s.Live)
	var dropped int64
	for _, n := range s.Dropped {
		dropped += n
	}
	if meant := s.Mirrored + dropped; meant > 0 {
		s.DroppedShare = 100 * float64(dropped) / float64(meant)
	}
	return s
}

// Skewed reports whether more than DropWarnShare of the copies meant for
// the dark version were dropped.
func (s *Sample) Skewed() bool { return s != nil && s.DroppedShare > 100*DropWarnShare }

// String says it in one line: "39.8 % of 250 live requests mirrored (40 %
// requested); copies dropped: inflight 3 (1.2 %)".
func (s *Sample) String() string {
	if s == nil {
		return ""
	}
	b := fmt.Sprintf("%s of %d live requests mirrored", pct(s.Share), s.Live)
	if s.Requested > 0 {
		b += fmt.Sprintf(" (%s requested)", pct(s.Requested))
	}
	if len(s.Dropped) == 0 {
		return b + "; no copy dropped"
	}
	var parts []string
	for _, reason := range slices.Sorted(maps.Keys(s.Dropped)) {
		parts = append(parts, fmt.Sprintf("%s %d", reason, s.Dropped[reason]))
	}
	return b + fmt.Sprintf("; copies dropped: %s (%s of the copies meant for the dark version)", strings.Join(parts, ", "), pct(s.DroppedShare))
}

func pct(x float64) string {
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", x), "0"), ".") + " %"
}
