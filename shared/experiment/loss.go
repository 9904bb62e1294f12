package experiment

import (
	"fmt"
	"slices"
	"strings"
)

// WindowCount is a count of requests in the window of an iteration: from
// the experiment's start to the end of iteration Iteration.
type WindowCount struct {
	Iteration int32 `json:"iteration"`
	Requests  int64 `json:"requests"`
}

// ObservationLoss says which observations of the versions never reached
// the collector (local mode, where the router's proxy observes). The
// collector finds what the routers' numbered batches show: gaps in a
// router's numbering (Batches) and routers that stopped without their last
// flush (Stopped: a crash, whose unflushed requests are gone). The judge
// adds the estimate in requests from loadgen's counts: Answered, the
// requests loadgen had an answer to by the end of iteration Iteration,
// minus Counted, the live request-count of that iteration.
type ObservationLoss struct {
	// Requests estimates the live requests served but not counted by the
	// end of iteration Iteration: Answered − Counted, when positive. Other
	// traffic through the proxy than loadgen's hides a loss from it.
	Requests  int64 `json:"requests,omitempty"`
	Iteration int32 `json:"iteration,omitempty"`
	Answered  int64 `json:"answered,omitempty"`
	Counted   int64 `json:"counted,omitempty"`
	// Batches counts the observation batches missing from the routers'
	// numbering.
	Batches int64 `json:"batches,omitempty"`
	// Stopped names the router instances whose observations stopped
	// without their last flush while a later one's went on.
	Stopped []string `json:"stopped,omitempty"`
}

// Lost reports whether l says anything was lost.
func (l *ObservationLoss) Lost() bool {
	return l != nil && (l.Requests > 0 || l.Batches > 0 || len(l.Stopped) > 0)
}

// Merge adds what the collector found (Batches, Stopped) to l: it only
// grows, since a snapshot's view is cumulative and a restarted collector's
// starts again from what is still stored.
func (l *ObservationLoss) Merge(found *ObservationLoss) {
	if found == nil {
		return
	}
	l.Batches = max(l.Batches, found.Batches)
	for _, r := range found.Stopped {
		if !slices.Contains(l.Stopped, r) {
			l.Stopped = append(l.Stopped, r)
		}
	}
	slices.Sort(l.Stopped)
}

// String says in one line what was lost ("" when nothing was):
// "observations lost: ~29 live requests by iteration 5 (loadgen had 507
// answered, 478 counted); router r-abc stopped without its last flush".
func (l *ObservationLoss) String() string {
	if !l.Lost() {
		return ""
	}
	var parts []string
	if l.Requests > 0 {
		parts = append(parts, fmt.Sprintf("~%d live %s by iteration %d (loadgen had %d answered, %d counted)",
			l.Requests, plural(l.Requests, "request", "requests"), l.Iteration, l.Answered, l.Counted))
	}
	if n := len(l.Stopped); n > 0 {
		parts = append(parts, fmt.Sprintf("%s %s stopped without %s last flush",
			plural(int64(n), "router", "routers"), strings.Join(l.Stopped, ", "), plural(int64(n), "its", "their")))
	}
	if l.Batches > 0 {
		parts = append(parts, fmt.Sprintf("%d observation %s missing", l.Batches, plural(l.Batches, "batch", "batches")))
	}
	switch {
	case l.Requests > 0:
	case l.Iteration > 0:
		parts = append(parts, fmt.Sprintf("loadgen's counts show no request missing by iteration %d", l.Iteration))
	default:
		parts = append(parts, "how many requests is unknown (no loadgen counts)")
	}
	return "observations lost: " + strings.Join(parts, "; ")
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
