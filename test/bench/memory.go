package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

// memResult is one fresh proxy's memory under a fixed rate with a slow or
// hung dark version.
type memResult struct {
	idle, peak int64
	p99        float64
}

// measureMemory starts a fresh proxy for each run and dark mode (the
// table's proxy keeps the heap its closed-loop runs grew), runs fortio at
// the fixed rate for the run's duration, and reports the proxy's peak RSS:
// what the copies in flight cost at that rate, against --mirror-memory.
func (b *bench) measureMemory(ctx context.Context, proxyArgs []string, stderr io.Writer) (map[string][]memResult, error) {
	out := map[string][]memResult{}
	for round := range b.cfg.runs {
		for _, mode := range []string{modeSlow, modeHung} {
			fmt.Fprintf(b.log, "run %d/%d: memory of a fresh proxy at %d req/s, dark %s\n", round+1, b.cfg.runs, b.cfg.qps, mode)
			var pa proxyAddrs
			px, err := startChild(ctx, stderr, &pa, "proxy", proxyArgs...)
			if err != nil {
				return nil, err
			}
			r, err := b.memoryRun(ctx, pa.URL+"/", px.cmd.Process.Pid, mode)
			px.stop()
			if err != nil {
				return nil, err
			}
			out[mode] = append(out[mode], r)
		}
	}
	return out, b.ctl.setDark(modeOK, b.cfg.darkDelay)
}

func (b *bench) memoryRun(ctx context.Context, url string, pid int, mode string) (memResult, error) {
	var r memResult
	if err := b.ctl.setDark(mode, b.cfg.darkDelay); err != nil {
		return r, err
	}
	time.Sleep(time.Second) // the proxy's start settled
	r.idle, _ = rss(pid)
	rs := sampleRSS(func() []int { return []int{pid} })
	f, err := runFortio(ctx, b.tools.fortio, b.dir, url, b.cfg.host, b.cfg.qps, b.cfg.duration)
	r.peak = rs.end()
	r.p99 = f.p99
	return r, err
}

func (b *bench) reportMemory(w io.Writer, res map[string][]memResult) {
	fmt.Fprintf(w, "\nMemory of the copies in flight: a fresh proxy per run, `fortio -uniform -qps %d -c 50` for %s, %g %% mirrored (the copies are bounded by `--mirror-memory`, 64Mi by default):\n\n",
		b.cfg.qps, b.cfg.duration, b.cfg.percent)
	fmt.Fprintln(w, "| dark version | proxy RSS idle MiB | peak RSS MiB | live p99 ms |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, mode := range []string{modeSlow, modeHung} {
		rs := res[mode]
		name := "hung (never answers; copies end at the mirror timeout)"
		if mode == modeSlow {
			name = fmt.Sprintf("+%s", b.cfg.darkDelay)
		}
		of := func(f func(memResult) float64) stat {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			return statOfValues(v)
		}
		idle := of(func(r memResult) float64 { return float64(r.idle) })
		peak := of(func(r memResult) float64 { return float64(r.peak) })
		p99 := of(func(r memResult) float64 { return r.p99 })
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", name, idle.format(mib, ""), peak.format(mib, ""), p99.format(ms, ""))
	}
}
