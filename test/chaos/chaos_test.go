//go:build unix

// Package chaos runs the released binaries as an operator does — a
// standalone nats-server with JetStream and the four `darklaunch serve`
// processes — and kills one of them with SIGKILL at a random iteration of
// a running experiment, starts it again, and checks that the experiment
// still ends with all its iterations and the right verdict, and what was
// lost. One trial per victim runs with the other tests; `go tool task
// chaos` runs DARKLAUNCH_CHAOS_TRIALS per victim and prints the table.
package chaos

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// victims are what a trial kills, in the table's order.
var victims = []string{router, loadgen, collector, judge, natsName}

// maxLost bounds the observations a trial may lose when the victim is not
// the router. No stage keeps observations only in memory but the router's
// proxy, so a trial loses none: the bound allows for a request in flight
// through the proxy at the moment loadgen dies, which reached live but
// whose client was gone before its answer.
const maxLost = 2

// TestChaos kills each service and nats-server in turn (one trial each;
// DARKLAUNCH_CHAOS_TRIALS=N for N each) and prints the table of trials,
// outcomes and losses. DARKLAUNCH_CHAOS_SEED changes every trial's seed;
// DARKLAUNCH_CHAOS_LOGS=DIR keeps every process's log there, one folder per
// trial.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the chaos trials build the binaries and run 5 experiments of about 12 s each on real processes")
	}
	trials := envInt(t, "DARKLAUNCH_CHAOS_TRIALS", 1)
	base := envInt(t, "DARKLAUNCH_CHAOS_SEED", 0)
	bin := build(t, t.TempDir())

	var results []*result
	defer func() { printTable(os.Stdout, results) }()
	for n := 1; n <= trials; n++ {
		for i, victim := range victims {
			res := &result{plan: newPlan(n, victim, uint64(base+100*n+i+1))}
			t.Run(fmt.Sprintf("%s/%d", victim, n), func(t *testing.T) {
				results = append(results, res) // only the trials -run selects
				runTrial(t, bin, res)
				check(t, res)
			})
		}
	}
}

// check asserts what every trial must show.
func check(t *testing.T, r *result) {
	t.Helper()
	if !r.killed {
		t.Errorf("%s was never killed: the experiment ended, or never ran, before iteration %d", r.victim, r.killAt)
	}
	if !r.completed {
		t.Errorf("outcome %s, want Completed", r.outcome)
	}
	if r.iterations != iterations || r.iterationEvents != iterations {
		t.Errorf("%d iterations completed, %d iteration events; want %d of each", r.iterations, r.iterationEvents, iterations)
	}
	if r.verdict != "PASS" || r.verdicts != 1 {
		t.Errorf("verdict %s (%d verdict events), want one PASS", r.verdict, r.verdicts)
	}
	for _, c := range r.crashes {
		t.Errorf("crash in a log: %s", c)
	}
	if r.live == 0 || r.counted <= 0 {
		t.Errorf("%d requests reached live, %d counted: no traffic measured", r.live, r.counted)
	}
	if r.victim != router {
		if l := r.lost(); l > maxLost || l < -maxLost {
			t.Errorf("%d of loadgen's requests reached live, %d counted: %d lost, want at most %d when the %s is killed", r.live, r.counted, l, maxLost, r.victim)
		}
		if r.reported.Lost() {
			t.Errorf("the verdict says %q, but the %s cannot lose observations", r.reported, r.victim)
		}
	}
	if r.victim == router && r.killed {
		// The killed router's series has no Final batch and the restarted
		// one's goes on: the verdict must say so, and its estimate must be
		// near the truth (loadgen's window may end an iteration before the
		// last, and requests at a window's edge fall either side).
		switch l := r.reported; {
		case !l.Lost() || len(l.Stopped) == 0:
			t.Errorf("the router was killed, %d observations lost, and the verdict says nothing of it (loss %+v)", r.lost(), l)
		case abs(l.Requests-r.lost()) > max(maxLost+2, r.lost()/5):
			t.Errorf("the verdict estimates %d requests lost, the truth is %d", l.Requests, r.lost())
		}
	}
	t.Logf("%s: %s, %d iterations, %s; sent %d, reached live %d, counted %d, lost %d; ready again %v after the kill; latest iteration %v late",
		r.victim, r.outcome, r.iterations, r.verdict, r.sent, r.live, r.counted, r.lost(), r.recovery.Round(time.Millisecond), r.late.Round(time.Millisecond))
}

// printTable writes one row per trial, as a Markdown table.
func printTable(w io.Writer, results []*result) {
	if len(results) == 0 {
		return
	}
	rows := [][]string{{"trial", "victim", "seed", "killed at", "pause", "outcome", "iterations", "verdict", "sent", "reached live", "counted", "lost", "reported lost", "recovery", "latest iteration late"}}
	for _, r := range results {
		killed := fmt.Sprintf("it %d + %v", r.killAt, r.offset) // offset into iteration killAt
		if !r.killed {
			killed = "not killed"
		}
		outcome := r.outcome
		if len(outcome) > 60 {
			outcome = outcome[:60] + "…"
		}
		counted := strconv.FormatInt(r.counted, 10)
		if r.counted < 0 {
			counted = "-"
		}
		rows = append(rows, []string{
			strconv.Itoa(r.n), r.victim, strconv.FormatUint(r.seed, 10), killed, r.pause.String(), outcome,
			fmt.Sprintf("%d/%d", r.iterations, iterations), r.verdict,
			strconv.FormatInt(r.sent, 10), strconv.FormatInt(r.live, 10), counted, strconv.FormatInt(r.lost(), 10), reported(r.reported),
			r.recovery.Round(10 * time.Millisecond).String(), r.late.Round(10 * time.Millisecond).String(),
		})
	}
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			fmt.Fprintf(&b, "| %s%s ", c, strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)))
		}
		fmt.Fprintln(w, b.String()+"|")
	}
	fmt.Fprintf(w, "\nchaos: %d iterations of 1 s, loadgen at %d req/s for %v, kill -9 at a random moment of a random iteration, started again after a pause\n\n", iterations, rate, loadFor)
	line(rows[0])
	sep := make([]string, len(widths))
	for i, n := range widths {
		sep[i] = strings.Repeat("-", n)
	}
	line(sep)
	for _, row := range rows[1:] {
		line(row)
	}
	fmt.Fprintln(w, `
killed at: the iteration, by the clock, and how far into it. sent: status.load.sent, loadgen's
count as the report shows it. reached live: loadgen's requests that reached the live version.
counted: the live version's request-count at the last iteration. lost: reached live - counted.
reported lost: what the verdict says was lost (~requests by the iteration it could tell; "stopped":
a router ended without its last flush).
recovery: from the kill until the victim is ready again (/readyz; for nats-server, every service
too), pause included. latest iteration late: how far the latest iteration came after its
schedule (startTime + k·interval + the collector's grace).`)
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a whole number, 0 or more", name, v)
	}
	return n
}

// reported is the table's cell for what the verdict says was lost.
func reported(l *experiment.ObservationLoss) string {
	if !l.Lost() {
		return "-"
	}
	s := fmt.Sprintf("~%d by it %d", l.Requests, l.Iteration)
	if len(l.Stopped) > 0 {
		s += ", stopped"
	}
	return s
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
