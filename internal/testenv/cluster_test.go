package testenv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/internal/testenv"
)

// TestClusterSurvivesItsLeader: a 3-node cluster forms, an R3 stream's
// leader can be put on the meta leader, and with that node shut down the
// two others elect a meta leader and a stream leader, and a client given
// every URL publishes on.
func TestClusterSurvivesItsLeader(t *testing.T) {
	t.Parallel()
	c := testenv.StartCluster(t, 3)
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	leader := c.MetaLeader()
	c.Lead(nc, leader, "S", "")
	if _, err := js.Publish(ctx, "s.1", nil); err != nil {
		t.Fatal(err)
	}
	c.Shutdown(leader)
	c.WaitForMetaLeader(2)
	testenv.EventuallyWithin(t, testenv.ClusterFormsWithin, "a publish after the leader's loss", func() (bool, string) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "s.2", nil)
		return err == nil, fmt.Sprint(err)
	})
	if got := c.StreamLeader("S"); got < 0 || got == leader {
		t.Errorf("stream leader %d after node %d was shut down", got, leader)
	}
	info, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}
