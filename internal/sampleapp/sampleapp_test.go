package sampleapp

import (
	"context"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestAnswersWithVersionLatencyAndErrors(t *testing.T) {
	a, err := New(Config{Name: "green", Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, ErrorRate: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop(context.Background()) })
	failed := 0
	for i := 0; i < 20; i++ {
		start := time.Now()
		resp, err := http.Get(a.URL() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if el := time.Since(start); el < 15*time.Millisecond {
			t.Errorf("answer after %s, want at least latency − jitter = 15ms", el)
		}
		if resp.StatusCode == 500 {
			failed++
			continue
		}
		if !strings.Contains(string(body), "version green") {
			t.Errorf("body %q does not name the version", body)
		}
	}
	if failed != 4 {
		t.Errorf("failed %d of 20 at error rate 0.2, want exactly 4", failed)
	}
}

func TestHangNeverAnswers(t *testing.T) {
	a, _ := New(Config{Name: "dark", Hang: true})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop(context.Background()) })
	c := &http.Client{Timeout: 200 * time.Millisecond}
	if _, err := c.Get(a.URL()); err == nil {
		t.Fatal("a hanging app answered")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{}, {Name: "x", ErrorRate: 2}, {Name: "x", ErrorRate: math.NaN()}, {Name: "x", Latency: time.Millisecond, Jitter: time.Second}, {Name: "x", ErrorCode: 200}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
