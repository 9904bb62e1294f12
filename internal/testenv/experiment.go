package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nuid"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// RepoFile reads a file of the repository by its path from the root
// ("examples/mirroring/experiment.yaml"), whichever package's test asks.
func RepoFile(t testing.TB, path ...string) []byte {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(here), "..", "..")
	b, err := os.ReadFile(filepath.Join(append([]string{root}, path...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// SeedYAML is the seed tutorial's experiment.yaml, as users have it.
func SeedYAML(t testing.TB) []byte {
	t.Helper()
	return RepoFile(t, "examples", "mirroring", "experiment.yaml")
}

// Seed is the seed's experiment, parsed and defaulted.
func Seed(t testing.TB) *experiment.Experiment {
	t.Helper()
	e, err := experiment.Parse(SeedYAML(t))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Option changes an experiment being built.
type Option func(*experiment.Experiment)

// Experiment builds a minimal valid conformance experiment — default/exp,
// a fresh UID, target default/sample-app, baseline sample-app-v2, no
// objectives, Iter8's default duration — changed by opts, then defaulted.
// It is in no stage unless an option puts it in one.
func Experiment(opts ...Option) *experiment.Experiment {
	e := &experiment.Experiment{
		APIVersion: experiment.APIVersionV2Alpha1,
		Kind:       experiment.Kind,
		Metadata:   experiment.Metadata{Name: "exp", Namespace: experiment.DefaultNamespace, UID: nuid.Next()},
		Spec: experiment.Spec{
			Target:      "default/sample-app",
			Strategy:    experiment.Strategy{TestingPattern: "Conformance"},
			VersionInfo: &experiment.VersionInfo{Baseline: experiment.VersionDetail{Name: "sample-app-v2"}},
		},
	}
	for _, o := range opts {
		o(e)
	}
	e.Default()
	return e
}

// Named names the experiment (in namespace default).
func Named(name string) Option { return func(e *experiment.Experiment) { e.Metadata.Name = name } }

// Every sets the duration: iterations of interval seconds each.
func Every(intervalSeconds, iterations int32) Option {
	return func(e *experiment.Experiment) {
		e.Spec.Duration = &experiment.Duration{IntervalSeconds: &intervalSeconds, IterationsPerLoop: &iterations}
	}
}

// Running puts the experiment at stage Running since start.
func Running(start time.Time) Option {
	return func(e *experiment.Experiment) {
		e.Status.Stage = experiment.StageRunning
		e.Status.StartTime = &start
	}
}

// Mirroring sets spec.mirroring.
func Mirroring(m experiment.Mirroring) Option {
	return func(e *experiment.Experiment) { e.Spec.Mirroring = &m }
}

// Load sets spec.load.
func Load(l *experiment.Load) Option { return func(e *experiment.Experiment) { e.Spec.Load = l } }
