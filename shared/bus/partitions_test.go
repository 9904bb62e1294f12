package bus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
)

// TestJudgePartition: the partition darklaunch computes for an experiment
// is the one the server's subject transform gives its events in the
// judge's queue, and the experiments spread over the partitions.
func TestJudgePartition(t *testing.T) {
	srv := testenv.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	infra, err := bus.EnsureInfra(ctx, srv.Conn(t), bus.StreamLimits{})
	if err != nil {
		t.Fatal(err)
	}
	n := 20 * bus.JudgePartitions
	used := map[int]int{}
	for i := range n {
		ns, name := fmt.Sprintf("ns%d", i%7), fmt.Sprintf("exp-%d", i)
		if _, err := infra.JS.Publish(ctx, bus.EventSubject(ns, name, bus.EventLoad), []byte("x")); err != nil {
			t.Fatal(err)
		}
		used[bus.JudgePartition(ns, name)]++
	}
	// Not an experiment's: no partition, not in the queue.
	if _, err := infra.JS.Publish(ctx, bus.EventSubject("default", "x", bus.EventVerdict), []byte("x")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "every event in the queue", func() (bool, string) {
		info, err := infra.Judge.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.State.Msgs == uint64(n), fmt.Sprintf("%d of %d", info.State.Msgs, n)
	})
	for i := range n {
		ns, name := fmt.Sprintf("ns%d", i%7), fmt.Sprintf("exp-%d", i)
		m, err := infra.Judge.GetLastMsgForSubject(ctx, bus.JudgeSubject(ns, name, bus.EventLoad))
		if err != nil {
			t.Fatalf("%s/%s: not at %s: %v", ns, name, bus.JudgeSubject(ns, name, bus.EventLoad), err)
		}
		if got, want := bus.EventSubjectOf(m.Subject), bus.EventSubject(ns, name, bus.EventLoad); got != want {
			t.Errorf("EventSubjectOf(%s) = %s, want %s", m.Subject, got, want)
		}
	}
	// 20 experiments per partition on average: each gets some.
	if len(used) != bus.JudgePartitions {
		t.Errorf("%d of %d partitions used: %v", len(used), bus.JudgePartitions, used)
	}
}

func TestEventSubjectOf(t *testing.T) {
	for in, want := range map[string]string{
		"darklaunch.judge.3.default.x.metrics": "darklaunch.events.default.x.metrics",
		"darklaunch.judge.3":                   "",
		"darklaunch.judge.":                    "",
		"darklaunch.events.default.x.metrics":  "",
		"":                                     "",
	} {
		if got := bus.EventSubjectOf(in); got != want {
			t.Errorf("EventSubjectOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestJudgeQueueStartsWhereTheLegacyConsumerStopped: a judge upgraded from
// the one durable consumer on the events stream neither handles an event
// again nor skips one: its queue sources the events after the last one
// the legacy consumer had acked, the legacy consumer is deleted, and a
// second EnsureInfra keeps the queue's position.
func TestJudgeQueueStartsWhereTheLegacyConsumerStopped(t *testing.T) {
	srv := testenv.StartNATS(t)
	nc := srv.Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// What a judge from before the partitions left.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: bus.StreamEvents, Subjects: []string{bus.EventsPrefix + ".>"}}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := js.Publish(ctx, bus.EventSubject("default", fmt.Sprintf("e%d", i), bus.EventMetrics), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	legacy, err := js.CreateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
		Durable: "darklaunch-judge", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1,
		FilterSubjects: []string{bus.EventTypeFilter(bus.EventRouting), bus.EventTypeFilter(bus.EventMetrics), bus.EventTypeFilter(bus.EventLoad)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		b, err := legacy.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}

	infra, err := bus.EnsureInfra(ctx, nc, bus.StreamLimits{})
	if err != nil {
		t.Fatal(err)
	}
	queued := func(want ...string) {
		t.Helper()
		testenv.Eventually(t, fmt.Sprintf("%d events in the queue", len(want)), func() (bool, string) {
			info, err := infra.Judge.Info(ctx)
			if err != nil {
				return false, err.Error()
			}
			return info.State.Msgs == uint64(len(want)), fmt.Sprintf("%d events", info.State.Msgs)
		})
		for _, name := range want {
			if _, err := infra.Judge.GetLastMsgForSubject(ctx, bus.JudgeSubject("default", name, bus.EventMetrics)); err != nil {
				t.Errorf("%s not in the queue: %v", name, err)
			}
		}
	}
	queued("e4", "e5")
	if _, err := js.Consumer(ctx, bus.StreamEvents, "darklaunch-judge"); err == nil {
		t.Error("the legacy consumer is still there")
	}
	if _, err := bus.EnsureInfra(ctx, nc, bus.StreamLimits{}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, bus.EventSubject("default", "e6", bus.EventMetrics), []byte("x")); err != nil {
		t.Fatal(err)
	}
	queued("e4", "e5", "e6")
}
