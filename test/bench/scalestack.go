package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"

	"github.com/darklaunch/darklaunch/internal/stack"
	"github.com/darklaunch/darklaunch/shared/bus"
)

// runStackRole is -role stack: the embedded stack as `darklaunch dev` runs
// it (stack.Start with its defaults: embedded nats-server, the sample app as
// live and dark, the four services), printing its NATS URL, until stdin
// closes. With -profile-prefix it writes its CPU and heap profiles (and, with
// -scale-contention, its mutex and block profiles) there.
func runStackRole(ctx context.Context, stdout, stderr io.Writer, sc scaleConfig) (err error) {
	if sc.childProfile != "" {
		f, err := os.Create(sc.childProfile + ".cpu.pprof")
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
		if sc.contention {
			// The rates are set once the stack runs: starting, nats-server
			// sets the block profile's to its own option (0: off).
			defer func() {
				for _, name := range []string{"mutex", "block"} {
					if werr := writeProfile(name, sc.childProfile+"."+name+".pprof"); werr != nil && err == nil {
						err = werr
					}
				}
			}()
		}
	}
	counts := &logCounts{next: slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}), counter: &counter{n: map[string]int{}}}
	defer counts.print(stderr)
	log := slog.New(counts)
	raiseFileLimit(stderr)
	cfg := stack.Config{Log: log}
	if sc.stackNATS != "" {
		cfg.NATS = bus.ConnConfig{URL: sc.stackNATS}
	}
	st, err := stack.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if sc.childProfile != "" && sc.contention {
		runtime.SetMutexProfileFraction(10)
		runtime.SetBlockProfileRate(100_000) // one blocking event per 100 µs blocked
	}
	if err := json.NewEncoder(stdout).Encode(stackAddrs{NATS: st.URL}); err != nil {
		return err
	}
	<-ctx.Done()
	if sc.childProfile != "" {
		// The heap as the run ends, before the stack lets go of it.
		return writeProfile("heap", sc.childProfile+".heap.pprof")
	}
	return nil
}

// logCounts counts the stack's warnings by message (at 500 experiments
// there are thousands a second) and passes its errors on.
type logCounts struct {
	next slog.Handler
	*counter
}

type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *logCounts) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *logCounts) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		return h.next.Handle(ctx, r)
	}
	h.mu.Lock()
	h.n[r.Message]++
	h.mu.Unlock()
	return nil
}

func (h *logCounts) WithAttrs(as []slog.Attr) slog.Handler {
	return &logCounts{next: h.next.WithAttrs(as), counter: h.counter}
}

func (h *logCounts) WithGroup(g string) slog.Handler {
	return &logCounts{next: h.next.WithGroup(g), counter: h.counter}
}

func (h *logCounts) print(w io.Writer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	msgs := slices.Sorted(maps.Keys(h.n))
	for _, m := range msgs {
		fmt.Fprintf(w, "  stack warnings: %d × %q\n", h.n[m], m)
	}
}

// scaleFiles is the open files the stack process asks for: loadgen keeps up
// to 16 connections per experiment and the proxy the other end of each, in
// the same process, so 1,000 experiments take over 32,000 descriptors.
const scaleFiles = 1 << 18

// raiseFileLimit raises the process's open-file limit to scaleFiles where
// it may (root raises the hard limit too), and says what it got.
func raiseFileLimit(stderr io.Writer) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	want := syscall.Rlimit{Cur: max(lim.Cur, scaleFiles), Max: max(lim.Max, scaleFiles)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
	}
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	fmt.Fprintf(stderr, "  stack: open files limit %d\n", lim.Cur)
}

func writeProfile(name, path string) error {
	p := pprof.Lookup(name)
	if p == nil {
		return fmt.Errorf("no %s profile", name)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return p.WriteTo(f, 0)
}
