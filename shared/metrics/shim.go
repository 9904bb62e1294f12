// Package metrics is the old home of packages sketch and telemetry, kept
// only while the router and the judge move over; it goes with issue 6.
//
// Deprecated: use shared/sketch and shared/telemetry.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/shared/sketch"
	"github.com/darklaunch/darklaunch/shared/telemetry"
)

type (
	Sketch    = sketch.Sketch
	Recorder  = sketch.Recorder
	Aggregate = sketch.Aggregate
	Registrar = telemetry.Registrar
)

var (
	NewSketch    = sketch.NewSketch
	NewRecorder  = sketch.NewRecorder
	NewAggregate = sketch.NewAggregate
	DecodeSketch = sketch.DecodeSketch
)

func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	return telemetry.Register(reg, c)
}

func Add[C prometheus.Collector](r *Registrar, c C) C { return telemetry.Add(r, c) }
