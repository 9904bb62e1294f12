package proxy

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/services/router/routertest"
)

// TestCopiesInFlightFollowTheTraffic: with the defaults, the copies in
// flight follow the traffic (rate × dark latency), not a fixed count: 200
// requests at once, all mirrored, to a dark version that answers after
// 300 ms, are all copied (a fixed bound of 64 dropped 136 of them).
func TestCopiesInFlightFollowTheTraffic(t *testing.T) {
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) { time.Sleep(300 * time.Millisecond) })
	p, base, _ := routedProxy(t, Config{}, live, dark, "follow", "customdomain.com", 100)
	sendAll(t, base, "customdomain.com", "/", 200, 200)
	if d := dropped(t, p, "default/follow", DropInflight); d != 0 {
		t.Errorf("%v copies dropped for inflight with %v bytes of copies allowed; want none", d, p.cfg.MirrorMemory)
	}
	rt := p.table.Load().byKey["default/follow"]
	waitIdle(t, rt)
	if got := len(dark.Requests()); got != 200 {
		t.Errorf("dark got %d copies, want 200", got)
	}
	if b := p.copyBytes.Load(); b != 0 {
		t.Errorf("%d bytes of copies still counted with none in flight", b)
	}
}

// TestCopiesInFlightStopAtTheMemoryBound: MirrorMemory bounds the copies
// in flight, every experiment together: with room for 10 copies and a dark
// version that hangs, 10 are held and the rest are dropped and counted at
// once, live answering every request; once the copies end, the room is
// back.
func TestCopiesInFlightStopAtTheMemoryBound(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	perCopy := int64(copyOverhead + 256) // the overhead and the test client's headers
	cfg := Config{MirrorMemory: 10 * perCopy, MirrorTimeout: 10 * time.Second}
	p, base, _ := routedProxy(t, cfg, live, dark, "bounded", "customdomain.com", 100)
	start := time.Now()
	sendAll(t, base, "customdomain.com", "/", 30, 1)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("30 requests took %v with a hung dark version: live waited for the copies", took)
	}
	if d := dropped(t, p, "default/bounded", DropInflight); d != 20 {
		t.Errorf("%v copies dropped for inflight, want 20 (room for 10)", d)
	}
	if b := p.copyBytes.Load(); b > cfg.MirrorMemory || b < 10*copyOverhead {
		t.Errorf("%d bytes of copies counted, want 10 copies' worth, at most %d", b, cfg.MirrorMemory)
	}
	free()
	waitIdle(t, p.table.Load().byKey["default/bounded"])
	if b := p.copyBytes.Load(); b != 0 {
		t.Errorf("%d bytes of copies still counted once they ended", b)
	}
	sendAll(t, base, "customdomain.com", "/", 5, 1)
	if d := dropped(t, p, "default/bounded", DropInflight); d != 20 {
		t.Errorf("%v copies dropped after the room came back, want still 20", d)
	}
}

func waitIdle(t testing.TB, rt *route) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for rt.active.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests and copies still in flight after 10 s", rt.active.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
