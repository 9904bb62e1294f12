package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/darklaunch/darklaunch/shared/bus"
)

// tracker follows every experiment's events as they arrive (core NATS on
// the events' subjects: the moment the judge or the collector published
// them, give or take the server's delivery).
type tracker struct {
	mu         sync.Mutex
	n          int
	iterations int
	exps       map[string]*tracked // by name
	ended      int
	allDone    chan struct{}
	bad        int // events that did not decode
}

// tracked is one experiment's arrivals.
type tracked struct {
	start     time.Time           // the routing event's time: the judge's status.startTime
	snaps     map[int32]time.Time // dark snapshot (metrics) of iteration k
	final     time.Time           // the later of the last iteration's two snapshots
	iters     map[int32]time.Time // iteration event k
	verdict   time.Time
	completed bool
	failed    bool
}

func newTracker(n, iterations int) *tracker {
	return &tracker{n: n, iterations: iterations, exps: map[string]*tracked{}, allDone: make(chan struct{})}
}

func (t *tracker) onMsg(m *nats.Msg) {
	now := time.Now()
	var ev bus.Event
	if err := bus.DecodeMsg(m, &ev); err != nil {
		t.mu.Lock()
		t.bad++
		t.mu.Unlock()
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.exps[ev.Name]
	if e == nil {
		e = &tracked{snaps: map[int32]time.Time{}, iters: map[int32]time.Time{}}
		t.exps[ev.Name] = e
	}
	switch ev.Type {
	case bus.EventRouting:
		if ev.Routing != nil && ev.Routing.Ready && e.start.IsZero() {
			e.start = ev.Time
		}
	case bus.EventMetrics:
		if s := ev.Snapshot; s != nil && int(s.Iteration) == t.iterations {
			e.final = now
		}
		if s := ev.Snapshot; s != nil && s.Role == "dark" {
			if _, dup := e.snaps[s.Iteration]; !dup {
				e.snaps[s.Iteration] = now
			}
		}
	case bus.EventIteration:
		if it := ev.Iteration; it != nil {
			if _, dup := e.iters[it.Number]; !dup {
				e.iters[it.Number] = now
			}
		}
	case bus.EventVerdict:
		if e.verdict.IsZero() {
			e.verdict = now
		}
	case bus.EventCompleted, bus.EventFailed:
		if !e.completed && !e.failed {
			e.completed = ev.Type == bus.EventCompleted
			e.failed = ev.Type == bus.EventFailed
			t.ended++
			if t.ended == t.n {
				close(t.allDone)
			}
		}
	}
}

// scaleResult is one N's figures.
type scaleResult struct {
	n, complete, failed, ended int
	iterLag, snapLag, verdict  []float64 // seconds
	judged                     []float64 // the last snapshot to the verdict, seconds
	byService                  map[string]time.Duration
	missingIters               int
	submit                     time.Duration // first to last submit
	lastVerdict                time.Duration // last submit to the last verdict
	wall                       time.Duration
	cpu                        time.Duration
	idleRSS, peakRSS           int64
	badEvents                  int
	backlog                    uint64  // the judge's largest backlog
	judgeRate                  float64 // its fastest rate, events/s
}

// summarize fills r from the arrivals.
func (t *tracker) summarize(r *scaleResult, sc scaleConfig, lastSubmit time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	iv := time.Duration(sc.interval) * time.Second
	var last time.Time
	for _, e := range t.exps {
		if e.completed || e.failed {
			r.ended++
		}
		if e.failed {
			r.failed++
		}
		if e.completed && len(e.iters) == sc.iterations {
			r.complete++
		}
		r.missingIters += max(0, sc.iterations-len(e.iters))
		if e.start.IsZero() {
			continue
		}
		for k, at := range e.iters {
			r.iterLag = append(r.iterLag, at.Sub(e.start.Add(time.Duration(k)*iv)).Seconds())
		}
		for k, at := range e.snaps {
			r.snapLag = append(r.snapLag, at.Sub(e.start.Add(time.Duration(k)*iv)).Seconds())
		}
		if !e.verdict.IsZero() {
			r.verdict = append(r.verdict, e.verdict.Sub(e.start.Add(time.Duration(sc.iterations)*iv)).Seconds())
			if !e.final.IsZero() {
				r.judged = append(r.judged, e.verdict.Sub(e.final).Seconds())
			}
			if e.verdict.After(last) {
				last = e.verdict
			}
		}
	}
	r.missingIters += (t.n - len(t.exps)) * sc.iterations
	if !last.IsZero() {
		r.lastVerdict = last.Sub(lastSubmit)
	}
	r.badEvents = t.bad
}

// quantile is the q-quantile of v (nearest rank), NaN for none.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	v = slices.Clone(v)
	slices.Sort(v)
	i := int(math.Ceil(q*float64(len(v)))) - 1
	return v[min(max(i, 0), len(v)-1)]
}

func millis(x float64) string {
	if math.IsNaN(x) {
		return "—"
	}
	return fmt.Sprintf("%.0f", x*1000)
}

func secs(x float64) string {
	if math.IsNaN(x) {
		return "—"
	}
	return fmt.Sprintf("%.3f", x)
}

// reportScale writes the scale table.
func reportScale(w io.Writer, sc scaleConfig, rows []scaleResult) {
	fmt.Fprintf(w, "Scale: N overlapping experiments on the embedded stack (%s), %d iterations of %d s, %g req/s each, %g %% mirrored, load concurrency %s, submitted %d at a time through the API; %s, %s.\n\n",
		instancesName(sc.instances), sc.iterations, sc.interval, sc.rate, sc.percent, concName(sc.conc), sc.submitters, goVersion(), time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintln(w, "| N | complete (every iteration) | snapshot lag p50 / p99 / max s | iteration lag p50 / p99 / max s | verdict latency p50 / p99 s | last snapshot → verdict p50 / p99 ms | submit s | last submit → last verdict s | CPU s per experiment (cores) | peak RSS MiB (idle) | judge backlog max | judge events/s max |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		complete := fmt.Sprintf("%d / %d", r.complete, r.n)
		if r.failed > 0 || r.ended < r.n {
			complete += fmt.Sprintf(" (%d failed, %d not ended, %d iterations missing)", r.failed, r.n-r.ended, r.missingIters)
		}
		lag := func(v []float64) string {
			return fmt.Sprintf("%s / %s / %s", secs(quantile(v, 0.5)), secs(quantile(v, 0.99)), secs(quantile(v, 1)))
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s / %s | %s / %s | %.1f | %.1f | %.3f (%.2f) | %.0f (%.0f) | %d | %.0f |\n",
			r.n, complete, lag(r.snapLag), lag(r.iterLag), secs(quantile(r.verdict, 0.5)), secs(quantile(r.verdict, 0.99)),
			millis(quantile(r.judged, 0.5)), millis(quantile(r.judged, 0.99)),
			r.submit.Seconds(), r.lastVerdict.Seconds(), r.cpu.Seconds()/float64(r.n), r.cpu.Seconds()/r.wall.Seconds(),
			float64(r.peakRSS)/(1<<20), float64(r.idleRSS)/(1<<20), r.backlog, r.judgeRate)
	}
	reportByService(w, rows)
	fmt.Fprintln(w)
	fmt.Fprintln(w, strings.TrimSpace(`
- lag: arrival of experiment k's event at the benchmark's subscriber − (status.startTime + k × interval); the snapshot is the collector's dark metrics event, the iteration the judge's iteration event. The collector measures an iteration its Grace (1.5 s by default) after its end, so 1.5 s is the floor of both.
- verdict latency: the verdict event's arrival − (startTime + iterations × interval); it includes the collector's Grace. Last snapshot → verdict: the verdict's arrival − the arrival of the later of the last iteration's two snapshots (the judge's part).
- CPU: the stack processes' user + system time from the first submit to the last completed event (or the wait's end), ÷ N; in parentheses ÷ that wall time (cores busy). Peak RSS: the sum of their VmHWM; idle: of their RSS before the first submit. With -scale-profile, CPU by service: the samples of the stacks' CPU profiles by their pprof label (each service runs under service=<name>; the rest, NATS and the sample apps, is "other"), over each process's life.
- judge backlog: the largest number of events in the judge's queue not yet acked, over its partitions (sampled every second); events/s: its fastest acking rate over 5 s (one event in flight per partition).`))
}

func concName(c int) string {
	if c == 0 {
		return "loadgen's default (16)"
	}
	return fmt.Sprint(c)
}
