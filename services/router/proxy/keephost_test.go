package proxy

import (
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestCopiesAreMarked: every copy carries Darklaunch-Mirror with the
// experiment's key; its Host is Envoy's "<host>-shadow" by default, and the
// request's own with spec.mirroring.keepHost. Live sees neither.
func TestCopiesAreMarked(t *testing.T) {
	for _, keep := range []bool{false, true} {
		live := routertest.NewVersion(t, nil)
		dark := routertest.NewVersion(t, nil)
		p, base := newTestProxy(t, Config{}, nil)
		e := routertest.Experiment("marked", "customdomain.com", live.URL, dark.URL, 100, experiment.StageRunning)
		e.Spec.Mirroring.KeepHost = keep
		setup(t, p, e)
		routertest.Send(t, base, "customdomain.com", "GET", "/", nil)
		dark.WaitCount(t, 1, 5*time.Second)
		c := dark.Requests()[0]
		wantHost := "customdomain.com-shadow"
		if keep {
			wantHost = "customdomain.com"
		}
		if c.Host != wantHost || c.Header.Get(experiment.MirrorHeader) != "default/marked" {
			t.Errorf("keepHost %v: copy Host %q, %s %q; want %q and default/marked", keep, c.Host, experiment.MirrorHeader, c.Header.Get(experiment.MirrorHeader), wantHost)
		}
		if l := live.Requests()[0]; l.Header.Get(experiment.MirrorHeader) != "" || l.Host != "customdomain.com" {
			t.Errorf("live got Host %q and %s %q: want its own request, unmarked", l.Host, experiment.MirrorHeader, l.Header.Get(experiment.MirrorHeader))
		}
	}
}
