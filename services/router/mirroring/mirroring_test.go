package mirroring

import (
	"slices"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

func TestResolve(t *testing.T) {
	var s Settings
	s.Default()
	s.DefaultLiveURL = "http://live.example.com/"

	// Nothing in spec.mirroring: the settings' defaults.
	m, err := s.Resolve(&experiment.Experiment{})
	if err != nil || m.Host != "customdomain.com" || m.Percent != 40 || !slices.Equal(m.Methods, experiment.DefaultMirrorMethods) {
		t.Errorf("defaults: %+v, %v", m, err)
	}

	percent := 12.5
	e := &experiment.Experiment{Spec: experiment.Spec{Mirroring: &experiment.Mirroring{
		Host: "Shop.Example.com:8080", Percent: &percent, Methods: []string{"get", "Post"}, LiveRevision: "v1", DarkURL: "http://dark/",
	}}}
	m, err = s.Resolve(e)
	if err != nil || m.Host != "shop.example.com" || m.Percent != 12.5 || !slices.Equal(m.Methods, []string{"GET", "POST"}) || m.LiveRevision != "v1" {
		t.Errorf("from the spec: %+v, %v", m, err)
	}
	live, dark, err := s.Versions(e)
	if err != nil || live.String() != "http://live.example.com/" || dark.String() != "http://dark/" {
		t.Errorf("versions %v %v, %v; want live from the settings, dark from the spec", live, dark, err)
	}

	percent = 0
	if m, err := s.Resolve(e); err == nil || !strings.Contains(err.Error(), "spec.mirroring.percent 0") || m.Host != "shop.example.com" {
		t.Errorf("percent 0: %+v, %v; want an error, and the host resolved all the same", m, err)
	}
	e.Spec.Mirroring.DarkURL = ""
	if live, _, err := s.Versions(e); err == nil || !strings.Contains(err.Error(), "spec.mirroring.darkURL") || live == nil {
		t.Errorf("no dark URL: %v; want an error naming spec.mirroring.darkURL, and live resolved", err)
	}
}

func TestNeedsInitCheck(t *testing.T) {
	for _, tc := range []struct {
		st   experiment.Status
		want bool
	}{
		{experiment.Status{}, true},
		{experiment.Status{Stage: experiment.StageInitializing}, true},
		{experiment.Status{Stage: experiment.StageInitializing, Routing: &experiment.RoutingStatus{}}, false},
		{experiment.Status{Stage: experiment.StageRunning}, false},
	} {
		if got := NeedsInitCheck(&experiment.Experiment{Status: tc.st}); got != tc.want {
			t.Errorf("NeedsInitCheck(%+v) = %v, want %v", tc.st, got, tc.want)
		}
	}
}
