package telemetry

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "darklaunch_test_total", Help: "test"}
	first, err := Register(reg, prometheus.NewCounterVec(opts, []string{"x"}))
	if err != nil {
		t.Fatal(err)
	}
	// The same metric again (a second service in the process): the first
	// collector comes back, so both count into the one series.
	second, err := Register(reg, prometheus.NewCounterVec(opts, []string{"x"}))
	if err != nil || second != first {
		t.Fatalf("second registration: %p, %v; want the first collector %p", second, err, first)
	}
	// The same descriptor as another type: an error that says so.
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "darklaunch_test_total", Help: "test"}, []string{"x"})
	if _, err := Register(reg, g); err == nil || !strings.Contains(err.Error(), "another type") {
		t.Errorf("a gauge vector under the counter vector's name: err %v, want one naming another type", err)
	}
}

func TestRegistrarKeepsFirstError(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "darklaunch_taken", Help: "x"}, []string{"x"}))
	r := &Registrar{Reg: reg}
	Add(r, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "darklaunch_taken", Help: "x"}, []string{"x"}))
	first := r.Err
	after := Add(r, prometheus.NewCounter(prometheus.CounterOpts{Name: "darklaunch_after", Help: "x"}))
	if first == nil || r.Err != first {
		t.Fatalf("err %v then %v, want the first error kept", first, r.Err)
	}
	if after == nil {
		t.Fatal("Add after an error returns nil, want the collector back")
	}
	if n, _ := reg.Gather(); len(n) != 0 {
		// darklaunch_taken has no series; darklaunch_after must not be registered.
		for _, mf := range n {
			if mf.GetName() == "darklaunch_after" {
				t.Error("a collector was registered after an error")
			}
		}
	}
}
