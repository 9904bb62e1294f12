package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/natstest"
)

// TestServeExportsMetrics: every service, run as `darklaunch serve`, answers
// its probes and exports its own metrics on --health-addr, as the chart's
// probes and scrape annotations expect.
func TestServeExportsMetrics(t *testing.T) {
	srv := natstest.Run(t)
	for svc, want := range map[string][]string{
		"router":    {"darklaunch_proxy_routes 0", "go_goroutines"},
		"loadgen":   {"darklaunch_loadgen_active_traffics", "darklaunch_loadgen_request_duration_seconds_count"},
		"collector": {`darklaunch_collector_clocks{source="bus"}`},
		"judge":     {`darklaunch_judge_experiments_finished_total{result="pass"} 0`, "darklaunch_judge_experiments_created_total"},
	} {
		t.Run(svc, func(t *testing.T) {
			addr := freeAddr(t)
			args := []string{"serve", svc, "--server", srv.URL(), "--health-addr", addr}
			if svc == "router" {
				args = append(args, "--proxy-addr", freeAddr(t))
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
			deadline := time.Now().Add(10 * time.Second)
			for {
				code, body := get("/readyz")
				if code == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("/readyz: %d %s", code, body)
				}
				time.Sleep(50 * time.Millisecond)
			}
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

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
