package experiment

import (
	"strings"
	"testing"
)

// TestSample: the share mirrored against the share requested, the drops by
// reason, and the 5 % line past which the verdict warns.
func TestSample(t *testing.T) {
	live := 1000.0
	an := func(mirrored int64, dropped map[string]int64) *Analysis {
		return &Analysis{
			AggregatedMetrics: map[string]map[string]*float64{MetricRequestCount: {LiveVersion: &live}},
			Mirror:            &MirrorStats{Mirrored: mirrored, Dropped: dropped},
		}
	}
	routing := &RoutingStatus{Percent: 40}
	s := SampleOf(an(398, map[string]int64{"inflight": 2}), routing)
	if s == nil || s.Share != 39.8 || s.DroppedShare != 0.5 || s.Skewed() {
		t.Fatalf("sample %+v: want 39.8 %% mirrored, 0.5 %% dropped, not skewed", s)
	}
	if got, want := s.String(), "39.8 % of 1000 live requests mirrored (40 % requested); copies dropped: inflight 2 (0.5 % of the copies meant for the dark version)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	s = SampleOf(an(23, map[string]int64{"inflight": 377}), routing)
	if !s.Skewed() || !strings.HasPrefix(s.String(), "2.3 % of 1000 live requests mirrored") {
		t.Errorf("sample %+v (%s): want skewed at 2.3 %%", s, s)
	}
	if SampleOf(&Analysis{}, routing) != nil || SampleOf(nil, nil) != nil {
		t.Error("a sample without the proxy's mirror counts")
	}
}
