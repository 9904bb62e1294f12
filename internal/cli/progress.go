package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/darklaunch/darklaunch/internal/report"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// progress shows an experiment's progress: one line per update like
// `kubectl get experiment --watch`, or, on a terminal, a bar redrawn in place.
type progress struct {
	w      io.Writer
	bar    bool
	header bool
	last   string
	format *report.WatchFormat
}

func newProgress(w io.Writer, allowBar bool) *progress {
	bar := false
	if f, ok := w.(*os.File); ok && allowBar {
		bar = term.IsTerminal(int(f.Fd()))
	}
	return &progress{w: w, bar: bar}
}

func (p *progress) update(e *experiment.Experiment) {
	if p.format == nil {
		f := report.NewWatchFormat(e)
		p.format = &f
	}
	line := p.format.Line(e)
	if line == p.last {
		return
	}
	p.last = line
	if p.bar {
		total := e.TotalIterations()
		done := int(e.Status.CompletedIterations)
		const width = 28
		filled := 0
		if total > 0 {
			filled = done * width / int(total)
		}
		bar := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
		fmt.Fprintf(p.w, "\r\x1b[K%s %s %d/%d  %-12s %s", e.Metadata.Name, bar, done, total, e.Status.Stage, e.Status.Message)
		return
	}
	if !p.header {
		fmt.Fprintln(p.w, p.format.Header())
		p.header = true
	}
	fmt.Fprintln(p.w, line)
}

// done ends the bar's line.
func (p *progress) done() {
	if p.bar && p.last != "" {
		fmt.Fprintln(p.w)
	}
}
