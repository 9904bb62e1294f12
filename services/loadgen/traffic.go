package loadgen

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// finalPublishTimeout bounds the last progress report of a stopped traffic,
// which is published after the worker's context has ended.
const finalPublishTimeout = 3 * time.Second

// traffic is one experiment's worker: it waits until startTime + delay, sends
// requests at the plan's rate until ctx ends (the experiment completed or was
// deleted) or the traffic's end, and reports progress every interval.
// When Run's context has ended too, the process is shutting down, and no
// final report is sent, since a restarted loadgen carries on.
func (r *runner) traffic(ctx context.Context, exp *experiment.Experiment) {
	log := r.log.With("experiment", exp.Key(), "uid", exp.Metadata.UID)
	p := planFor(r.cfg, exp)
	if p.Rate <= 0 {
		log.Info("spec.load.rate is 0: no traffic from loadgen, real traffic only")
		return
	}
	start := *exp.Status.StartTime
	begin := start.Add(p.Delay)
	end := trafficEnd(exp, begin, p)
	now := time.Now()
	if !end.After(now) || !end.After(begin) {
		log.Info("traffic window already over", "begin", begin, "end", end)
		return
	}
	// After a restart only the remaining time is waited for, and the
	// timetable goes on from now: requests "owed" for the downtime are not
	// burst. Every instance numbers the slots from begin alike (share.go).
	first := firstSlot(begin, now, p.Rate)
	if !shared.SleepUntil(ctx, begin) {
		return
	}
	select {
	case <-r.joined: // r.group is set
	case <-ctx.Done():
		return
	}
	t0 := later(time.Now(), begin)
	index, sharing := r.share()
	log.Info("traffic started", "url", p.URL, "host", p.Host, "method", p.Method,
		"rate", p.Rate, "concurrency", p.Concurrency, "until", end, "share", index, "of", sharing)

	req, err := newRequester(p)
	if err != nil {
		log.Error("no traffic: the request cannot be built", "err", err)
		return
	}
	defer req.close()
	r.prom.active.Inc()
	defer r.prom.active.Dec()
	counts := newTally(windows{start: start, interval: exp.Interval(), total: exp.TotalIterations()}, p.Concurrency)
	// A loadgen that carries on after a restart (its own, or another
	// instance's) goes on from the totals the last one reported, so that
	// status.load counts the whole run; what was sent after that report is
	// not known (at most an interval of requests), and the latencies are the
	// new process's only. The achieved rate then covers the downtime too.
	// With other instances sharing the rate, only once alone (resumption).
	since := t0
	resume := resumption{last: exp.Status.Load, until: t0.Add(r.cfg.MemberTTL * 3 / 2), instance: r.cfg.Instance}
	goOn := func(now time.Time) {
		_, n := r.share()
		if last := resume.ready(n <= 1, now); last != nil {
			counts.resume(*last)
			since = begin
			log.Info("traffic resumed", "sentBefore", last.Sent)
		}
	}
	goOn(t0)
	if resume.last != nil {
		log.Info("traffic shared: it goes on from status.load only if the others go within 1½ TTL (leases of dead instances)",
			"share", index, "of", sharing)
	}
	cpu := r.cpuSince()
	type paced struct {
		n    int64
		last time.Time
	}
	fired := make(chan paced, 1)
	go func() {
		var d paced
		s := schedule{Start: begin, Rate: p.Rate, End: end, First: first}
		if r.group != nil {
			s.Share = r.group.Share
		}
		d.n, d.last = pace(ctx, s, p.Concurrency, sender{req, counts, r.prom, &r.sent}.send)
		fired <- d
	}()

	elapsed := func() time.Duration { return earlier(time.Now(), end).Sub(since) }
	ticker := time.NewTicker(exp.Interval())
	defer ticker.Stop()
	var n int
	for {
		select {
		case <-ticker.C:
			goOn(time.Now())
			n++
			lp := counts.progress(p.Rate, elapsed(), false, time.Now())
			lp.CPUPerRequestUs = cpu()
			r.publishLoad(ctx, log, exp, n, lp)
		case done := <-fired:
			if r.service.Err() != nil {
				return
			}
			goOn(time.Now())
			n++
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalPublishTimeout)
			// Requests sent late, after the end, took that long too.
			final := counts.progress(p.Rate, later(done.last, earlier(time.Now(), end)).Sub(since), true, time.Now())
			final.CPUPerRequestUs = cpu()
			r.publishLoad(pctx, log, exp, n, final)
			cancel()
			log.Info("traffic stopped", "sent", done.n, "succeeded", final.Succeeded, "failed", final.Failed,
				"achievedRate", final.AchievedRate, "p95Ms", final.P95Ms,
				"cpuPerRequestUs", final.CPUPerRequestUs)
			return
		}
	}
}

// sender sends one traffic's requests and records their outcomes.
type sender struct {
	req    *requester
	counts *tally
	prom   *promMetrics
	sent   *atomic.Int64 // every traffic's, for the CPU per request
}

// send is one request of worker w, due at due (pace's fire).
func (s sender) send(ctx context.Context, w int, due time.Time) {
	s.counts.dispatched(w)
	s.sent.Add(1)
	a, err := s.req.do(ctx, w)
	if err != nil && ctx.Err() != nil {
		// Cut short by the stop (the experiment ended): not a failure of
		// the target.
		s.counts.canceledByStop(w)
		s.prom.canceled()
		return
	}
	now := time.Now()
	lat, ok := now.Sub(due), err == nil && a.code >= 200 && a.code < 300
	s.counts.finished(w, lat, ok)
	if a.routed && a.code != 0 {
		s.counts.answered(w, now)
	}
	s.prom.request(lat.Seconds(), ok)
}

// trafficEnd is when the traffic stops by itself: after spec.load.duration,
// and in any case one interval after the experiment's last iteration, since
// no snapshot measures later traffic (if the judge is down and never marks
// the experiment Completed, the load still ends).
func trafficEnd(exp *experiment.Experiment, begin time.Time, p plan) time.Time {
	iv := exp.Interval()
	end := exp.Status.StartTime.Add(time.Duration(exp.TotalIterations())*iv + iv)
	if p.Duration > 0 {
		end = earlier(end, begin.Add(p.Duration))
	}
	return end
}

func (r *runner) publishLoad(ctx context.Context, log *slog.Logger, exp *experiment.Experiment, n int, lp *bus.LoadProgress) {
	ev := bus.NewEvent(bus.EventLoad, Name, exp, time.Now())
	_, sharing := r.share()
	lp.Instance, lp.Instances = r.cfg.Instance, int32(sharing)
	ev.Load = lp
	id := bus.MsgID(exp.Metadata.UID, bus.EventLoad, r.cfg.Instance, strconv.Itoa(n))
	if err := bus.Publish(ctx, r.js, ev, id); err != nil {
		log.Warn("publish load progress", "n", n, "err", err)
	}
}

// cpuSince returns the CPU this process has used per request this loadgen
// sent since now, in microseconds: the process's, so in the embedded stack
// the other services' CPU is in it, and with several traffics at once it is
// their average. 0 until a request was sent, or where the system does not
// tell.
func (r *runner) cpuSince() func() float64 {
	cpu0, ok := processCPU()
	sent0 := r.sent.Load()
	return func() float64 {
		cpu, _ := processCPU()
		n := r.sent.Load() - sent0
		if !ok || n <= 0 {
			return 0
		}
		return float64(cpu-cpu0) / float64(time.Microsecond) / float64(n)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
