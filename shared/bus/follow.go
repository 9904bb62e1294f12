package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// FollowOptions say what Client.Follow reports and how long it waits. The
// zero value follows the state until it is final and reports nothing.
type FollowOptions struct {
	// OnUpdate, if set, is called with the experiment Follow was given,
	// then with its state each time the stage, the number of completed
	// iterations or the status message changes.
	OnUpdate func(*experiment.Experiment)
	// OnEvent, if set, is called with every event of the experiment, from
	// its created event to the last one; see Follow for what "the last" is.
	OnEvent func(*Event)

	// PollInterval is how often the state is read from the API besides on
	// the events that change it, so that a missed event cannot stall
	// Follow. Default 3s.
	PollInterval time.Duration
	// FinalEventWait bounds, with OnEvent, how long Follow waits for the
	// completed or failed event once the stored state is final: the judge
	// publishes it right after storing that state. Default 5s.
	FinalEventWait time.Duration
	// QuietAfterEnd is, with OnEvent, how long the stream must stay quiet
	// after the completed or failed event: loadgen's final load report can
	// come after the judge's last event. Default 750ms.
	QuietAfterEnd time.Duration
}

func (o *FollowOptions) defaults() {
	if o.OnUpdate == nil {
		o.OnUpdate = func(*experiment.Experiment) {}
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 3 * time.Second
	}
	if o.FinalEventWait <= 0 {
		o.FinalEventWait = 5 * time.Second
	}
	if o.QuietAfterEnd <= 0 {
		o.QuietAfterEnd = 750 * time.Millisecond
	}
}

// Follow follows the experiment e (as Create or Get returned it) until it is
// Completed, and returns its final state.
//
// It reads e's events from the events stream with an ordered consumer, from
// e's creation on, and reads the state from the API on each event that can
// change it and every PollInterval besides. Events of an earlier or later
// run under the same name (another uid) are skipped.
//
// Without OnEvent, Follow returns as soon as the stored state is Completed:
// at once if e already is. With OnEvent, it follows the events to the end.
// The judge stores the final state before it publishes the verdict and the
// completed (or failed) event, so once the state is final Follow waits for
// that event, at most FinalEventWait, and then until the stream has been
// quiet for QuietAfterEnd, so that loadgen's final load report is passed on
// too. On an experiment that has already ended it replays every event so.
//
// Follow returns an error when the experiment is deleted, is replaced by a
// new run (another uid), or cannot be read from the API, and ctx.Err() when
// ctx ends first. OnUpdate and OnEvent are called on the caller's goroutine,
// one at a time, and never after Follow returns.
func (c *Client) Follow(ctx context.Context, e *experiment.Experiment, opts FollowOptions) (*experiment.Experiment, error) {
	opts.defaults()
	opts.OnUpdate(e)
	if e.Status.Terminal() && opts.OnEvent == nil {
		return e, nil
	}
	// Canceled on return, so that a delivery blocked on a full channel
	// gives up instead of outliving Follow.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ref := Ref{Namespace: e.Metadata.Namespace, Name: e.Metadata.Name}
	evs, stop, err := c.events(ctx, ref, e)
	if err != nil {
		return nil, err
	}
	defer stop()

	last := e
	refresh := func() (*experiment.Experiment, error) {
		cur, err := c.Get(ctx, ref)
		if err != nil {
			return nil, err
		}
		if cur.Metadata.UID != e.Metadata.UID {
			return nil, fmt.Errorf("experiment %s was replaced by a new run (uid %s)", ref, cur.Metadata.UID)
		}
		if cur.Status.Stage != last.Status.Stage || cur.Status.CompletedIterations != last.Status.CompletedIterations || cur.Status.Message != last.Status.Message {
			opts.OnUpdate(cur)
		}
		last = cur
		return cur, nil
	}
	tick := time.NewTicker(opts.PollInterval)
	defer tick.Stop()
	var (
		final *experiment.Experiment // set once the stored state is final (with OnEvent)
		ended bool                   // the completed or failed event was seen
		drain <-chan time.Time       // once final is set: when to return it
	)
	finish := func(cur *experiment.Experiment) {
		final = cur
		drain = time.After(opts.FinalEventWait)
		if ended {
			drain = time.After(opts.QuietAfterEnd)
		}
	}
	if e.Status.Terminal() {
		finish(e)
	}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-drain:
			return final, nil
		case <-tick.C:
		case ev := <-evs:
			if opts.OnEvent != nil {
				opts.OnEvent(ev)
			}
			if final != nil && ended {
				// Whatever comes after the end (loadgen's final report)
				// restarts the wait for a quiet stream.
				drain = time.After(opts.QuietAfterEnd)
				continue
			}
			switch ev.Type {
			case EventDeleted:
				return nil, fmt.Errorf("experiment %s was deleted", ref)
			case EventCompleted, EventFailed:
				ended = true
				if final != nil {
					drain = time.After(opts.QuietAfterEnd)
				}
			default:
				if final != nil {
					// Still replaying towards the end: the wait for the
					// last event counts from the latest one, however slow
					// OnEvent is.
					drain = time.After(opts.FinalEventWait)
				}
				if ev.Type == EventLoad || ev.Type == EventMetrics {
					continue // they do not change the stored state
				}
			}
		}
		if final != nil {
			continue
		}
		cur, err := refresh()
		if err != nil {
			return nil, err
		}
		if cur.Status.Terminal() {
			if opts.OnEvent == nil {
				return cur, nil
			}
			finish(cur)
		}
	}
}

// events delivers the events of e (by uid) from just before its creation on,
// until stop is called or ctx ends.
func (c *Client) events(ctx context.Context, ref Ref, e *experiment.Experiment) (_ <-chan *Event, stop func(), _ error) {
	js, err := jetstream.New(c.NC)
	if err != nil {
		return nil, nil, err
	}
	start := time.Now().Add(-time.Hour)
	if t := e.Metadata.CreationTimestamp; t != nil {
		// Stream times are the NATS server's clock, not the judge's:
		// allow for a little skew.
		start = t.Add(-time.Second)
	}
	cons, err := js.OrderedConsumer(ctx, StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{EventsFilter(ref.Namespace, ref.Name)},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("follow the events of %s: %w", ref, err)
	}
	evs := make(chan *Event, 64)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := DecodeEvent(m.Headers().Get(HeaderContentType), m.Data())
		if err != nil || ev.UID != e.Metadata.UID {
			return
		}
		select {
		case evs <- ev:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return evs, cc.Stop, nil
}
