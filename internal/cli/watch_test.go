package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/stack"
	"github.com/darklaunch/darklaunch/services/collector"
	"github.com/darklaunch/darklaunch/services/router"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/proxy"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/service"
)

// TestWatchEventsToTheEnd: `watch --events` prints every event to the last
// (the judge stores the final state before it publishes the verdict and
// completed events), and on a finished experiment replays them all.
func TestWatchEventsToTheEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := stack.Start(ctx, stack.Config{
		StoreDir: t.TempDir(),
		Services: []service.Config{
			&router.Config{Proxy: proxy.Config{FlushInterval: 200 * time.Millisecond}, Settings: mirroring.Settings{InitTimeout: 5 * time.Second, InitInterval: 100 * time.Millisecond}},
			&collector.Config{Grace: 600 * time.Millisecond},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	server := st.URL
	doc := strings.Replace(readExample(t, "experiment-local.yaml"), "iterationsPerLoop: 7", "iterationsPerLoop: 3", 1)
	if code, _, stderr := run(t, doc, "submit", "--server", server, "-"); code != 0 {
		t.Fatalf("submit: exit %d: %s", code, stderr)
	}
	types := func(out string) map[string]int {
		n := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var ev bus.Event
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("not an event as JSON: %q: %v", line, err)
			}
			n[ev.Type]++
		}
		return n
	}
	for _, pass := range []string{"live", "finished"} {
		start := time.Now()
		code, out, stderr := run(t, "", "watch", "--events", "--server", server, "mirroring-local")
		if code != 0 {
			t.Fatalf("%s: watch --events: exit %d: %s", pass, code, stderr)
		}
		n := types(out)
		for _, typ := range []string{bus.EventCreated, bus.EventRouting, bus.EventIteration, bus.EventVerdict, bus.EventCompleted} {
			if n[typ] == 0 {
				t.Errorf("%s: no %s event printed; printed %v", pass, typ, n)
			}
		}
		// Loadgen's final report (done) may land after the judge's last
		// event; it is printed too.
		var sawDone bool
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var ev bus.Event
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Type == bus.EventLoad && ev.Load != nil && ev.Load.Done {
				sawDone = true
			}
		}
		if !sawDone {
			t.Errorf("%s: loadgen's final load report not printed; printed %v", pass, n)
		}
		if pass == "finished" && time.Since(start) > 4*time.Second {
			t.Errorf("watching a finished experiment took %v: it should end on its completed event", time.Since(start))
		}
	}
}
