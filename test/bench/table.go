package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// stat is the median and spread of one figure over the runs.
type stat struct{ med, lo, hi float64 }

func statOf(rs []result, f func(result) float64) stat {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return statOfValues(v)
}

// statOfValues is the median and spread of v.
func statOfValues(v []float64) stat {
	v = slices.Clone(v)
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return stat{med: med, lo: v[0], hi: v[n-1]}
}

// format writes s with verb (a fmt verb for one number) and its spread.
func (s stat) format(num func(float64) string, unit string) string {
	return fmt.Sprintf("%s%s (%s–%s)", num(s.med), unit, num(s.lo), num(s.hi))
}

func thousands(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func ms(x float64) string  { return fmt.Sprintf("%.2f", x) }
func pct(x float64) string { return fmt.Sprintf("%.1f", 100*x) }
func mib(x float64) string { return fmt.Sprintf("%.0f", x/(1<<20)) }

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("**%.2f×**", a/b)
}

// report writes the Markdown table and the figures derived from it.
func (b *bench) report(w io.Writer, res [][]result) {
	sc := b.scenarios()
	c := b.cfg
	rps := func(r result) float64 { return r.wrk.rps }
	p50 := func(r result) float64 { return r.fortio.p50 }
	p99 := func(r result) float64 { return r.fortio.p99 }
	fmt.Fprintf(w, "## Side by side (%s, %s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), machine())
	fmt.Fprintf(w, "%s; %s; %s; fortio %s; %s.\n", goVersion(), toolVersion(b.tools.nginx, "-v"),
		"wrk "+field(toolVersion(b.tools.wrk, "-v"), 1),
		field(toolVersion(b.tools.fortio, "version"), 0), "darklaunch's proxy in-process in a child process (proxy.New + Run, defaults, one running experiment, observations published to an embedded nats-server)")
	fmt.Fprintf(w, "Medians of %d runs of %s each (min–max in parentheses); Host `%s`; %g %% mirrored; every process on 127.0.0.1.\n\n",
		c.runs, c.duration, c.host, c.percent)
	fmt.Fprintf(w, "| scenario | closed loop `wrk -t2 -c50` req/s | ratio | `fortio -uniform -qps %d -c 50` p50 ms | p99 ms | p99 ratio | fortio achieved req/s | mirrored share, wrk | mirrored share, fortio | proxy peak RSS MiB, wrk / fortio | errors |\n", c.qps)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for i, s := range sc {
		rs := res[i]
		tg := b.targets[s.target]
		r, l50, l99 := statOf(rs, rps), statOf(rs, p50), statOf(rs, p99)
		var ratios, tail []string
		if s.peer >= 0 {
			ratios = append(ratios, ratio(r.med, statOf(res[s.peer], rps).med)+" nginx")
			tail = append(tail, ratio(l99.med, statOf(res[s.peer], p99).med)+" nginx")
		}
		if s.base >= 0 {
			ratios = append(ratios, ratio(r.med, statOf(res[s.base], rps).med)+" its healthy run")
		}
		share := func(f func(result) float64) string {
			if !tg.mirrors {
				return "—"
			}
			return statOf(rs, f).format(pct, " %")
		}
		mem := "—"
		if tg.pids != nil {
			mem = statOf(rs, func(r result) float64 { return float64(r.wrkRSS) }).format(mib, "") + " / " +
				statOf(rs, func(r result) float64 { return float64(r.fortioRSS) }).format(mib, "")
		}
		var errs int64
		for _, r := range rs {
			errs += r.wrk.errors + r.fortio.errors
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", s.name,
			r.format(thousands, ""), orDash(strings.Join(ratios, ", ")), l50.format(ms, ""), l99.format(ms, ""),
			orDash(strings.Join(tail, ", ")), statOf(rs, func(r result) float64 { return r.fortio.qps }).format(thousands, ""),
			share(func(r result) float64 { return r.wrkShare }), share(func(r result) float64 { return r.fortioShare }), mem, errs)
	}
	fmt.Fprintln(w)
	direct := res[0]
	for i, s := range sc {
		if s.target != "nginx" && s.target != "darklaunch" || s.dark != modeOK {
			continue
		}
		fmt.Fprintf(w, "- %s adds over the direct call at %d req/s: p50 %+.2f ms, p99 %+.2f ms (medians).\n", s.name, c.qps,
			statOf(res[i], p50).med-statOf(direct, p50).med, statOf(res[i], p99).med-statOf(direct, p99).med)
	}
	fmt.Fprintf(w, "- darklaunch proxy RSS idle, before the first run: %s MiB (\"proxy peak RSS\" for nginx is master + workers).\n", mib(float64(b.idleRSS)))
	fmt.Fprintln(w, "- Mirrored share: requests the dark backend received ÷ requests the live backend received in that run (counted at the backends, after the copies in flight arrived).")
	fmt.Fprintln(w, "- errors: wrk's non-2xx/3xx answers and socket errors plus fortio's non-200 answers, over all runs; wrk's `-c50` and fortio's `-c 50` connections are kept alive.")
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func field(s string, i int) string {
	f := strings.Fields(s)
	if i < len(f) {
		return f[i]
	}
	return "?"
}

// machine is `nproc` and the CPU model.
func machine() string {
	model := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(raw)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("nproc %d, %s, %s/%s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH)
}

func goVersion() string { return runtime.Version() }
