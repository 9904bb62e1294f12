package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared/bus"
)

// The scale scenario of issue 10 (item 7, "A thousand at once"): N
// overlapping experiments on the embedded stack (`darklaunch dev`'s
// stack.Start in a process of its own, -role stack), submitted through the
// judge's API as `darklaunch submit` does and followed on their events, as
// `darklaunch watch` does. For each N it prints how many completed with
// every iteration, the lag of the snapshots and the iterations behind
// their schedule, the verdict latency, and the stack process's CPU and
// peak RSS; with -scale-profile, the stack's CPU (and mutex and block)
// profiles.

// scaleConfig is the scale scenario's flags.
type scaleConfig struct {
	ns         []int
	nsFlag     string
	iterations int
	interval   int // seconds
	rate       float64
	percent    float64
	submitters int
	conc       int // spec.load.concurrency; 0: loadgen's default
	wait       time.Duration
	profile    string // a folder: the stack's profiles, one set per N
	contention bool   // also mutex and block profiles
	instances  int    // stack processes: each runs every service

	// The stack child's: where to write its profiles (a file name prefix),
	// and the NATS of the first stack, for the others.
	childProfile string
	stackNATS    string
}

// addScaleFlags registers the scale scenario's flags on fs.
func addScaleFlags(fs *flag.FlagSet, c *scaleConfig) {
	fs.StringVar(&c.nsFlag, "scale-n", "1,100", "-only scale: the numbers of overlapping experiments, comma-separated (a fresh stack for each)")
	fs.IntVar(&c.iterations, "scale-iterations", 90, "-only scale: iterations of each experiment")
	fs.IntVar(&c.interval, "scale-interval", 1, "-only scale: intervalSeconds of each experiment")
	fs.Float64Var(&c.rate, "scale-rate", 2, "-only scale: spec.load.rate of each experiment, requests per second")
	fs.Float64Var(&c.percent, "scale-percent", 40, "-only scale: spec.mirroring.percent of each experiment")
	fs.IntVar(&c.conc, "scale-concurrency", 0, "-only scale: spec.load.concurrency of each experiment (0: loadgen's default, 16 connections each; the stack process holds both ends of each, so 1,000 experiments at 16 need over 32,000 open files)")
	fs.IntVar(&c.submitters, "scale-submitters", 8, "-only scale: API requests in flight while submitting")
	fs.DurationVar(&c.wait, "scale-wait", 0, "-only scale: how long to wait for the verdicts after the last submit (0: twice an experiment's duration + 60s)")
	fs.StringVar(&c.profile, "scale-profile", "", "-only scale: write the stack process's CPU profile (and its heap at the end) for each N into this folder (scale-<N>.cpu.pprof, .heap.pprof)")
	fs.BoolVar(&c.contention, "scale-contention", false, "-only scale, with -scale-profile: also the mutex and block profiles (scale-<N>.mutex.pprof, .block.pprof)")
	fs.IntVar(&c.instances, "scale-instances", 1, "-only scale: instances of every service: stack processes on one NATS (the first's embedded server), each with its own router (proxy), loadgen, collector and judge")
	fs.StringVar(&c.childProfile, "profile-prefix", "", "internal: the stack process's profiles")
	fs.StringVar(&c.stackNATS, "stack-nats", "", "internal: the NATS of the first stack process, for the others")
}

// check parses -scale-n and checks the scale flags.
func (c *scaleConfig) check() error {
	var errs []error
	c.ns = nil
	for f := range strings.SplitSeq(c.nsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 5000 {
			errs = append(errs, fmt.Errorf("-scale-n: %q is not a number of experiments in [1, 5000]", f))
			continue
		}
		c.ns = append(c.ns, n)
	}
	if c.iterations < 1 || c.iterations > 1000 {
		errs = append(errs, fmt.Errorf("-scale-iterations: %d is not in [1, 1000]", c.iterations))
	}
	if c.interval < 1 || c.interval > 60 {
		errs = append(errs, fmt.Errorf("-scale-interval: %d is not in [1, 60] seconds", c.interval))
	}
	if c.rate < 0 || c.rate > 1000 {
		errs = append(errs, fmt.Errorf("-scale-rate: %g is not in [0, 1000]", c.rate))
	}
	if c.percent <= 0 || c.percent > 100 {
		errs = append(errs, fmt.Errorf("-scale-percent: %g is not in (0, 100]", c.percent))
	}
	if c.conc < 0 || c.conc > 64 {
		errs = append(errs, fmt.Errorf("-scale-concurrency: %d is not in [0, 64]", c.conc))
	}
	if c.submitters < 1 || c.submitters > 256 {
		errs = append(errs, fmt.Errorf("-scale-submitters: %d is not in [1, 256]", c.submitters))
	}
	if c.instances < 1 || c.instances > 3 {
		errs = append(errs, fmt.Errorf("-scale-instances: %d is not in [1, 3]", c.instances))
	}
	if c.wait < 0 {
		errs = append(errs, fmt.Errorf("-scale-wait: %s is negative", c.wait))
	}
	return errors.Join(errs...)
}

// duration is one experiment's scheduled length.
func (c *scaleConfig) duration() time.Duration {
	return time.Duration(c.iterations*c.interval) * time.Second
}

// stackAddrs is what the stack child prints.
type stackAddrs struct{ NATS string }

// runScale is -only scale: one fresh stack per N, one table row each.
func runScale(ctx context.Context, c config, stdout, stderr io.Writer) error {
	sc := c.scale
	if sc.profile != "" {
		if err := os.MkdirAll(sc.profile, 0o755); err != nil {
			return err
		}
	}
	var rows []scaleResult
	for _, n := range sc.ns {
		fmt.Fprintf(stderr, "scale: %d experiments, %d × %ds, %g req/s each\n", n, sc.iterations, sc.interval, sc.rate)
		r, err := scaleRun(ctx, sc, n, stderr)
		if err != nil {
			return fmt.Errorf("%d experiments: %w", n, err)
		}
		rows = append(rows, r)
		fmt.Fprintf(stderr, "  %d of %d completed with every iteration; last verdict %.1fs after the last submit\n", r.complete, n, r.lastVerdict.Seconds())
	}
	var sb strings.Builder
	reportScale(&sb, sc, rows)
	fmt.Fprint(stdout, sb.String())
	if c.out != "" {
		return os.WriteFile(c.out, []byte(sb.String()), 0o644)
	}
	return nil
}

// scaleRun runs n experiments on a fresh stack and measures them.
func scaleRun(ctx context.Context, sc scaleConfig, n int, stderr io.Writer) (scaleResult, error) {
	var res scaleResult
	res.n = n
	stacks, sa, err := startStacks(ctx, sc, n, stderr)
	defer stacks.stop()
	if err != nil {
		return res, err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	nc, err := bus.Connect(bus.ConnConfig{URL: sa.NATS, Name: "bench-scale"}, log)
	if err != nil {
		return res, err
	}
	defer nc.Close()

	tr := newTracker(n, sc.iterations)
	sub, err := nc.Subscribe(bus.EventSubject("*", "*", "*"), tr.onMsg)
	if err != nil {
		return res, err
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return res, err
	}
	if err := nc.Flush(); err != nil {
		return res, err
	}

	res.idleRSS = stacks.rss()
	cpu0, err := stacks.cpu()
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	bl := sampleBacklog(nc)
	client := &bus.Client{NC: nc}
	lastSubmit, err := submitAll(ctx, client, sc, n)
	if err != nil {
		return res, err
	}
	res.submit = lastSubmit.Sub(t0)
	wait := sc.wait
	if wait == 0 {
		wait = 2*sc.duration() + 60*time.Second
	}
	select {
	case <-tr.allDone:
	case <-time.After(time.Until(lastSubmit.Add(wait))):
		fmt.Fprintf(stderr, "  gave up waiting %s after the last submit\n", wait)
	case <-ctx.Done():
		return res, ctx.Err()
	}
	cpu1, err := stacks.cpu()
	if err != nil {
		return res, err
	}
	res.cpu = cpu1 - cpu0
	res.backlog, res.judgeRate = bl.end()
	res.wall = time.Since(t0)
	res.peakRSS = stacks.hwm()
	tr.summarize(&res, sc, lastSubmit)
	stacks.stop() // the profiles are written as the stacks end
	res.byService = stacks.cpuByService(stderr)
	return res, nil
}

// submitAll creates experiments scale-0000 … through the API, sc.submitters
// requests in flight, each mirroring its own host (one experiment per host),
// and returns when the last create was answered.
func submitAll(ctx context.Context, c *bus.Client, sc scaleConfig, n int) (time.Time, error) {
	idx := make(chan int)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for range min(sc.submitters, n) {
		wg.Go(func() {
			for i := range idx {
				doc := scaleDocument(sc, i)
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := c.Create(cctx, []byte(doc))
				cancel()
				if err != nil {
					mu.Lock()
					first = cmpErr(first, fmt.Errorf("create %s: %w", scaleName(i), err))
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		idx <- i
	}
	close(idx)
	wg.Wait()
	return time.Now(), first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func scaleName(i int) string { return fmt.Sprintf("scale-%04d", i) }

// scaleDocument is experiment i: the local example's conformance
// experiment, with the scenario's duration and load, traffic from the start.
func scaleDocument(sc scaleConfig, i int) string {
	conc := ""
	if sc.conc > 0 {
		conc = fmt.Sprintf("    concurrency: %d\n", sc.conc)
	}
	return fmt.Sprintf(`apiVersion: iter8.tools/v2alpha1
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
    - metric: error-rate
      upperLimit: "0.01"
  duration:
    intervalSeconds: %d
    iterationsPerLoop: %d
  versionInfo:
    baseline:
      name: current
  mirroring:
    host: %s.bench.local
    percent: %g
  load:
    rate: %g
    delay: 0s
`, scaleName(i), sc.interval, sc.iterations, scaleName(i), sc.percent, sc.rate) + conc
}

// hwm is pid's VmHWM (peak resident set) in bytes.
func hwm(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM")
}

// backlogSampler reads the judge's consumer every second: the largest
// backlog (events stored, not yet acked) and the fastest handling rate over
// 5 s (events acked per second: what one event in flight at a time allows).
type backlogSampler struct {
	stop, done chan struct{}
	max        uint64
	rate       float64
}

func sampleBacklog(nc *nats.Conn) *backlogSampler {
	b := &backlogSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		type point struct {
			at    time.Time
			acked uint64
		}
		var pts []point
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			var pending, acked uint64
			ok := true
			for p := range bus.JudgePartitions {
				c, err := js.Consumer(ctx, bus.StreamJudge, bus.JudgeConsumer(p))
				if err != nil {
					ok = false
					break
				}
				info, err := c.Info(ctx)
				if err != nil {
					ok = false
					break
				}
				pending += info.NumPending + uint64(info.NumAckPending)
				acked += info.AckFloor.Consumer
			}
			if ok {
				b.max = max(b.max, pending)
				now := point{time.Now(), acked}
				pts = append(pts, now)
				for len(pts) > 1 && now.at.Sub(pts[0].at) > 5*time.Second {
					pts = pts[1:]
				}
				if d := now.at.Sub(pts[0].at).Seconds(); d >= 4 {
					b.rate = max(b.rate, float64(now.acked-pts[0].acked)/d)
				}
			}
			cancel()
			select {
			case <-b.stop:
				return
			case <-t.C:
			}
		}
	}()
	return b
}

// end stops sampling: the largest backlog, the fastest rate.
func (b *backlogSampler) end() (uint64, float64) {
	close(b.stop)
	<-b.done
	return b.max, b.rate
}
