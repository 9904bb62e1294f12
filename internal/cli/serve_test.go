package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/nats-io/nats-server/v2/server"
)

// TestServeExportsMetrics: every service, run as `darklaunch serve`, answers
// its probes and exports its own metrics on --health-addr, as the chart's
// probes and scrape annotations expect.
func TestServeExportsMetrics(t *testing.T) {
	srv := testenv.StartNATS(t)
	// The judge creates the streams the others wait for before they are
	// ready; the services run here one at a time.
	testenv.Infra(t, srv.Conn(t))
	for svc, want := range map[string][]string{
		"router":    {"darklaunch_proxy_routes 0", "go_goroutines"},
		"loadgen":   {"darklaunch_loadgen_active_traffics", "darklaunch_loadgen_request_duration_seconds_count"},
		"collector": {`darklaunch_collector_clocks{source="bus"}`},
		"judge":     {`darklaunch_judge_experiments_finished_total{result="pass"} 0`, "darklaunch_judge_experiments_created_total"},
	} {
		t.Run(svc, func(t *testing.T) {
			addr := testenv.FreeAddr(t)
			args := []string{"serve", svc, "--server", srv.URL(), "--health-addr", addr}
			if svc == "router" {
				args = append(args, "--proxy-addr", testenv.FreeAddr(t))
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan int, 1)
			var errOut bytes.Buffer
			go func() { done <- Run(ctx, args, strings.NewReader(""), io.Discard, &errOut) }()
			defer func() {
				cancel()
				if code := <-done; code != 0 {
					t.Errorf("exit %d: %s", code, errOut.String())
				}
			}()

			get := func(path string) (int, string) {
				resp, err := http.Get("http://" + addr + path)
				if err != nil {
					return 0, err.Error()
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			testenv.EventuallyWithin(t, 10*time.Second, "/readyz", func() (bool, string) {
				code, body := get("/readyz")
				return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
			})
			code, body := get("/metrics")
			if code != http.StatusOK {
				t.Fatalf("/metrics: %d", code)
			}
			for _, w := range want {
				if !strings.Contains(body, w) {
					t.Errorf("/metrics lacks %q", w)
				}
			}
		})
	}
}

// TestServeWaitsForNATS: a service started before NATS (a pod whose sidecar
// or NATS comes up later) keeps trying for --connect-wait, then runs; with no
// wait it gives up at once with exit 2; a bad --stream-replicas is refused.
func TestServeWaitsForNATS(t *testing.T) {
	natsAddr := testenv.FreeAddr(t)
	healthAddr := testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan int, 1)
	var errOut testenv.Buffer
	go func() {
		done <- Run(ctx, []string{"serve", "judge", "--server", "nats://" + natsAddr, "--connect-wait", "20s", "--health-addr", healthAddr},
			strings.NewReader(""), io.Discard, &errOut)
	}()
	// It tries once a second: two failed tries say it keeps trying.
	testenv.EventuallyWithin(t, 10*time.Second, "two tries to reach NATS", func() (bool, string) {
		select {
		case code := <-done:
			t.Fatalf("serve gave up before NATS started: exit %d: %s", code, errOut.String())
		default:
		}
		out := errOut.String()
		return strings.Count(out, "NATS not reachable yet") >= 2, out
	})
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Addr: natsAddr, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	testenv.EventuallyWithin(t, 15*time.Second, "the judge to become ready after NATS started", func() (bool, string) {
		resp, err := http.Get("http://" + healthAddr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d after the stop", code)
	}

	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no wait":         {[]string{"--server", "nats://" + testenv.FreeAddr(t), "--connect-wait", "0"}, "no servers available"},
		"stream replicas": {[]string{"--server", "nats://" + natsAddr, "--stream-replicas", "7"}, "--stream-replicas 7: want 1 to 5"},
	} {
		start := time.Now()
		code, _, stderr := run(t, "", append([]string{"serve", "judge"}, tc.args...)...)
		if code != ExitInvalid || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", name, code, stderr, ExitInvalid, tc.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v, want at once", name, d)
		}
	}
}

// TestDevWithoutJetStreamSaysWhy: against a NATS server without JetStream,
// `dev --server` fails at once with the judge's own reason, not "the judge
// did not start answering" after a 15-second wait.
func TestDevWithoutJetStreamSaysWhy(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	defer ns.Shutdown()
	start := time.Now()
	code, _, stderr := run(t, "", "dev", "--server", ns.ClientURL(), "--proxy-addr", testenv.FreeAddr(t))
	if code != ExitInvalid || !strings.Contains(stderr, "JetStream") {
		t.Errorf("exit %d, stderr %q; want %d and a reason naming JetStream", code, stderr, ExitInvalid)
	}
	if d := time.Since(start); d > 12*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestRunInterrupted: Ctrl-C during a run ends it with "interrupted", not a
// context error, at any stage.
func TestRunInterrupted(t *testing.T) {
	file := writeFile(t, readExample(t, "experiment-local.yaml"))
	for _, after := range []time.Duration{50 * time.Millisecond, 3 * time.Second} {
		ctx, cancel := context.WithCancel(t.Context()) // as signal.NotifyContext does
		time.AfterFunc(after, cancel)
		var stderr bytes.Buffer
		start := time.Now()
		code := Run(ctx, []string{"run", file}, strings.NewReader(""), io.Discard, &stderr)
		cancel()
		if code != ExitInvalid || !strings.HasSuffix(strings.TrimSpace(stderr.String()), "darklaunch: interrupted") {
			t.Errorf("interrupted after %v: exit %d, stderr %q; want %d and \"darklaunch: interrupted\"", after, code, stderr.String(), ExitInvalid)
		}
		if d := time.Since(start); d > after+5*time.Second {
			t.Errorf("interrupted after %v: stopped %v later", after, d-after)
		}
	}
}

// TestDevServerAndEmbeddedFlagsConflict: --server (or DARKLAUNCH_SERVER)
// with --nats-addr is refused, naming both, instead of silently ignoring
// --nats-addr.
func TestDevServerAndEmbeddedFlagsConflict(t *testing.T) {
	t.Setenv("DARKLAUNCH_SERVER", "nats://127.0.0.1:1")
	code, _, stderr := run(t, "", "dev", "--nats-addr", testenv.FreeAddr(t))
	if code != ExitInvalid || !strings.Contains(stderr, "DARKLAUNCH_SERVER") || !strings.Contains(stderr, "--nats-addr") {
		t.Errorf("exit %d, stderr %q; want %d naming DARKLAUNCH_SERVER and --nats-addr", code, stderr, ExitInvalid)
	}
}

// TestServeInterruptedWhileWaitingForNATS: a pod stopped before NATS came
// up exits as interrupted, not as a failure to connect.
func TestServeInterruptedWhileWaitingForNATS(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(1200*time.Millisecond, cancel)
	var stderr bytes.Buffer
	code := Run(ctx, []string{"serve", "loadgen", "--server", "nats://" + testenv.FreeAddr(t), "--connect-wait", "30s"}, strings.NewReader(""), io.Discard, &stderr)
	if code != ExitInvalid || !strings.HasSuffix(strings.TrimSpace(stderr.String()), "darklaunch: interrupted") {
		t.Errorf("exit %d, stderr %q; want %d ending in \"darklaunch: interrupted\"", code, stderr.String(), ExitInvalid)
	}
}

// TestServeCollectorPrometheus: a bad prometheus setting, by flag or by
// environment, stops `serve collector` at start-up with exit 2 and the
// reason; a good one runs until its context ends.
func TestServeCollectorPrometheus(t *testing.T) {
	srv := testenv.StartNATS(t)
	bad := filepath.Join(t.TempDir(), "metrics.yaml")
	if err := os.WriteFile(bad, []byte("- name: p95\n  query: up\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"provider":   {[]string{"--metrics-provider", "linkerd"}, nil, `metrics provider "linkerd": want one of knative, istio`},
		"url":        {[]string{"--prometheus-url", "prometheus:9090"}, nil, `prometheus URL "prometheus:9090"`},
		"file (env)": {nil, map[string]string{"DARKLAUNCH_METRICS_FILE": bad}, `[0].name: unknown metric "p95"`},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"serve", "collector", "--server", srv.URL(), "--source", "prometheus"}, tc.args...)
			code, _, stderr := run(t, "", args...)
			if code != ExitInvalid || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, ExitInvalid, tc.want)
			}
		})
	}

	// The judge creates the streams the collector waits for.
	testenv.Infra(t, srv.Conn(t))
	t.Setenv("DARKLAUNCH_METRICS_PROVIDER", "istio")
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := Run(ctx, []string{"serve", "collector", "--server", srv.URL(), "--source", "prometheus", "--prometheus-url", "http://127.0.0.1:9"}, strings.NewReader(""), &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	// metrics=8: the seven metrics and the latency histogram.
	for _, want := range []string{"collector running", "source=prometheus", "prometheus=http://127.0.0.1:9", "metricsProvider=istio", "metrics=8"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, errOut.String())
		}
	}
}
