// Package telemetry is what darklaunch's services export about themselves to
// Prometheus: registering each service's collectors once, even when the
// services of one process share a registry.
package telemetry

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns it, or returns the collector
// already registered under the same descriptor: the services embedded in one
// process (darklaunch run, dev) may share a registry, and two routers
// register the same counters.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
		return c, fmt.Errorf("register: a collector of another type is registered as %T: %w", are.ExistingCollector, err)
	}
	return c, err
}

// Registrar registers a service's collectors one after the other and keeps
// the first error, so a constructor can build its metrics in one literal:
//
//	r := &metrics.Registrar{Reg: reg}
//	m := &promMetrics{requests: metrics.Add(r, prometheus.NewCounterVec(...))}
//	return m, r.Err
type Registrar struct {
	Reg prometheus.Registerer
	Err error
}

// Add registers c with r (see Register); after an error it does nothing.
func Add[C prometheus.Collector](r *Registrar, c C) C {
	if r.Err != nil {
		return c
	}
	c, r.Err = Register(r.Reg, c)
	return c
}
