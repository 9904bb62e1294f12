//go:build unix

package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// The experiment of every trial: 10 iterations of 1 s, loadgen at 30 req/s
// from the start for 8 s, so that every request has ended, and been
// flushed, before the last window closes: without a fault the collector
// counts exactly the requests that reached the live version. The dark
// version is as fast as live and never fails: the verdict is PASS, by far
// (mean about 6 ms against 50, no errors against 1 %), so that a value
// missing or wrong after a kill shows as a FAIL.
const (
	iterations = 10
	rate       = 30
	loadFor    = 8 * time.Second
)

const experimentYAML = `apiVersion: iter8.tools/v2alpha1
kind: Experiment
metadata:
  name: %s
spec:
  target: default/sample-app
  strategy:
    testingPattern: Conformance
  criteria:
    objectives:
    - metric: mean-latency
      upperLimit: 50
    - metric: 95th-percentile-tail-latency
      upperLimit: 100
    - metric: error-rate
      upperLimit: "0.01"
  duration:
    intervalSeconds: 1
    iterationsPerLoop: %d
  versionInfo:
    baseline:
      name: current
      variables:
      - name: revision
        value: sample-app-v2
  mirroring:
    host: customdomain.com
    percent: 40
  load:
    rate: %d
    delay: 0s
    duration: %s
`

// plan is one trial: whom to kill, when, and for how long, all drawn from
// the trial's seed.
type plan struct {
	n      int // trial number, from 1
	victim string
	seed   uint64
	// The victim is killed offset into iteration killAt (at startTime +
	// (killAt-1)·interval + offset), and started again after pause.
	killAt int32
	offset time.Duration
	pause  time.Duration
}

func newPlan(n int, victim string, seed uint64) plan {
	r := rand.New(rand.NewPCG(seed, 0x636861))
	return plan{
		n: n, victim: victim, seed: seed,
		killAt: 2 + r.Int32N(iterations-2), // 2 … iterations-1
		offset: time.Duration(r.IntN(1000)) * time.Millisecond,
		pause:  time.Duration(300+r.IntN(1200)) * time.Millisecond,
	}
}

// killTime is when the plan kills, for an experiment started at start.
func (p plan) killTime(start time.Time) time.Time {
	return start.Add(time.Duration(p.killAt-1)*time.Second + p.offset)
}

// result is what a trial saw.
type result struct {
	plan
	// outcome: Completed, Failed (with the reason), or stuck (not ended
	// within the bound).
	outcome    string
	completed  bool // Completed, not Failed
	iterations int32
	// iterationEvents counts the iteration events (one per iteration).
	iterationEvents int
	verdict         string // PASS, FAIL, or - (none)
	verdicts        int    // verdict events
	sent            int64  // status.load.sent: loadgen's count as the report shows it
	live            int64  // loadgen's requests that reached the live version
	counted         int64  // the live version's request-count at the last iteration; -1: none
	// reported is what the verdict says was lost (verdict.loss): nil when
	// it says nothing.
	reported *experiment.ObservationLoss
	killed   bool
	// recovery is from the kill to the victim ready again (pause
	// included); for nats-server, every service ready too.
	recovery time.Duration
	// late is how far the latest iteration came after its schedule
	// (startTime + k·interval + the collector's grace).
	late    time.Duration
	crashes []string
}

func (r *result) lost() int64 {
	if r.counted < 0 {
		return r.live
	}
	return r.live - r.counted
}

// runTrial runs one trial on a stack of its own and fills res as it goes,
// so that a trial cut short still has a row in the table.
func runTrial(t *testing.T, bin binaries, res *result) {
	t.Helper()
	p := res.plan
	res.counted = -1
	res.verdict = "-"
	s := startStack(t, bin)
	name := fmt.Sprintf("chaos-%s-%d", p.victim, p.n)
	file := filepath.Join(s.dir, "experiment.yaml")
	doc := fmt.Sprintf(experimentYAML, name, iterations, rate, loadFor)
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.submit(ctx, file); err != nil {
		t.Fatal(err)
	}
	store, err := s.store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("trial %d: seed %d: kill -9 %s %v into iteration %d, start it again %v later", p.n, p.seed, p.victim, p.offset, p.killAt, p.pause)

	deadline := time.Now().Add(iterations*time.Second + 60*time.Second)
	var x *experiment.Experiment
	for {
		cur, err := get(ctx, store, name)
		if err == nil {
			x = cur
		}
		if x != nil && x.Status.Terminal() {
			break
		}
		if !res.killed && x != nil && x.Status.StartTime != nil && time.Until(p.killTime(*x.Status.StartTime)) < 100*time.Millisecond {
			time.Sleep(time.Until(p.killTime(*x.Status.StartTime)))
			res.killed = true
			res.recovery, err = s.killAndRestart(ctx, p)
			if err != nil {
				t.Errorf("%s after kill -9: %v", p.victim, err)
			}
			continue
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.live = s.live.n.Load()
	for _, name := range append([]string{natsName}, services...) {
		for _, line := range s.procs[name].crashes() {
			res.crashes = append(res.crashes, name+": "+line)
		}
	}
	if x == nil {
		res.outcome = "stuck: never stored"
		return
	}
	measure(ctx, t, s, x, res)
}

// killAndRestart kills the victim with SIGKILL, waits p.pause, starts it
// again (same ports, same store directory) and waits until it is ready;
// it returns the time from the kill to ready.
func (s *stack) killAndRestart(ctx context.Context, p plan) (time.Duration, error) {
	victim := s.procs[p.victim]
	killed := time.Now()
	if err := victim.kill(); err != nil {
		return 0, err
	}
	time.Sleep(p.pause)
	if err := victim.start(); err != nil {
		return 0, err
	}
	var err error
	if p.victim == natsName {
		err = errors.Join(s.natsReady(ctx), s.ready(ctx, services...))
	} else {
		err = s.ready(ctx, p.victim)
	}
	return time.Since(killed), err
}

// get reads the experiment's state, bounded.
func get(ctx context.Context, store *bus.Store, name string) (*experiment.Experiment, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	x, _, err := store.Get(ctx, "default", name)
	if errors.Is(err, shared.ErrNotFound) {
		return nil, err
	}
	return x, err
}

// measure fills in the outcome and the counts from the final state and
// the events.
func measure(ctx context.Context, t *testing.T, s *stack, x *experiment.Experiment, res *result) {
	t.Helper()
	st := &x.Status
	res.iterations = st.CompletedIterations
	switch {
	case !st.Terminal():
		res.outcome = fmt.Sprintf("stuck: %s, %q", st.Stage, st.Message)
	case st.Failed():
		res.outcome = "Failed: " + st.Condition(experiment.ConditionFailed).Message
	default:
		res.outcome, res.completed = "Completed", true
	}
	if st.Load != nil {
		res.sent = st.Load.Sent
	}
	if a := st.Analysis; a != nil {
		for version, v := range a.Versions {
			if v.Role != experiment.RoleLive {
				continue
			}
			if c := a.AggregatedMetrics["request-count"][version]; c != nil {
				res.counted = int64(*c)
			}
		}
	}
	name := x.Metadata.Name
	// The judge stores the completed state, then publishes its events:
	// give the verdict a moment to follow.
	var verdicts []*bus.Event
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		verdicts, err = s.events(ctx, name, bus.EventVerdict)
		if err != nil {
			t.Errorf("verdict events: %v", err)
		}
		if err != nil || len(verdicts) > 0 || time.Now().After(deadline) {
			break
		}
	}
	res.verdicts = len(verdicts)
	if len(verdicts) > 0 && verdicts[len(verdicts)-1].Verdict != nil {
		res.verdict = "FAIL"
		if verdicts[len(verdicts)-1].Verdict.Passed {
			res.verdict = "PASS"
		}
		res.reported = verdicts[len(verdicts)-1].Verdict.Loss
	}
	its, err := s.events(ctx, name, bus.EventIteration)
	if err != nil {
		t.Errorf("iteration events: %v", err)
	}
	res.iterationEvents = len(its)
	if st.StartTime != nil {
		for _, ev := range its {
			if ev.Iteration == nil {
				continue
			}
			due := st.StartTime.Add(time.Duration(ev.Iteration.Number)*x.Interval() + grace)
			res.late = max(res.late, ev.Time.Sub(due))
		}
	}
}
