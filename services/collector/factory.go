package collector

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/darklaunch/darklaunch/shared/bus"
)

// Source names.
const (
	// SourceBus measures the observations the router's proxy publishes.
	SourceBus = "bus"
	// SourcePrometheus queries Prometheus for Istio's or Knative's metrics.
	SourcePrometheus = "prometheus"
)

// SourceNames lists the sources New accepts.
var SourceNames = []string{SourceBus, SourcePrometheus}

// newSource returns the source cfg.Source names. An unknown name is an
// error, never a silent fallback: a typo must not measure something else.
func newSource(cfg Config, infra *bus.Infra, log *slog.Logger) (Source, error) {
	switch cfg.Source {
	case SourceBus:
		return &BusSource{Stream: infra.Obs, CatchUp: cfg.CatchUp, Log: log}, nil
	case SourcePrometheus:
		return NewPrometheusSource(cfg.PrometheusURL, cfg.Metrics, cfg.QueryTimeout, log)
	}
	return nil, unknownSource(cfg.Source)
}

func unknownSource(name string) error {
	return fmt.Errorf("%w %q (known: %s)", ErrUnknownSource, name, strings.Join(SourceNames, ", "))
}
