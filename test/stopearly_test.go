package e2e

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/sampleapp"
	"github.com/darklaunch/darklaunch/internal/stack"
	"github.com/darklaunch/darklaunch/services/collector"
	"github.com/darklaunch/darklaunch/services/router"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/proxy"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/service"
)

// withCriteria is the seed's experiment (1 s iterations, 25 req/s) with
// iterations and the criteria replaced.
func withCriteria(name string, iterations int, criteria string) []byte {
	s := string(doc(name))
	i, j := strings.Index(s, "  criteria:\n"), strings.Index(s, "  duration:\n")
	s = s[:i] + criteria + s[j:]
	return []byte(strings.Replace(s, "iterationsPerLoop: 7", "iterationsPerLoop: "+strconv.Itoa(iterations), 1))
}

// runDoc creates the experiment of data and waits until it is Completed,
// noting when it first saw it so.
func (e *env) runDoc(name string, data []byte) (*experiment.Experiment, time.Time) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := e.client.Create(ctx, data); err != nil {
		e.t.Fatalf("create: %v", err)
	}
	for {
		cur, err := e.client.Get(ctx, bus.Ref{Namespace: "default", Name: name})
		if err != nil {
			e.t.Fatalf("get: %v", err)
		}
		if cur.Status.Terminal() {
			return cur, time.Now()
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("experiment %s did not complete: stage %s, %d iterations, %q", name, cur.Status.Stage, cur.Status.CompletedIterations, cur.Status.Message)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestStopEarlyFailsAtOnce: a dark version with 20 % errors, judged at 95 %
// with stopEarly over 20 iterations, FAILs on error-rate well before the
// last iteration; the verdict and describe say it stopped early, and the
// proxy no longer routes the host a moment later (the mirroring is gone).
func TestStopEarlyFailsAtOnce(t *testing.T) {
	t.Parallel()
	e := start(t, sampleapp.Config{}, sampleapp.Config{ErrorRate: 0.2})
	x, done := e.runDoc("stop-early", withCriteria("stop-early", 20, `  criteria:
    confidence: 0.95
    stopEarly: true
    objectives:
    - metric: mean-latency
      upperLimit: 50
    - metric: error-rate
      upperLimit: "0.01"
`))
	a := x.Status.Analysis
	if x.Status.Failed() || a == nil || a.Outcome != experiment.VerdictFail || !a.StoppedEarly {
		t.Fatalf("status %q, analysis %+v: want a FAIL that stopped early", x.Status.Message, a)
	}
	if k := x.Status.CompletedIterations; k > 10 {
		t.Errorf("stopped after iteration %d of 20, want well before the last", k)
	}
	if r := a.Objectives[1]; r.Outcome != experiment.OutcomeViolated || !strings.Contains(r.Interval.Method, "sequence") {
		t.Errorf("error-rate %+v: want violated on a confidence sequence", r)
	}
	if !strings.Contains(x.Status.Message, "stopped early after iteration") {
		t.Errorf("status message %q does not say it stopped early", x.Status.Message)
	}
	e.awaitCompletedEvent("stop-early")
	vs := e.events("stop-early", bus.EventVerdict)
	if len(vs) != 1 || !vs[0].Verdict.StoppedEarly || vs[0].Verdict.Outcome != experiment.VerdictFail ||
		!strings.HasPrefix(vs[0].Verdict.Reason, "stopped early after iteration") {
		t.Fatalf("verdict events %d, want one FAIL that stopped early", len(vs))
	}
	// The mirroring is removed at once: the proxy answers for no experiment.
	deadline := done.Add(3 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, e.st.ProxyURL+"/", nil)
		req.Host = "customdomain.com"
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.Header.Get(bus.HeaderUnrouted) != "" {
				t.Logf("stopped after iteration %d of 20; mirroring removed %v after the completed state was seen", x.Status.CompletedIterations, time.Since(done).Round(time.Millisecond))
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy still routes customdomain.com 3 s after the experiment stopped early")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSlowerThanLiveFailsRelative: a dark version 30 ms slower than live
// fails mean-latency relative to live (at most 10 % slower, on the pairs
// of the same requests) while its own mean-latency <= 50 passes. The
// router's mirror timeout bounds every latency the intervals allow for: at
// the default 5 s, 100 requests show neither; at 250 ms they do.
func TestSlowerThanLiveFailsRelative(t *testing.T) {
	t.Parallel()
	e := startStack(t, stack.Config{
		Live: sampleapp.Config{Latency: 5 * time.Millisecond},
		Dark: sampleapp.Config{Latency: 35 * time.Millisecond},
		Services: []service.Config{
			&router.Config{
				Proxy:    proxy.Config{FlushInterval: 200 * time.Millisecond, MirrorTimeout: 250 * time.Millisecond},
				Settings: mirroring.Settings{InitTimeout: 5 * time.Second, InitInterval: 100 * time.Millisecond},
			},
			&collector.Config{Grace: 600 * time.Millisecond},
		},
	})
	// 80 req/s, 40 % mirrored: about 380 pairs in 12 s. From sums alone
	// (the only mergeable form of pairs) the bound on the ratio needs about
	// 200 pairs at a 250 ms cap to tell 6× from 1.1× (docs/statistics.md),
	// more when a busy machine makes the latencies vary.
	data := withCriteria("slower", 12, `  criteria:
    confidence: 0.95
    objectives:
    - metric: mean-latency
      upperLimit: 50
    - metric: mean-latency
      reference: live
      upperLimit: "1.10"
`)
	x, _ := e.runDoc("slower", []byte(strings.Replace(string(data), "rate: 25", "rate: 80", 1)))
	a := x.Status.Analysis
	if a == nil || len(a.Objectives) != 2 {
		t.Fatalf("analysis %+v", a)
	}
	abs, rel := a.Objectives[0], a.Objectives[1]
	if abs.Outcome != experiment.OutcomeSatisfied {
		t.Errorf("mean-latency <= 50: %s (%s), want satisfied", abs.Outcome, abs.Reason)
	}
	if rel.Outcome != experiment.OutcomeViolated || rel.Reference != experiment.ReferenceLive ||
		rel.Interval == nil || rel.Interval.Method != "fieller" || !strings.Contains(rel.Reason, "paired") {
		t.Errorf("mean-latency relative to live: %+v, want violated on the pairs (Fieller)", rel)
	}
	if a.Outcome != experiment.VerdictFail {
		t.Errorf("verdict %s, want FAIL", a.Outcome)
	}
	t.Logf("relative: %s; absolute: %s", rel.Reason, abs.Reason)
}
