package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/darklaunch/darklaunch/services/loadgen"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// The loadgen scenario of issue 9: fortio's maximum rate against the live
// backend (`fortio load -qps 0 -c 50`), then darklaunch's loadgen, as
// `darklaunch serve loadgen` runs it (its own process, -role loadgen, taking
// the experiment from the state bucket and reporting load events), at
// fractions of that rate with the same concurrency against the same
// backend, and fortio at the same fixed rates (-uniform) beside it.

// lgConcurrency is the connections of both generators.
const lgConcurrency = 50

// lgFractions are the loadgen's targets, as fractions of fortio's maximum
// measured in the same round; the last one, above it (up to
// experiment.MaxLoadRate), shows the loadgen's own maximum: what it achieves
// when it cannot keep up.
var lgFractions = []float64{0.9, 0.5, 1.5}

// lgRow is one row of the loadgen table, one figure per round.
type lgRow struct {
	name                   string
	target, achieved       []float64 // req/s; target 0 for fortio's maximum
	received               []float64 // requests the backend counted ÷ requests sent (loadgen rows)
	p50, p99, cpu, reports []float64 // ms, ms, µs of CPU per request; reports: the loadgen's own CPU figure
	errors                 int64
	loadgen                bool
}

// runLoadgenOnly is -only loadgen: the backends and the loadgen scenario,
// with fortio the only peer.
func runLoadgenOnly(ctx context.Context, c config, stdout, stderr io.Writer) error {
	fortio := lookPath("fortio", filepath.Join(goEnv("GOPATH"), "bin", "fortio"))
	if fortio == "" && c.install {
		fmt.Fprintf(stderr, "installing fortio: go install %s\n", fortioModule)
		if err := runLogged(ctx, stderr, nil, "go", "install", fortioModule); err != nil {
			return fmt.Errorf("go install %s: %w", fortioModule, err)
		}
		fortio = lookPath("fortio", filepath.Join(goEnv("GOPATH"), "bin", "fortio"))
	}
	if fortio == "" {
		return fmt.Errorf("not found: fortio (go install %s)", fortioModule)
	}
	dir, err := os.MkdirTemp("", "darklaunch-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var ba backendAddrs
	backends, err := startChild(ctx, stderr, &ba, "backends")
	if err != nil {
		return err
	}
	defer backends.stop()
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s; fortio %s.\n", goVersion(), field(toolVersion(fortio, "version"), 0))
	if err := benchLoadgen(ctx, c, fortio, dir, ba, &sb, stderr); err != nil {
		return err
	}
	fmt.Fprint(stdout, sb.String())
	if c.out != "" {
		return os.WriteFile(c.out, []byte(sb.String()), 0o644)
	}
	return nil
}

// runLoadgenRole is -role loadgen: darklaunch's loadgen service on natsURL,
// with its defaults, printing {} once it watches the experiments.
func runLoadgenRole(ctx context.Context, stdout, stderr io.Writer, natsURL string) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	nc, err := bus.Connect(bus.ConnConfig{URL: natsURL, Name: "bench-loadgen"}, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	s, err := loadgen.New(loadgen.Config{Delay: -1}, nc, log)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for deadline := time.Now().Add(30 * time.Second); s.Ready() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("loadgen not ready after 30s: %w", s.Ready())
		}
	}
	if _, err := io.WriteString(stdout, "{}\n"); err != nil {
		return err
	}
	return <-done
}

// benchLoadgen runs the loadgen scenario against the backends at ba and
// writes its table into w.
func benchLoadgen(ctx context.Context, c config, fortio, dir string, ba backendAddrs, w io.Writer, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	nc, err := bus.Connect(bus.ConnConfig{URL: ba.NATS, Name: "bench-driver"}, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	infra, err := bus.EnsureInfra(sctx, nc, bus.StreamLimits{})
	cancel()
	if err != nil {
		return err
	}
	lg, err := startChild(ctx, stderr, &struct{}{}, "loadgen", "-nats", ba.NATS)
	if err != nil {
		return err
	}
	defer lg.stop()
	ctl := control{base: "http://" + ba.Control, client: &http.Client{Timeout: 10 * time.Second}}
	live := "http://" + ba.Live + "/"

	fmt.Fprintf(stderr, "loadgen scenario: warm-up (fortio -qps 0, %s)\n", c.warmup)
	if _, err := runFortioLoad(ctx, fortio, dir, live, c.host, 0, c.warmup); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	rows := []*lgRow{{name: fmt.Sprintf("fortio `-qps 0 -c %d` (its maximum)", lgConcurrency)}}
	for _, f := range lgFractions {
		if f <= 1 {
			rows = append(rows, &lgRow{name: fmt.Sprintf("fortio `-uniform -c %d` at %g× its maximum", lgConcurrency, f)})
		}
		rows = append(rows, &lgRow{name: fmt.Sprintf("darklaunch loadgen, concurrency %d, at %g× fortio's maximum", lgConcurrency, f), loadgen: true})
	}
	for round := range c.runs {
		fmt.Fprintf(stderr, "loadgen scenario, run %d/%d: fortio -qps 0\n", round+1, c.runs)
		top, err := runFortioLoad(ctx, fortio, dir, live, c.host, 0, c.duration)
		if err != nil {
			return err
		}
		rows[0].add(0, top)
		fmt.Fprintf(stderr, "  fortio's maximum: %.0f req/s, %.1f µs CPU per request\n", top.achieved, top.cpu)
		i := 1
		for _, f := range lgFractions {
			rate := math.Min(math.Round(f*top.achieved), experiment.MaxLoadRate)
			if f <= 1 {
				fmt.Fprintf(stderr, "loadgen scenario, run %d/%d: fortio -uniform -qps %.0f\n", round+1, c.runs, rate)
				r, err := runFortioLoad(ctx, fortio, dir, live, c.host, rate, c.duration)
				if err != nil {
					return err
				}
				rows[i].add(rate, r)
				i++
				fmt.Fprintf(stderr, "  fortio: %.0f req/s of %.0f, p99 %.2f ms, %.1f µs CPU per request\n", r.achieved, rate, r.p99, r.cpu)
			}
			fmt.Fprintf(stderr, "loadgen scenario, run %d/%d: loadgen at %.0f req/s\n", round+1, c.runs, rate)
			r, err := runLoadgen(ctx, infra, ctl, lg.cmd.Process.Pid, live, c.host, rate, c.duration)
			if err != nil {
				return err
			}
			rows[i].add(rate, r)
			i++
			fmt.Fprintf(stderr, "  loadgen: %.0f req/s of %.0f, p99 %.2f ms, %.1f µs CPU per request\n", r.achieved, rate, r.p99, r.cpu)
		}
	}
	reportLoadgen(w, c, rows)
	return nil
}

// lgResult is one run of one generator.
type lgResult struct {
	achieved, received, p50, p99, cpu, report float64
	errors                                    int64
}

func (r *lgRow) add(target float64, x lgResult) {
	r.target = append(r.target, target)
	r.achieved = append(r.achieved, x.achieved)
	r.received = append(r.received, x.received)
	r.p50 = append(r.p50, x.p50)
	r.p99 = append(r.p99, x.p99)
	r.cpu = append(r.cpu, x.cpu)
	r.reports = append(r.reports, x.report)
	r.errors += x.errors
}

// runFortioLoad is `fortio load -qps qps -c 50` (qps 0: as fast as it
// goes; otherwise -uniform) against target for d, with the CPU fortio's
// process used per call.
func runFortioLoad(ctx context.Context, path, dir, target, host string, qps float64, d time.Duration) (lgResult, error) {
	out := filepath.Join(dir, "fortio-lg.json")
	args := []string{"load", "-quiet", "-qps", strconv.FormatFloat(qps, 'f', 0, 64), "-c", strconv.Itoa(lgConcurrency),
		"-t", seconds(d), "-p", "50,99", "-timeout", "5s", "-H", "Host: " + host, "-json", out, target}
	if qps > 0 {
		args = append(args[:1], append([]string{"-uniform"}, args[1:]...)...)
	}
	var r lgResult
	cmd := exec.CommandContext(ctx, path, args...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return r, fmt.Errorf("fortio %s: %w\n%s", strings.Join(args, " "), err, msg)
	}
	f, err := readFortio(out)
	if err != nil {
		return r, err
	}
	r.achieved, r.p50, r.p99, r.errors = f.qps, f.p50, f.p99, f.errors
	if f.calls > 0 {
		st := cmd.ProcessState
		r.cpu = float64(st.UserTime()+st.SystemTime()) / float64(time.Microsecond) / float64(f.calls)
	}
	return r, nil
}

// runLoadgen runs one experiment's traffic: rate for d against target, from
// the loadgen process pid, and reads its final load event.
func runLoadgen(ctx context.Context, infra *bus.Infra, ctl control, pid int, target, host string, rate float64, d time.Duration) (lgResult, error) {
	var r lgResult
	iters := int32(math.Ceil(d.Seconds())) + 2
	start := time.Now()
	exp := &experiment.Experiment{
		APIVersion: experiment.APIVersionV2Alpha1,
		Kind:       experiment.Kind,
		Metadata:   experiment.Metadata{Name: fmt.Sprintf("bench-lg-%d", start.UnixNano()), Namespace: "default", UID: nuid.Next()},
		Spec: experiment.Spec{
			Target:   "default/bench",
			Strategy: experiment.Strategy{TestingPattern: "Conformance"},
			Criteria: &experiment.Criteria{Objectives: []experiment.Objective{{Metric: experiment.MetricErrorRate, UpperLimit: experiment.NewLimit("0.01")}}},
			Duration: &experiment.Duration{IntervalSeconds: ptr(int32(1)), IterationsPerLoop: &iters},
			Load: &experiment.Load{URL: target, Host: host, Rate: &rate, Concurrency: ptr(int32(lgConcurrency)),
				Delay: experiment.Sec(0), Duration: experiment.Sec(d), Timeout: experiment.Sec(5 * time.Second)},
		},
		Status: experiment.Status{Stage: experiment.StageRunning, StartTime: &start},
	}
	exp.Default()
	if errs := exp.Validate(); len(errs) > 0 {
		return r, fmt.Errorf("the experiment a user would submit is refused: %w", errs.ToAggregate())
	}
	wctx, cancel := context.WithTimeout(ctx, d+60*time.Second)
	defer cancel()
	cons, err := infra.Events.OrderedConsumer(wctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.EventSubject(exp.Metadata.Namespace, exp.Metadata.Name, bus.EventLoad)},
	})
	if err != nil {
		return r, err
	}
	if err := ctl.reset(); err != nil {
		return r, err
	}
	cpu0, err := procCPU(pid)
	if err != nil {
		return r, err
	}
	if _, err := infra.Store.Create(wctx, exp); err != nil {
		return r, err
	}
	defer func() {
		_ = infra.Store.Delete(context.WithoutCancel(ctx), exp.Metadata.Namespace, exp.Metadata.Name, 0)
	}()
	var final *bus.LoadProgress
	for final == nil {
		m, err := cons.Next(jetstream.FetchContext(wctx))
		if err != nil {
			return r, fmt.Errorf("waiting for the loadgen's final load event: %w", err)
		}
		var ev bus.Event
		if err := bus.Unmarshal(m.Headers().Get(bus.HeaderContentType), m.Data(), &ev); err != nil {
			return r, err
		}
		if ev.Load != nil && ev.Load.Done && ev.UID == exp.Metadata.UID {
			final = ev.Load
		}
	}
	cpu1, err := procCPU(pid)
	if err != nil {
		return r, err
	}
	n, err := ctl.count()
	if err != nil {
		return r, err
	}
	r = lgResult{achieved: final.AchievedRate, p50: final.P50Ms, p99: final.P99Ms,
		report: final.CPUPerRequestUs, errors: final.Failed}
	if final.Sent > 0 {
		r.received = float64(n.Live) / float64(final.Sent)
		r.cpu = float64(cpu1-cpu0) / float64(time.Microsecond) / float64(final.Sent)
	}
	return r, nil
}

// procCPU is the CPU time (user and system) process pid has used, from
// /proc/pid/stat (in clock ticks of 1/100 s, Linux's USER_HZ).
func procCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ")".
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return 0, errors.New("/proc/pid/stat: no command name")
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("/proc/pid/stat: too few fields")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14 of the whole line
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/pid/stat: %w", err)
	}
	return time.Duration(utime+stime) * (time.Second / 100), nil
}

// reportLoadgen writes the loadgen table.
func reportLoadgen(w io.Writer, c config, rows []*lgRow) {
	fmt.Fprintf(w, "\n## loadgen beside fortio (%s, %s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), machine())
	fmt.Fprintf(w, "Medians of %d runs of %s each (min–max); against the live backend directly (Go net/http on 127.0.0.1), Host `%s`, %d connections each; "+
		"every target is a fraction of fortio's maximum in the same run; darklaunch's loadgen in its own process (loadgen.New + Run, the experiment from the state bucket, the figures from its final load event).\n\n",
		c.runs, c.duration, c.host, lgConcurrency)
	fmt.Fprintln(w, "| generator | target req/s | achieved req/s | \\|achieved − target\\| ÷ target | received by the backend ÷ sent | p50 ms | p99 ms | CPU µs per request | loadgen's own CPU figure µs | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		target, off, received, own := "—", "—", "—", "—"
		if r.target[0] > 0 {
			target = statOfValues(r.target).format(thousands, "")
			gap := make([]float64, len(r.target))
			for i := range gap {
				gap[i] = math.Abs(r.achieved[i]-r.target[i]) / r.target[i]
			}
			off = statOfValues(gap).format(func(x float64) string { return fmt.Sprintf("%.2f", 100*x) }, " %")
		}
		if r.loadgen {
			received = statOfValues(r.received).format(pct, " %")
			own = statOfValues(r.reports).format(us, "")
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", r.name, target,
			statOfValues(r.achieved).format(thousands, ""), off, received,
			statOfValues(r.p50).format(ms, ""), statOfValues(r.p99).format(ms, ""), statOfValues(r.cpu).format(us, ""), own, r.errors)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "- Latency: the loadgen's from each request's due time (no coordinated omission: a request sent late counts its lateness); fortio's from when it sent each request.")
	fmt.Fprintln(w, "- CPU µs per request: the generator's process CPU time (user + system) over the run ÷ the requests it sent (fortio: its rusage; loadgen: /proc/pid/stat). \"loadgen's own CPU figure\" is what it reports in its load events (getrusage since the traffic started).")
	fmt.Fprintf(w, "- The loadgen row above fortio's maximum shows the loadgen's own maximum here: what it achieves when it cannot keep up. spec.load.rate is accepted up to %d req/s.\n", experiment.MaxLoadRate)
}

func us(x float64) string { return fmt.Sprintf("%.1f", x) }

func ptr[T any](v T) *T { return &v }
