package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/stack"
	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services"
	"github.com/darklaunch/darklaunch/services/collector"
	"github.com/darklaunch/darklaunch/services/router"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/proxy"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/service"
)

// TestLeafNodeRouterAndLoadgenBesideTheTraffic is issue 10's leaf-node
// layout (docs/protocol.md, "Several Kubernetes clusters"), in process:
// the judge and the collector on the central cluster (the hub, which has
// JetStream: the streams, the bucket, the judge's queue), the router and
// loadgen in the cluster of the traffic, on a leaf node without JetStream
// of its own, which reaches the hub's through the leaf connection. The
// experiment completes with every iteration, and the healthy dark version
// passes, as on one server.
func TestLeafNodeRouterAndLoadgenBesideTheTraffic(t *testing.T) {
	t.Parallel()
	l := testenv.StartLeaf(t)
	e := startStack(t, stack.Config{
		NATS:     bus.ConnConfig{URL: l.Hub.ClientURL()},
		Run:      []string{services.Collector, services.Judge},
		Services: []service.Config{&collector.Config{Grace: 600 * time.Millisecond}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	edge, err := stack.Start(ctx, stack.Config{
		NATS: bus.ConnConfig{URL: l.Leaf.ClientURL()},
		Run:  []string{services.Router, services.Loadgen},
		Services: []service.Config{
			&router.Config{Proxy: proxy.Config{FlushInterval: 200 * time.Millisecond}, Settings: mirroring.Settings{InitTimeout: 5 * time.Second, InitInterval: 100 * time.Millisecond}},
		},
		Log: logger(t),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		edge.Close()
		cancel()
	})
	x := e.run("leaf", nil)
	e.checkCompleted(x)
	if !x.Passed() {
		t.Fatalf("through a leaf node the healthy dark version did not pass: %v %+v", assessments(x), x.Status.Analysis.Objectives)
	}
	if got := x.Status.Routing; got == nil || got.Backend != "proxy" {
		t.Errorf("routing %+v, want the edge router's proxy", got)
	}
	if n := value(x, experiment.MetricRequestCount, x.BaselineName()); n < 10 {
		t.Errorf("dark request count %v: the edge's traffic did not reach the hub's collector", n)
	}
}
