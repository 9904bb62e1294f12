package judge

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// The flow tests play the router and the collector by publishing their
// events, and watch what the judge stores and publishes.

func running(x *experiment.Experiment) bool { return x.Status.Stage == experiment.StageRunning }

func completed(k int32) func(*experiment.Experiment) bool {
	return func(x *experiment.Experiment) bool { return x.Status.CompletedIterations == k }
}

func TestFlowToVerdict(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	x := e.create(e.doc("mirroring", 3))

	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	e.publish(x, bus.EventRouting, bus.MsgID(x.Metadata.UID, bus.EventRouting), func(ev *bus.Event) {
		ev.Time = start
		ev.Routing = &bus.Routing{Ready: true, Status: experiment.RoutingStatus{Backend: "proxy", Host: "customdomain.com", Percent: 40, Dark: "sample-app-v2"}}
	})
	got := e.waitStatus("mirroring", "Running", running)
	if want := "TargetAcquired: Mirroring set up (40% of customdomain.com to sample-app-v2)"; got.Status.Message != want {
		t.Errorf("message %q, want %q", got.Status.Message, want)
	}
	if got.Status.StartTime == nil || !got.Status.StartTime.Equal(start) {
		t.Errorf("startTime %v, want the routing event's time %v", got.Status.StartTime, start)
	}
	if c := got.Status.Condition(experiment.ConditionTargetAcquired); c == nil || c.Status != "True" {
		t.Errorf("TargetAcquired %+v", c)
	}
	if r := got.Status.Routing; r == nil || r.Host != "customdomain.com" || r.Percent != 40 {
		t.Errorf("status.routing %+v", r)
	}

	// Load progress is recorded; the same report again writes nothing.
	load := func() {
		e.publish(x, bus.EventLoad, "", func(ev *bus.Event) {
			ev.Load = &bus.LoadProgress{Sent: 20, Succeeded: 19, Failed: 1, AchievedRate: 2}
		})
	}
	load()
	e.waitStatus("mirroring", "load recorded", func(x *experiment.Experiment) bool { return x.Status.Load != nil && x.Status.Load.Sent == 20 })
	_, rev, _ := e.store.Get(context.Background(), "default", "mirroring")
	load()

	for k := int32(1); k <= 2; k++ {
		e.snapshot(x, bus.RoleLive, k, good(k))
		e.snapshot(x, bus.RoleDark, k, slow(k))
	}
	got = e.waitStatus("mirroring", "2 iterations", completed(2))
	if got.Status.Message != "IterationUpdate: Completed Iteration 2" || got.Status.Stage != experiment.StageRunning {
		t.Errorf("status after 2 of 3: stage %s, message %q", got.Status.Stage, got.Status.Message)
	}
	an := got.Status.Analysis
	if an == nil {
		t.Fatal("no analysis")
	}
	if v := an.AggregatedMetrics[experiment.MetricMeanLatency]; v["live"] == nil || *v["live"] != 12.5 || v["current"] == nil || *v["current"] != 62.1 {
		t.Errorf("aggregatedMetrics mean-latency %v", v)
	}
	if v := an.AggregatedMetrics[experiment.MetricRequestCount]["current"]; v == nil || *v != 40 {
		t.Errorf("request-count of iteration 2: %v", v)
	}
	if a := an.VersionAssessments["current"]; !slices.Equal(a, []bool{false, true, true}) {
		t.Errorf("versionAssessments %v", a)
	}
	if an.Objectives[0].Reason != "value 62.100 is above upperLimit 50.000" || an.Mirror == nil || an.Mirror.Mirrored != 20 {
		t.Errorf("objectives %+v, mirror %+v", an.Objectives, an.Mirror)
	}
	if an.Versions["current"].Role != bus.RoleDark || an.Versions["live"].Role != bus.RoleLive {
		t.Errorf("versions %+v", an.Versions)
	}
	// The repeated load report (handled before the snapshots) did not write:
	// only the 2 × 2 snapshots did.
	if _, now, _ := e.store.Get(context.Background(), "default", "mirroring"); now != rev+4 {
		t.Errorf("revision %d, want %d: an unchanged load report was written", now, rev+4)
	}

	// The last iteration recovers: the verdict passes (values are cumulative).
	e.snapshot(x, bus.RoleLive, 3, good(3))
	e.snapshot(x, bus.RoleDark, 3, good(3))
	got = e.waitStatus("mirroring", "Completed", func(x *experiment.Experiment) bool { return x.Status.Terminal() })
	st := got.Status
	if st.CompletedIterations != 3 || st.Failed() || st.Message != "ExperimentCompleted: Experiment completed successfully" ||
		st.EndTime == nil || st.RecommendedBaseline != "current" || !got.Passed() {
		t.Errorf("final status %+v", st)
	}
	if w := st.Analysis.WinnerAssessment; !w.WinnerFound || w.Winner != "current" {
		t.Errorf("winnerAssessment %+v", w)
	}
	if c := st.Condition(experiment.ConditionCompleted); c == nil || c.Status != "True" || c.Reason != experiment.ReasonExperimentCompleted {
		t.Errorf("Completed condition %+v", c)
	}

	evs := e.waitEvents("mirroring", bus.EventCompleted, 1)
	all := e.events("mirroring")
	var order []string
	for _, ev := range all {
		if ev.Source == source {
			order = append(order, ev.Type)
		}
	}
	want := []string{"created", "iteration", "iteration", "iteration", "verdict", "completed"}
	if !slices.Equal(order, want) {
		t.Errorf("judge's events %v, want %v", order, want)
	}
	its := eventsOf(all, bus.EventIteration)
	for i, ev := range its {
		if ev.Iteration == nil || ev.Iteration.Number != int32(i+1) || ev.Iteration.Total != 3 || len(ev.Iteration.Objectives) != 3 {
			t.Errorf("iteration event %d: %+v", i+1, ev.Iteration)
		}
	}
	if its[0].Iteration.Satisfied || !its[2].Iteration.Satisfied {
		t.Errorf("iteration 1 satisfied=%v, 3 satisfied=%v", its[0].Iteration.Satisfied, its[2].Iteration.Satisfied)
	}
	v := eventsOf(all, bus.EventVerdict)[0].Verdict
	if v == nil || !v.Passed || v.Version != "current" || v.Iterations != 3 || v.Reason != "all 3 objectives satisfied after iteration 3" {
		t.Errorf("verdict %+v", v)
	}
	if c := evs[0].Experiment; c == nil || c.Status.Stage != experiment.StageCompleted || c.Metadata.UID != x.Metadata.UID {
		t.Errorf("completed event without the completed experiment")
	}
}

func TestRoutingNotReadyFails(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	x := e.create(e.doc("mirroring", 3))
	reason := "dark version http://127.0.0.1:9/ does not answer: connection refused"
	e.routing(x, false, reason)
	got := e.waitStatus("mirroring", "Failed", func(x *experiment.Experiment) bool { return x.Status.Terminal() })
	st := got.Status
	if !st.Failed() || st.Message != "HandlerFailed: "+reason || st.EndTime == nil || st.StartTime != nil {
		t.Errorf("status %+v", st)
	}
	if c := st.Condition(experiment.ConditionFailed); c.Reason != experiment.ReasonHandlerFailed || c.Message != reason {
		t.Errorf("Failed condition %+v", c)
	}
	if c := st.Condition(experiment.ConditionTargetAcquired); c == nil || c.Status != "False" {
		t.Errorf("TargetAcquired %+v", c)
	}
	failed := e.waitEvents("mirroring", bus.EventFailed, 1)
	if f := failed[0]; f.Experiment == nil || !f.Experiment.Status.Failed() || f.Message != st.Message {
		t.Errorf("failed event %+v", f)
	}
	// A ready answer afterwards (another router) changes nothing, and a
	// repeated refusal is not announced twice.
	e.routing(x, true, "")
	e.routing(x, false, reason)
	e.snapshot(x, bus.RoleDark, 1, good(1))
	e.waitConsumed()
	if got := e.get("default", "mirroring"); got.Status.Stage != experiment.StageCompleted || got.Status.CompletedIterations != 0 {
		t.Errorf("a late event moved a failed experiment: %+v", got.Status)
	}
	if n := len(eventsOf(e.events("mirroring"), bus.EventFailed)); n != 1 {
		t.Errorf("%d failed events, want 1", n)
	}
}

// waitConsumed waits until the judge has acked every event published so far.
func (e *env) waitConsumed() {
	e.t.Helper()
	e.waitFor("the judge to handle every event", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		q, err := e.js.Stream(ctx, bus.StreamJudge)
		if err != nil {
			return false, err.Error()
		}
		info, err := q.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		lag := uint64(0)
		for _, src := range info.Sources {
			lag += src.Lag
		}
		return info.State.Msgs == 0 && lag == 0, fmt.Sprintf("%d events in the queue, %d to source", info.State.Msgs, lag)
	})
}

func TestDuplicateSnapshotsDoNotDoubleCount(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	x := e.create(e.doc("mirroring", 3))
	e.routing(x, true, "")
	e.waitStatus("mirroring", "Running", running)

	e.snapshot(x, bus.RoleLive, 1, good(1))
	e.snapshot(x, bus.RoleDark, 1, good(1))
	e.waitStatus("mirroring", "iteration 1", completed(1))
	_, rev, _ := e.store.Get(context.Background(), "default", "mirroring")

	// The collector measures iteration 1 again (a restart past the stream's
	// duplicate window: new Msg-Ids), with other values; the stream also
	// sees a plain republish (same Msg-Id).
	e.snapshotWithID(x, bus.RoleLive, 1, slow(1), "again-live-1")
	e.snapshotWithID(x, bus.RoleDark, 1, slow(1), "again-dark-1")
	e.snapshot(x, bus.RoleDark, 1, slow(1))
	// An event of another run of the same name is ignored.
	other := *x
	other.Metadata.UID = "another-run"
	e.snapshot(&other, bus.RoleDark, 2, slow(2))
	e.waitConsumed()

	got, now, _ := e.store.Get(context.Background(), "default", "mirroring")
	if got.Status.CompletedIterations != 1 || now != rev {
		t.Errorf("completed %d at revision %d (was %d): a duplicate was counted", got.Status.CompletedIterations, now, rev)
	}
	if v := got.Status.Analysis.AggregatedMetrics[experiment.MetricMeanLatency]; *v["current"] != 12.5 || *v["live"] != 12.5 {
		t.Errorf("a duplicate snapshot changed the values: %v", v)
	}
	if n := len(eventsOf(e.events("mirroring"), bus.EventIteration)); n != 1 {
		t.Errorf("%d iteration events for one iteration", n)
	}

	// Iteration 2 is skipped (the collector was down); 3 stands on its own
	// and ends the experiment.
	e.snapshot(x, bus.RoleDark, 3, good(3))
	got = e.waitStatus("mirroring", "Completed", func(x *experiment.Experiment) bool { return x.Status.Terminal() })
	if got.Status.CompletedIterations != 3 || !got.Passed() {
		t.Errorf("status %+v", got.Status)
	}
	var nums []int32
	for _, ev := range eventsOf(e.events("mirroring"), bus.EventIteration) {
		nums = append(nums, ev.Iteration.Number)
	}
	if !slices.Equal(nums, []int32{1, 3}) {
		t.Errorf("iteration events %v, want [1 3]", nums)
	}
	// After the end, the last dark snapshot again republishes (deduplicated).
	e.snapshotWithID(x, bus.RoleDark, 3, good(3), "again-dark-3")
	e.waitConsumed()
	all := e.events("mirroring")
	if len(eventsOf(all, bus.EventVerdict)) != 1 || len(eventsOf(all, bus.EventCompleted)) != 1 {
		t.Errorf("verdict/completed published more than once")
	}
}

func TestRestartMidway(t *testing.T) {
	e := newEnv(t)
	stop := e.startJudge(Config{Instance: "first"})
	const n = 5
	x := e.create(e.doc("mirroring", n))
	e.routing(x, true, "")
	e.waitStatus("mirroring", "Running", running)
	values := func(k int32) map[string]*float64 {
		if k%2 == 0 {
			return slow(k) // failing iterations in between do not decide
		}
		return good(k)
	}
	for k := int32(1); k <= 2; k++ {
		e.snapshot(x, bus.RoleLive, k, good(k))
		e.snapshot(x, bus.RoleDark, k, values(k))
	}
	e.waitStatus("mirroring", "iteration 2", completed(2))
	stop()

	// Snapshots keep coming while no judge runs.
	for k := int32(3); k <= n; k++ {
		e.snapshot(x, bus.RoleLive, k, good(k))
		e.snapshot(x, bus.RoleDark, k, values(k))
	}
	if got := e.get("default", "mirroring"); got.Status.CompletedIterations != 2 {
		t.Fatalf("a stopped judge went on: %d", got.Status.CompletedIterations)
	}
	e.startJudge(Config{Instance: "second"})
	got := e.waitStatus("mirroring", "Completed", func(x *experiment.Experiment) bool { return x.Status.Terminal() })
	if got.Status.CompletedIterations != n || !got.Passed() {
		t.Errorf("status %+v", got.Status)
	}
	all := e.events("mirroring")
	var nums []int32
	for _, ev := range eventsOf(all, bus.EventIteration) {
		nums = append(nums, ev.Iteration.Number)
	}
	if !slices.Equal(nums, []int32{1, 2, 3, 4, 5}) {
		t.Errorf("iteration events %v, want every iteration once", nums)
	}
	verdicts := eventsOf(all, bus.EventVerdict)
	if len(verdicts) != 1 {
		t.Fatalf("%d verdicts", len(verdicts))
	}
	// The same verdict as an uninterrupted judge: the last values decide.
	want := NewVerdict("current", n, Evaluate(x.Spec.Criteria.Objectives, values(n), nil), nil)
	if v := verdicts[0].Verdict; v.Passed != want.Passed || v.Reason != want.Reason {
		t.Errorf("verdict %+v, want %+v", v, want)
	}
}

// TestCasesThroughService runs every testdata case through a running
// judge: the stored assessments and the verdict event must be what the
// case says, as they are for Evaluate alone.
func TestCasesThroughService(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	cases := loadCases(t)
	xs := map[string]*experiment.Experiment{}
	for file, c := range cases {
		name := strings.TrimSuffix(file, ".yaml")
		doc := e.doc(name, int32(len(c.Iterations)), c.Objectives...)
		doc.Spec.Criteria.Confidence = c.Confidence
		xs[file] = e.create(doc)
		e.routing(xs[file], true, "")
		for i, it := range c.Iterations {
			k := int32(i + 1)
			snap := it.snapshot()
			snap.Iteration, snap.Role, snap.Version = k, bus.RoleDark, "current"
			e.publishSnapshot(xs[file], snap, bus.MsgID(xs[file].Metadata.UID, bus.EventMetrics, bus.RoleDark, fmt.Sprint(k)))
		}
	}
	for file, c := range cases {
		name := strings.TrimSuffix(file, ".yaml")
		verdicts := e.waitEvents(name, bus.EventVerdict, 1)
		v := verdicts[0].Verdict
		if v.Passed != c.Verdict.Passed || (c.Verdict.Reason != "" && v.Reason != c.Verdict.Reason) ||
			(c.Verdict.Outcome != "" && v.Outcome != c.Verdict.Outcome) {
			t.Errorf("%s: verdict %+v, want %+v", file, v, c.Verdict)
		}
		if (v.Confidence == nil) != (c.Confidence == nil) {
			t.Errorf("%s: verdict confidence %v, want %v", file, v.Confidence, c.Confidence)
		}
		got := e.get("default", name)
		last := c.Iterations[len(c.Iterations)-1]
		if a := got.Status.Analysis.VersionAssessments["current"]; !slices.Equal(a, last.Assessments) {
			t.Errorf("%s: stored assessments %v, want %v", file, a, last.Assessments)
		}
		for j, want := range last.Reasons {
			if r := got.Status.Analysis.Objectives[j].Reason; r != want {
				t.Errorf("%s: stored reason %d %q, want %q", file, j, r, want)
			}
		}
		for j, want := range last.Outcomes {
			if o := got.Status.Analysis.Objectives[j].Outcome; o != want {
				t.Errorf("%s: stored outcome %d %q, want %q", file, j, o, want)
			}
		}
		if got.Passed() != c.Verdict.Passed {
			t.Errorf("%s: Passed() = %v", file, got.Passed())
		}
		if c.Verdict.Outcome != "" && got.Status.Analysis.Outcome != c.Verdict.Outcome {
			t.Errorf("%s: stored outcome %q, want %q", file, got.Status.Analysis.Outcome, c.Verdict.Outcome)
		}
	}
}

// TestConsumer checks the consumers the judge relies on for ordering: one
// per partition, one event in flight, and the queue they read.
func TestConsumer(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	for p := range bus.JudgePartitions {
		var info *jetstream.ConsumerInfo
		e.waitFor("the judge's consumer", func() (bool, string) {
			c, err := e.js.Consumer(context.Background(), bus.StreamJudge, bus.JudgeConsumer(p))
			if err != nil {
				return false, err.Error()
			}
			info, err = c.Info(context.Background())
			return err == nil, fmt.Sprint(err)
		})
		cfg := info.Config
		if cfg.MaxAckPending != 1 || cfg.AckPolicy != jetstream.AckExplicitPolicy || cfg.Durable != bus.JudgeConsumer(p) || cfg.FilterSubject != bus.JudgeFilter(p) {
			t.Errorf("consumer %d: %+v", p, cfg)
		}
	}
	q, err := e.js.Stream(context.Background(), bus.StreamJudge)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := q.CachedInfo().Config; cfg.Retention != jetstream.WorkQueuePolicy || len(cfg.Sources) != 1 || cfg.Sources[0].Name != bus.StreamEvents {
		t.Errorf("queue %+v", cfg)
	}
}

func TestNATSRestartMidway(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	x := e.create(e.doc("mirroring", 3))
	e.routing(x, true, "")
	e.snapshot(x, bus.RoleDark, 1, good(1))
	e.waitStatus("mirroring", "iteration 1", completed(1))

	e.srv.Restart()
	for k := int32(2); k <= 3; k++ {
		e.snapshot(x, bus.RoleLive, k, good(k))
		e.snapshot(x, bus.RoleDark, k, good(k))
	}
	got := e.waitStatus("mirroring", "Completed after a NATS restart", func(x *experiment.Experiment) bool { return x.Status.Terminal() })
	if !got.Passed() || got.Status.CompletedIterations != 3 {
		t.Errorf("status %+v", got.Status)
	}
	if n := len(e.waitEvents("mirroring", bus.EventVerdict, 1)); n != 1 {
		t.Errorf("%d verdicts", n)
	}
	// The API answers again too.
	if _, err := e.api.Get(context.Background(), bus.Ref{Namespace: "default", Name: "mirroring"}); err != nil {
		t.Errorf("get after the restart: %v", err)
	}
}

// TestPoisonEventDropped: an event whose handling fails at every attempt (its
// experiment's stored state is corrupt) is dropped after MaxDeliveries, so
// it holds back the events behind it on its partition for a while only;
// an experiment on another partition is not held back at all.
func TestPoisonEventDropped(t *testing.T) {
	e := newEnv(t)
	s, _ := e.runJudge(Config{MaxDeliveries: 3})
	if _, err := e.store.KV.Put(context.Background(), bus.Key("default", "corrupt"), []byte{0xc1, 0xc1, 0xc1}); err != nil {
		t.Fatal(err)
	}
	corrupt := e.doc("corrupt", 1)
	corrupt.Metadata.Namespace, corrupt.Metadata.UID = "default", "uid-of-corrupt"
	e.routing(corrupt, true, "")

	behind := e.create(e.doc(sharingPartition("behind", "corrupt"), 1))
	other := "other"
	for i := 0; e.partitionOf(other) == e.partitionOf("corrupt"); i++ {
		other = fmt.Sprintf("other-%d", i)
	}
	beside := e.create(e.doc(other, 1))
	e.routing(behind, true, "")
	e.routing(beside, true, "")
	e.waitStatus(other, "Running beside the poison event", running)
	if got := testutil.ToFloat64(s.prom.eventsDropped); got != 0 {
		t.Errorf("events dropped %v before the other partition's experiment ran, want 0: it was held back", got)
	}
	e.waitStatus(behind.Metadata.Name, "Running behind the poison event", running)
	if got := testutil.ToFloat64(s.prom.eventsDropped); got != 1 {
		t.Errorf("events dropped %v, want 1", got)
	}
	// The damaged entry hides nothing else: the list and the watchdog
	// skip it.
	if items, err := e.api.List(context.Background(), ""); err != nil || len(items) != 2 {
		t.Errorf("list with a damaged entry: %d items, %v; want the two others", len(items), err)
	}
	s.failStuck(context.Background())
	if got := testutil.ToFloat64(s.prom.experiments.WithLabelValues(string(experiment.StageRunning))); got != 2 {
		t.Errorf("watchdog pass with a damaged entry: running %v, want 2", got)
	}
}

// fakeMsg is a delivered event whose acknowledgement is recorded.
type fakeMsg struct {
	data      []byte
	delivered uint64
	nak, term bool
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: 42}, NumDelivered: m.delivered}, nil
}
func (m *fakeMsg) Data() []byte { return m.data }
func (m *fakeMsg) Headers() nats.Header {
	return nats.Header{bus.HeaderContentType: {bus.ContentTypeMsgpack}}
}
func (m *fakeMsg) Subject() string                 { return "darklaunch.judge.3.default.poison.routing" }
func (m *fakeMsg) Reply() string                   { return "" }
func (m *fakeMsg) Ack() error                      { return nil }
func (m *fakeMsg) DoubleAck(context.Context) error { return nil }
func (m *fakeMsg) Nak() error                      { m.nak = true; return nil }
func (m *fakeMsg) NakWithDelay(time.Duration) error {
	m.nak = true
	return nil
}
func (m *fakeMsg) InProgress() error           { return nil }
func (m *fakeMsg) Term() error                 { m.term = true; return nil }
func (m *fakeMsg) TermWithReason(string) error { m.term = true; return nil }

// TestDropBudgetCountsOwnFailures: deliveries that stopping judges handed
// back unhandled raise NumDelivered without any failure; the drop budget is
// the judge's own failures (with twice the budget in deliveries as a
// backstop), so such an event still gets its MaxDeliveries attempts.
func TestDropBudgetCountsOwnFailures(t *testing.T) {
	e := newEnv(t)
	s, err := New(Config{MaxDeliveries: 8}, e.nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.js, s.store = e.js, e.store // what Run sets; the consumer is not started
	if _, err := e.store.KV.Put(context.Background(), bus.Key("default", "poison"), []byte{0xc1}); err != nil {
		t.Fatal(err)
	}
	x := e.doc("poison", 1)
	x.Metadata.Namespace, x.Metadata.UID = "default", "uid-of-poison"
	ev := bus.NewEvent(bus.EventRouting, "test", x, time.Now())
	ev.Routing = &bus.Routing{Ready: true}
	data, err := bus.Marshal(bus.ContentTypeMsgpack, ev)
	if err != nil {
		t.Fatal(err)
	}
	// Delivered 9 times already (8 of them handed back by restarts): the
	// first failure here is not the last attempt.
	budget := map[uint64]int{}
	for attempt := 1; attempt <= 8; attempt++ {
		m := &fakeMsg{data: data, delivered: uint64(8 + attempt)}
		(&partition{Service: s, retries: retryBudget{max: 8, failures: budget}}).handleMsg(context.Background(), m)
		if last := attempt == 8; m.term != last || m.nak == last {
			t.Fatalf("attempt %d (delivery %d): nak %v, term %v; want a retry until the 8th failure, then the drop", attempt, m.delivered, m.nak, m.term)
		}
	}
	if got := testutil.ToFloat64(s.prom.eventsDropped); got != 1 {
		t.Errorf("events dropped %v, want 1", got)
	}
}

// TestEventMustMatchItsSubject: a metrics event published on the routing
// subject — what a router could do, permitted only routing events — is no
// fact: it is dropped and counted, and the experiment does not move.
func TestEventMustMatchItsSubject(t *testing.T) {
	e := newEnv(t)
	s, _ := e.runJudge(Config{})
	x := e.create(e.doc("forged", 1))
	e.routing(x, true, "")
	e.waitStatus("forged", "Running", running)

	ev := bus.NewEvent(bus.EventMetrics, "router", x, time.Now())
	ev.Snapshot = &bus.Snapshot{Iteration: 1, Role: bus.RoleDark, Values: map[string]*float64{experiment.MetricRequestCount: f64(100)}}
	m, err := bus.NewMsg(bus.EventSubject("default", "forged", bus.EventRouting), ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the forged event to be dropped", func() (bool, string) {
		n := testutil.ToFloat64(s.prom.eventsDropped)
		return n == 1, fmt.Sprintf("%v dropped", n)
	})
	if got := e.get("default", "forged"); got.Status.CompletedIterations != 0 || got.Status.Stage != experiment.StageRunning {
		t.Errorf("after a forged event: stage %s, %d iterations; want Running with none", got.Status.Stage, got.Status.CompletedIterations)
	}
}
