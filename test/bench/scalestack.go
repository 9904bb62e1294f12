package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"

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
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
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
