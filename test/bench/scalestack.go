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

	"github.com/darklaunch/darklaunch/internal/stack"
)

// runStackRole is -role stack: the embedded stack as `darklaunch dev` runs
// it (stack.Start with its defaults: embedded nats-server, the sample app as
// live and dark, the four services), printing its NATS URL, until stdin
// closes. With -profile-prefix it writes its CPU profile (and, with
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
			runtime.SetMutexProfileFraction(10)
			runtime.SetBlockProfileRate(100_000) // one blocking event per 100 µs blocked
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
	st, err := stack.Start(ctx, stack.Config{Log: log})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := json.NewEncoder(stdout).Encode(stackAddrs{NATS: st.URL}); err != nil {
		return err
	}
	<-ctx.Done()
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
