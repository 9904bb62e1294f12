//go:build unix

package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binaries are the programs a trial runs: the released darklaunch binary
// and a standalone nats-server, both built from this module.
type binaries struct {
	darklaunch, natsServer string
}

// build compiles cmd/darklaunch and the nats-server of go.mod into dir.
// Under -race the darklaunch binary is built with -race too: a data race
// in a service under chaos then fails the trial (its log says "DATA RACE"),
// and the build reuses the packages the race-enabled test run compiled.
func build(t *testing.T, dir string) binaries {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	b := binaries{darklaunch: filepath.Join(dir, "darklaunch"), natsServer: filepath.Join(dir, "nats-server")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		append(append([]string{"build"}, raceFlags()...), "-o", b.darklaunch, "./cmd/darklaunch"),
		{"build", "-o", b.natsServer, "github.com/nats-io/nats-server/v2"},
	} {
		start := time.Now()
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.Dir = filepath.Join("..", "..") // the module's root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("go %s (%v)", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	}
	return b
}

func raceFlags() []string {
	if raceEnabled {
		return []string{"-race"}
	}
	return nil
}

// proc is one program of a trial, run as its own process group so that a
// kill -9 reaches it whole. Every start appends to one log file.
type proc struct {
	name string
	path string
	args []string
	log  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// start runs the program; it is an error if it is running.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s is already running", p.name)
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close() // the child has its own copy
	p.starts++
	fmt.Fprintf(f, "=== chaos: start %d of %s at %s: %s\n", p.starts, p.name, time.Now().Format(time.RFC3339Nano), strings.Join(p.args, " "))
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	return nil
}

// kill sends SIGKILL to the process group and waits (bounded) until the
// process is gone. It does nothing if the program is not running.
func (p *proc) kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	cmd, exited := p.cmd, p.exited
	p.cmd, p.exited = nil, nil
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill -9 %s: %w", p.name, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) still there 10s after kill -9", p.name, cmd.Process.Pid)
	}
}

// running reports whether the program is running (started and not exited).
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// childEnv is the test's environment without DARKLAUNCH_* settings: a
// developer's DARKLAUNCH_SERVER must not send a trial elsewhere.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DARKLAUNCH_") {
			env = append(env, kv)
		}
	}
	return env
}

// crashMarks are what a Go program, or the race detector, writes when it
// goes wrong.
var crashMarks = []string{"panic:", "fatal error:", "WARNING: DATA RACE", "SIGSEGV"}

// crashes returns the lines of the log that say the program crashed.
func (p *proc) crashes() []string {
	f, err := os.Open(p.log)
	if err != nil {
		return []string{fmt.Sprintf("read %s: %v", p.log, err)}
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, m := range crashMarks {
			if strings.Contains(line, m) {
				out = append(out, line)
				break
			}
		}
	}
	return out
}

// tail returns the last n lines of the log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitHTTP polls url until it answers 200, for at most within.
func waitHTTP(ctx context.Context, url string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ok within %v: %s", url, within, last)
		case <-time.After(25 * time.Millisecond):
		}
	}
}
