package metrics

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
