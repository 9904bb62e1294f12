package service

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
)

func TestExit(t *testing.T) {
	live, stopped := context.Background(), canceled()
	boom := errors.New("no JetStream")
	if err := Exit(live, "collector", boom); !errors.Is(err, boom) || err.Error() != "collector: no JetStream" {
		t.Errorf("Exit on a live context = %v, want the error under the service's name", err)
	}
	if err := Exit(stopped, "collector", boom); err != nil {
		t.Errorf("Exit after the context ended = %v, want nil: a stop while starting is a clean shutdown", err)
	}
	if err := Exit(live, "collector", nil); err != nil {
		t.Errorf("Exit(nil) = %v", err)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// cfg is a service configuration of the convention, for the tests.
type cfg struct {
	Rate      int
	defaulted bool
}

func (c *cfg) Default() {
	c.defaulted = true
	if c.Rate == 0 {
		c.Rate = 2
	}
}

func (c *cfg) Validate() error {
	if c.Rate < 0 {
		return errors.New("rate must not be negative")
	}
	return nil
}

func (*cfg) AddFlags(*pflag.FlagSet)    {}
func (*cfg) Build(Deps) (Runner, error) { return nil, nil }
func (*cfg) Service() string            { return "pacer" }

func TestPrepare(t *testing.T) {
	nc := testenv.StartNATS(t).Conn(t)
	c := &cfg{}
	log, err := Prepare("pacer", c, nc, nil)
	if err != nil || log == nil || !c.defaulted || c.Rate != 2 {
		t.Fatalf("Prepare = %v, %v; config %+v; want a logger and the defaults applied", log, err, c)
	}
	if _, err := Prepare("pacer", &cfg{Rate: -1}, nc, nil); err == nil || err.Error() != "pacer: rate must not be negative" {
		t.Errorf("invalid config: %v, want the problem under the service's name", err)
	}
	if _, err := Prepare("pacer", &cfg{}, nil, nil); err == nil || !strings.Contains(err.Error(), "pacer: no NATS connection") {
		t.Errorf("no connection: %v", err)
	}
}

func TestSpecOf(t *testing.T) {
	s := SpecOf[cfg]("Pace things")
	a, b := s.NewConfig(), s.NewConfig()
	if s.Name != "pacer" || s.Short != "Pace things" || a == b {
		t.Errorf("spec %+v: want the config's name, the line, and a fresh config each time", s)
	}
	if _, ok := a.(*cfg); !ok {
		t.Errorf("NewConfig made a %T", a)
	}
}

func TestDepsFillKeepsWhatTheHostLacks(t *testing.T) {
	mine, hosts := prometheus.NewRegistry(), prometheus.NewRegistry()
	reg, streams := mine, bus.StreamLimits{Replicas: 3}
	Deps{}.FillRegistry(&reg)
	Deps{}.FillStreams(&streams)
	if reg != mine || streams.Replicas != 3 {
		t.Errorf("a host with nothing replaced the configuration's: %p %+v", reg, streams)
	}
	host := Deps{Registry: hosts, Streams: bus.StreamLimits{Replicas: 5}}
	host.FillRegistry(&reg)
	host.FillStreams(&streams)
	if reg != hosts || streams.Replicas != 5 {
		t.Errorf("the host's registry and limits were not taken: %p %+v", reg, streams)
	}
}

func TestPrepareWithMakesMetricsAfterTheDefaults(t *testing.T) {
	nc := testenv.StartNATS(t).Conn(t)
	c := &cfg{}
	_, rate, err := PrepareWith("pacer", c, nc, nil, func() (int, error) { return c.Rate, nil })
	if err != nil || rate != 2 {
		t.Errorf("PrepareWith = %d, %v; want the metrics made from the defaulted config (2)", rate, err)
	}
	boom := errors.New("duplicate descriptor")
	if _, _, err := PrepareWith("pacer", &cfg{}, nc, nil, func() (int, error) { return 0, boom }); !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "pacer: metrics: ") {
		t.Errorf("failing metrics: %v", err)
	}
	called := false
	if _, _, err := PrepareWith("pacer", &cfg{Rate: -1}, nc, nil, func() (int, error) { called = true; return 0, nil }); err == nil || called {
		t.Errorf("an invalid config: err %v, metrics made: %v; want an error before any metrics", err, called)
	}
}
