// Command bench is the side-by-side benchmark of issue 9: darklaunch's
// mirroring proxy against nginx (mirror + split_clients, the configuration in
// nginx-mirror.conf) and against the live backend called directly, measured
// with wrk (closed loop) and fortio (fixed rate), every process on 127.0.0.1.
//
//	go run ./test/bench            (or: go tool task bench:peers)
//	go run ./test/bench -duration 5s -runs 3
//
// It finds nginx, wrk and fortio, installing what is missing (apt-get as
// root, go install), and prints a Markdown table of medians of -runs runs
// with their spread and the ratios darklaunch ÷ nginx. It is no test: the
// gating `go test ./...` does not run it (the machine's noise would make any
// threshold flaky). See README.md next to this file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is the benchmark's flags.
type config struct {
	duration  time.Duration
	warmup    time.Duration
	runs      int
	qps       int
	percent   float64
	darkDelay time.Duration
	hung      bool
	install   bool
	out       string
	host      string
	inflight  int
	only      string
	scale     scaleConfig

	// The children's flags (-role backends|proxy).
	role, natsURL, live, dark string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "length of one run of one load generator")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "closed-loop warm-up of each target before the first run")
	fs.IntVar(&c.runs, "runs", 3, "runs of each scenario (the table shows their median and spread)")
	fs.IntVar(&c.qps, "qps", 2000, "fortio's fixed rate, requests per second")
	fs.Float64Var(&c.percent, "percent", 40, "share of requests mirrored to dark, in percent (nginx and darklaunch)")
	fs.DurationVar(&c.darkDelay, "dark-delay", 200*time.Millisecond, "added latency of the slow dark version")
	fs.BoolVar(&c.hung, "hung", true, "also run darklaunch with a dark version that never answers")
	fs.BoolVar(&c.install, "install", true, "install nginx and wrk (apt-get, as root) and fortio (go install) if missing")
	fs.StringVar(&c.out, "out", "", "also write the table into this file")
	fs.StringVar(&c.host, "host", "customdomain.com", "Host of the requests (the experiment's host)")
	fs.IntVar(&c.inflight, "mirror-inflight", 0, "the proxy's MirrorInflight (0: its default)")
	fs.StringVar(&c.only, "only", "", "run only these scenarios: peers (the proxy beside nginx, with wrk and fortio, and the memory of its copies), memory (only the latter) or loadgen (darklaunch's loadgen beside fortio), or scale (N overlapping experiments on the embedded stack, never with the others); empty: all but scale")
	addScaleFlags(fs, &c.scale)
	fs.StringVar(&c.role, "role", "", "internal: run as the benchmark's backends, proxy or loadgen process")
	fs.StringVar(&c.natsURL, "nats", "", "internal: the proxy process's NATS")
	fs.StringVar(&c.live, "live", "", "internal: the proxy process's live URL")
	fs.StringVar(&c.dark, "dark", "", "internal: the proxy process's dark URL")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	if c.duration < time.Second {
		errs = append(errs, fmt.Errorf("-duration: %s is shorter than 1s", c.duration))
	}
	if c.runs < 1 {
		errs = append(errs, fmt.Errorf("-runs: %d is not at least 1", c.runs))
	}
	if c.qps < 1 {
		errs = append(errs, fmt.Errorf("-qps: %d is not at least 1", c.qps))
	}
	if c.percent <= 0 || c.percent > 100 {
		errs = append(errs, fmt.Errorf("-percent: %g is not in (0, 100]", c.percent))
	}
	if c.inflight < 0 {
		errs = append(errs, fmt.Errorf("-mirror-inflight: %d is negative", c.inflight))
	}
	if c.only != "" && c.only != "peers" && c.only != "memory" && c.only != "loadgen" && c.only != "scale" {
		errs = append(errs, fmt.Errorf("-only: %q is not peers, memory, loadgen or scale", c.only))
	}
	if c.only == "scale" || c.role == "stack" {
		errs = append(errs, c.scale.check())
	}
	if c.darkDelay < 0 {
		errs = append(errs, fmt.Errorf("-dark-delay: %s is negative", c.darkDelay))
	}
	return c, errors.Join(errs...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	switch c.role {
	case "":
	case "backends":
		ctx, cancel := untilStdinCloses(ctx)
		defer cancel()
		return runBackends(ctx, stdout)
	case "proxy":
		ctx, cancel := untilStdinCloses(ctx)
		defer cancel()
		return runProxy(ctx, stdout, stderr, c.natsURL, c.live, c.dark, c.host, c.percent, c.inflight)
	case "loadgen":
		ctx, cancel := untilStdinCloses(ctx)
		defer cancel()
		return runLoadgenRole(ctx, stdout, stderr, c.natsURL)
	case "stack":
		ctx, cancel := untilStdinCloses(ctx)
		defer cancel()
		return runStackRole(ctx, stdout, stderr, c.scale)
	default:
		return fmt.Errorf("-role: %q is not backends, proxy, loadgen or stack", c.role)
	}
	if c.only == "scale" {
		return runScale(ctx, c, stdout, stderr)
	}
	if c.only == "loadgen" {
		return runLoadgenOnly(ctx, c, stdout, stderr)
	}

	t, err := findTools(ctx, c.install, stderr)
	if err != nil {
		return err
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
	var pa proxyAddrs
	proxyArgs := []string{"-nats", ba.NATS, "-live", "http://" + ba.Live,
		"-dark", "http://" + ba.Dark, "-host", c.host, "-percent", fmt.Sprint(c.percent), "-mirror-inflight", fmt.Sprint(c.inflight)}
	px, err := startChild(ctx, stderr, &pa, "proxy", proxyArgs...)
	if err != nil {
		return err
	}
	defer px.stop()
	ngx, ports, err := startNginx(ctx, t.nginx, dir, ba.Live, ba.Dark, c.percent, stderr)
	if err != nil {
		return err
	}
	defer ngx.stop()

	b := &bench{
		cfg: c, tools: t, dir: dir, log: stderr,
		ctl: control{base: "http://" + ba.Control, client: &http.Client{Timeout: 10 * time.Second}},
		targets: map[string]target{
			"direct":      {url: "http://" + ba.Live + "/"},
			"nginx-plain": {url: fmt.Sprintf("http://127.0.0.1:%d/", ports.plain), pids: func() []int { return withChildren(ngx.cmd.Process.Pid) }},
			"nginx":       {url: fmt.Sprintf("http://127.0.0.1:%d/", ports.mirror), mirrors: true, pids: func() []int { return withChildren(ngx.cmd.Process.Pid) }},
			"darklaunch":  {url: pa.URL + "/", mirrors: true, pids: func() []int { return []int{px.cmd.Process.Pid} }},
		},
	}
	b.idleRSS, _ = rss(px.cmd.Process.Pid)
	var results [][]result
	if c.only != "memory" {
		if results, err = b.runAll(ctx); err != nil {
			return err
		}
	}
	px.stop() // the memory runs start proxies of their own
	mem, err := b.measureMemory(ctx, proxyArgs, stderr)
	if err != nil {
		return err
	}
	var sb strings.Builder
	if results != nil {
		b.report(&sb, results)
	}
	b.reportMemory(&sb, mem)
	if c.only == "" {
		if err := benchLoadgen(ctx, c, t.fortio, dir, ba, &sb, stderr); err != nil {
			return err
		}
	}
	fmt.Fprint(stdout, sb.String())
	if c.out != "" {
		return os.WriteFile(c.out, []byte(sb.String()), 0o644)
	}
	return nil
}

// target is one thing the load generators call.
type target struct {
	url     string
	mirrors bool         // copies to dark: its share is measured
	pids    func() []int // whose RSS is measured (nil: none)
}

// scenario is one row of the table.
type scenario struct {
	name   string
	target string
	dark   string // modeOK, modeSlow or modeHung
	peer   int    // index of the nginx row a darklaunch row is compared with; -1 none
	base   int    // index of the healthy-dark run of the same proxy; -1 none
}

func (b *bench) scenarios() []scenario {
	slow := fmt.Sprintf("dark +%s", b.cfg.darkDelay)
	pct := fmt.Sprintf("%g %%", b.cfg.percent)
	s := []scenario{
		{"live backend direct (the limit)", "direct", modeOK, -1, -1},
		{"nginx, no mirror", "nginx-plain", modeOK, -1, -1},
		{"nginx, `mirror` + `split_clients` " + pct, "nginx", modeOK, -1, -1},
		{"darklaunch proxy, " + pct, "darklaunch", modeOK, 2, -1},
		{"nginx, " + slow, "nginx", modeSlow, -1, 2},
		{"darklaunch, " + slow, "darklaunch", modeSlow, 4, 3},
	}
	if b.cfg.hung {
		s = append(s, scenario{"darklaunch, dark hung", "darklaunch", modeHung, -1, 3})
	}
	return s
}

// bench is one benchmark's processes and settings.
type bench struct {
	cfg     config
	tools   tools
	dir     string
	log     io.Writer
	ctl     control
	targets map[string]target
	idleRSS int64
}

// result is one run of one scenario: both load generators, one after the
// other, each with the share of its requests dark received and the peak
// RSS of the proxy meanwhile.
type result struct {
	wrk         wrkResult
	wrkShare    float64
	wrkRSS      int64
	fortio      fortioResult
	fortioShare float64
	fortioRSS   int64
}

// runAll warms every target up, then runs every scenario once per round,
// round after round, so that a slow minute of the machine spreads over
// all rows instead of spoiling one.
func (b *bench) runAll(ctx context.Context) ([][]result, error) {
	sc := b.scenarios()
	if err := b.ctl.setDark(modeOK, b.cfg.darkDelay); err != nil {
		return nil, err
	}
	for _, name := range []string{"direct", "nginx-plain", "nginx", "darklaunch"} {
		fmt.Fprintf(b.log, "warm-up %s (%s)\n", name, b.cfg.warmup)
		if _, out, err := runWrk(ctx, b.tools.wrk, b.targets[name].url, b.cfg.host, b.cfg.warmup); err != nil {
			return nil, fmt.Errorf("warm-up %s: %w\n%s", name, err, out)
		}
	}
	res := make([][]result, len(sc))
	for round := range b.cfg.runs {
		for i, s := range sc {
			fmt.Fprintf(b.log, "run %d/%d: %s\n", round+1, b.cfg.runs, s.name)
			r, err := b.runOne(ctx, s)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			res[i] = append(res[i], r)
		}
	}
	return res, b.ctl.setDark(modeOK, b.cfg.darkDelay)
}

func (b *bench) runOne(ctx context.Context, s scenario) (result, error) {
	var r result
	tg := b.targets[s.target]
	// measure runs one load generator with the dark mode set (hung requests
	// of an earlier run released) and the counters reset before, and read
	// once the copies have arrived.
	measure := func(load func() error) (share float64, peak int64, err error) {
		if err := b.ctl.setDark(s.dark, b.cfg.darkDelay); err != nil {
			return 0, 0, err
		}
		if err := b.ctl.reset(); err != nil {
			return 0, 0, err
		}
		var rs *rssSampler
		if tg.pids != nil {
			rs = sampleRSS(tg.pids)
		}
		err = load()
		if rs != nil {
			peak = rs.end()
		}
		if err != nil {
			return 0, 0, err
		}
		n, err := b.ctl.settled(ctx)
		if err != nil {
			return 0, 0, err
		}
		if tg.mirrors && n.Live > 0 {
			share = float64(n.Dark) / float64(n.Live)
		}
		return share, peak, nil
	}
	var err error
	r.wrkShare, r.wrkRSS, err = measure(func() error {
		var e error
		r.wrk, _, e = runWrk(ctx, b.tools.wrk, tg.url, b.cfg.host, b.cfg.duration)
		return e
	})
	if err != nil {
		return r, err
	}
	r.fortioShare, r.fortioRSS, err = measure(func() error {
		var e error
		r.fortio, e = runFortio(ctx, b.tools.fortio, b.dir, tg.url, b.cfg.host, b.cfg.qps, b.cfg.duration)
		return e
	})
	return r, err
}
