package main

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// fortioModule is the fortio the benchmark installs when none is found:
// newer releases need a newer toolchain than some machines have.
const fortioModule = "fortio.org/fortio@v1.68.2"

//go:embed nginx-mirror.conf
var nginxConf string

// tools are the peers' paths.
type tools struct{ nginx, wrk, fortio string }

// findTools finds nginx, wrk and fortio, installing what is missing when
// install is set: nginx and wrk with apt-get (as root), fortio with go
// install.
func findTools(ctx context.Context, install bool, log io.Writer) (tools, error) {
	var t tools
	look := func() {
		t.nginx = lookPath("nginx", "/usr/sbin/nginx")
		t.wrk = lookPath("wrk")
		t.fortio = lookPath("fortio", filepath.Join(goEnv("GOPATH"), "bin", "fortio"))
	}
	look()
	if install && (t.nginx == "" || t.wrk == "") {
		if err := aptInstall(ctx, log); err != nil {
			return t, err
		}
	}
	if install && t.fortio == "" {
		fmt.Fprintf(log, "installing fortio: go install %s\n", fortioModule)
		if err := runLogged(ctx, log, nil, "go", "install", fortioModule); err != nil {
			return t, fmt.Errorf("go install %s: %w", fortioModule, err)
		}
	}
	look()
	var missing []string
	for _, m := range []struct{ name, path, how string }{
		{"nginx", t.nginx, "apt-get install -y nginx"},
		{"wrk", t.wrk, "apt-get install -y wrk"},
		{"fortio", t.fortio, "go install " + fortioModule},
	} {
		if m.path == "" {
			missing = append(missing, fmt.Sprintf("%s (%s)", m.name, m.how))
		}
	}
	if len(missing) > 0 {
		return t, fmt.Errorf("not found: %s; install them or run without -install=false", strings.Join(missing, ", "))
	}
	return t, nil
}

// aptInstall installs nginx and wrk. The package's own service must not
// start (it would listen on every interface): policy-rc.d refusing every
// start is what Debian's tools honour; one is put in place for the install
// when the machine has none, and removed afterwards.
func aptInstall(ctx context.Context, log io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("nginx or wrk missing and not root: run `apt-get install -y nginx wrk` as root, or run the benchmark as root")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("nginx or wrk missing and no apt-get: install them with the system's package manager")
	}
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\n# test/bench: no service starts while nginx is installed\nexit 101\n"), 0o755); err != nil {
			return fmt.Errorf("policy-rc.d: %w", err)
		}
		defer os.Remove(policy)
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	fmt.Fprintln(log, "installing nginx and wrk: apt-get update && apt-get install -y nginx wrk")
	if err := runLogged(ctx, log, env, "apt-get", "update", "-qq"); err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	if err := runLogged(ctx, log, env, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx", "wrk"); err != nil {
		return fmt.Errorf("apt-get install nginx wrk: %w", err)
	}
	return nil
}

func runLogged(ctx context.Context, log io.Writer, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	return cmd.Run()
}

func lookPath(name string, also ...string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range also {
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

func goEnv(key string) string {
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func toolVersion(path string, args ...string) string {
	out, _ := exec.Command(path, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// child is a process the benchmark started and stops.
type child struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	done    chan error
	stopped sync.Once
}

// startChild starts this program again as role; it prints one JSON line
// into into once it serves.
func startChild(ctx context.Context, stderr io.Writer, into any, role string, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{"-role", role}, args...)...)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	c := &child{name: role, cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	line := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() {
			line <- fmt.Errorf("%s ended before serving", role)
		} else {
			line <- json.Unmarshal(sc.Bytes(), into)
		}
		_, _ = io.Copy(io.Discard, stdout)
		c.done <- cmd.Wait()
	}()
	select {
	case err = <-line:
	case <-time.After(60 * time.Second):
		err = fmt.Errorf("%s not serving after 60s", role)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// stop ends the child: its stdin closes (it shuts down), then after 15 s
// it is killed.
func (c *child) stop() { c.stopped.Do(c.stopOnce) }

func (c *child) stopOnce() {
	if c.stdin != nil {
		c.stdin.Close()
	}
	if c.cmd.Process == nil {
		return
	}
	if c.name == "nginx" {
		_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	}
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// nginxPorts are the ports of nginx's two servers.
type nginxPorts struct{ mirror, plain int }

// startNginx writes the configuration into dir and runs nginx in the
// foreground (daemon off), waiting until both servers accept connections.
func startNginx(ctx context.Context, path, dir string, live, dark string, percent float64, stderr io.Writer) (*child, nginxPorts, error) {
	var ports nginxPorts
	var err error
	if ports.mirror, err = freePort(); err != nil {
		return nil, ports, err
	}
	if ports.plain, err = freePort(); err != nil {
		return nil, ports, err
	}
	for _, d := range []string{"nginx/logs", "nginx/tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, ports, err
		}
	}
	conf := strings.NewReplacer(
		"@DIR@", dir, "@LIVE@", live, "@DARK@", dark,
		"@MIRROR_PORT@", strconv.Itoa(ports.mirror), "@PLAIN_PORT@", strconv.Itoa(ports.plain),
		"@WORKERS@", strconv.Itoa(runtime.NumCPU()), "@PERCENT@", strconv.FormatFloat(percent, 'f', -1, 64),
	).Replace(nginxConf)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, ports, err
	}
	cmd := exec.Command(path, "-c", confPath, "-p", filepath.Join(dir, "nginx"))
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return nil, ports, fmt.Errorf("start nginx: %w", err)
	}
	c := &child{name: "nginx", cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	for _, p := range []int{ports.mirror, ports.plain} {
		if err := waitListening(ctx, c, fmt.Sprintf("127.0.0.1:%d", p)); err != nil {
			c.stop()
			log, _ := os.ReadFile(filepath.Join(dir, "nginx/logs/error.log"))
			return nil, ports, fmt.Errorf("nginx: %w\n%s", err, log)
		}
	}
	return c, ports, nil
}

func waitListening(ctx context.Context, c *child, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case err := <-c.done:
			c.done <- err
			return fmt.Errorf("ended before listening on %s: %v", addr, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after 10s", addr)
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
