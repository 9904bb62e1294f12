package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// stacks are the scale run's stack processes: the first embeds NATS, the
// others (-scale-instances) run every service again on its server.
type stacks struct {
	children []*child
	profiles []string // each one's profile prefix, with -scale-profile
}

// startStacks starts sc.instances stack processes for a run of n
// experiments and returns the first's addresses.
func startStacks(ctx context.Context, sc scaleConfig, n int, stderr io.Writer) (*stacks, stackAddrs, error) {
	s := &stacks{}
	var first stackAddrs
	for i := range sc.instances {
		var args []string
		if sc.profile != "" {
			prefix := filepath.Join(sc.profile, fmt.Sprintf("scale-%d", n))
			if sc.instances > 1 {
				prefix += fmt.Sprintf("-instance%d", i)
			}
			s.profiles = append(s.profiles, prefix)
			args = append(args, "-profile-prefix", prefix)
			if sc.contention {
				args = append(args, "-scale-contention")
			}
		}
		if i > 0 {
			args = append(args, "-stack-nats", first.NATS)
		}
		var sa stackAddrs
		c, err := startChild(ctx, stderr, &sa, "stack", args...)
		if err != nil {
			return s, first, fmt.Errorf("stack process %d: %w", i, err)
		}
		s.children = append(s.children, c)
		if i == 0 {
			first = sa
		}
	}
	return s, first, nil
}

func (s *stacks) stop() {
	for _, c := range slices.Backward(s.children) {
		c.stop()
	}
}

// cpu is the processes' user + system time.
func (s *stacks) cpu() (time.Duration, error) {
	var sum time.Duration
	for _, c := range s.children {
		d, err := procCPU(c.cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// rss is the sum of the processes' resident sets; hwm of their peaks.
func (s *stacks) rss() int64 {
	var sum int64
	for _, c := range s.children {
		v, _ := rss(c.cmd.Process.Pid)
		sum += v
	}
	return sum
}

func (s *stacks) hwm() int64 {
	var sum int64
	for _, c := range s.children {
		v, _ := hwm(c.cmd.Process.Pid)
		sum += v
	}
	return sum
}

// cpuByService sums the CPU samples of the stacks' profiles by their
// "service" label (internal/stack runs each service under one); nil
// without profiles.
func (s *stacks) cpuByService(stderr io.Writer) map[string]time.Duration {
	if len(s.profiles) == 0 {
		return nil
	}
	out := map[string]time.Duration{}
	for _, prefix := range s.profiles {
		f, err := os.Open(prefix + ".cpu.pprof")
		if err != nil {
			fmt.Fprintf(stderr, "  CPU by service: %v\n", err)
			return nil
		}
		p, err := profile.Parse(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "  CPU by service: %s: %v\n", prefix, err)
			return nil
		}
		idx := slices.IndexFunc(p.SampleType, func(st *profile.ValueType) bool { return st.Type == "cpu" })
		if idx < 0 {
			continue
		}
		for _, sm := range p.Sample {
			name := "other"
			if v := sm.Label["service"]; len(v) > 0 {
				name = v[0]
			}
			out[name] += time.Duration(sm.Value[idx])
		}
	}
	return out
}

// reportByService is the CPU by service, per experiment, of the rows that
// have it.
func reportByService(w io.Writer, rows []scaleResult) {
	for _, r := range rows {
		if len(r.byService) == 0 {
			continue
		}
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(r.byService)) {
			parts = append(parts, fmt.Sprintf("%s %.3f", name, r.byService[name].Seconds()/float64(r.n)))
		}
		fmt.Fprintf(w, "\nN = %d, CPU by service, s per experiment (whole run, from the profiles): %s\n", r.n, strings.Join(parts, ", "))
	}
}

func instancesName(n int) string {
	if n == 1 {
		return "one process, one instance of each service"
	}
	return fmt.Sprintf("%d processes on one NATS, %d instances of each service", n, n)
}
