package judge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// requestTimeout bounds the work of one API request; the client's own
// timeout (bus.Client: 10s) is of the same order.
const requestTimeout = 10 * time.Second

// The created event's publish and, when it fails, the undo of the write fit
// in the client's 10 s together.
const (
	createPublishBudget = 4 * time.Second
	createUndoBudget    = 3 * time.Second
)

// serve answers one API request: decode reads what it asks for (a
// document, a name, a list filter), do does it, and the reply is its result
// or the error, in the encoding replyType picks.
func serve[T, R any](s *Service, decode func(micro.Request) (T, error), do func(context.Context, T) (R, error)) func(context.Context, micro.Request) {
	return func(ctx context.Context, req micro.Request) {
		if !replyable(req.Reply()) {
			s.log.Warn("request dropped: its reply subject is not an inbox", "subject", req.Subject(), "reply", shared.Excerpt(req.Reply()))
			return
		}
		ct := replyType(req)
		arg, err := decode(req)
		if err != nil {
			s.replyError(req, ct, err)
			return
		}
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		out, err := do(ctx, arg)
		if err != nil {
			s.replyError(req, ct, err)
			return
		}
		s.reply(req, ct, out)
	}
}

// createRequest decodes a create request's document.
func (s *Service) createRequest(req micro.Request) (*experiment.Experiment, error) {
	return decodeDocument(req.Headers().Get(bus.HeaderContentType), req.Data(), s.cfg.MaxRequestBytes)
}

// refRequest decodes the name a get or delete request gives.
func refRequest(req micro.Request) (bus.Ref, error) {
	return bus.ParseRef(req.Headers().Get(bus.HeaderContentType), req.Data())
}

// listRequest decodes a list request's filter.
func listRequest(req micro.Request) (bus.ListRequest, error) {
	return bus.ParseListRequest(req.Headers().Get(bus.HeaderContentType), req.Data())
}

// create starts a new run of doc (Step: Create), stores it and announces
// it. On any error nothing is left behind: when the created event cannot be
// published, the write is undone, since the router would otherwise start on
// an experiment whose creator was told it failed.
func (s *Service) create(ctx context.Context, doc *experiment.Experiment) (*experiment.Experiment, error) {
	ref := bus.Ref{Namespace: doc.Metadata.Namespace, Name: doc.Metadata.Name}
	c, err := s.commit(ctx, ref, Create{Doc: doc, UID: nuid.Next()})
	if c.Err == nil && errors.Is(err, shared.ErrConflict) {
		return nil, createdConcurrently(ref)
	}
	if err != nil {
		return nil, err
	}
	// The publish retries until its context ends: give it part of the
	// request's time, and the undo a context of its own, so that a failed
	// publish is undone before the client stops waiting.
	pctx, pcancel := context.WithTimeout(ctx, createPublishBudget)
	err = s.publish(pctx, c.Out)
	pcancel()
	log := s.resultLog(ref, c)
	if err != nil {
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), createUndoBudget)
		defer ucancel()
		if uerr := s.restore(uctx, ref, c); uerr != nil {
			log.Error("undo create after a failed publish", "err", uerr)
		}
		return nil, fmt.Errorf("publish created event of %s: %w", ref, err)
	}
	s.record(log, c.Result)
	return c.Reply, nil
}

// resultLog is the logger for what a request did to ref.
func (s *Service) resultLog(ref bus.Ref, c committed) *slog.Logger {
	log := s.expLog(ref.Namespace, ref.Name)
	if c.damaged != nil {
		log = log.With("err", c.damaged)
	}
	return log
}

// get reads one experiment, with a 404 that names it.
func (s *Service) get(ctx context.Context, ref bus.Ref) (*experiment.Experiment, error) {
	e, _, err := s.store.Get(ctx, ref.Namespace, ref.Name)
	if errors.Is(err, shared.ErrNotFound) {
		return nil, notFound(ref)
	}
	if err != nil {
		return nil, fmt.Errorf("read experiment %s: %w", ref, err)
	}
	return e, nil
}

// list returns the experiments lr selects, sorted by namespace and name.
func (s *Service) list(ctx context.Context, lr bus.ListRequest) (*bus.ExperimentList, error) {
	all, err := s.store.List(ctx)
	switch {
	case errors.Is(err, bus.ErrUndecodable):
		s.log.Warn("list: state entries skipped", "err", err)
	case err != nil:
		return nil, fmt.Errorf("list experiments: %w", err)
	}
	list := &bus.ExperimentList{Items: []*experiment.Experiment{}}
	for _, e := range all {
		if lr.Namespace == "" || e.Metadata.Namespace == lr.Namespace {
			list.Items = append(list.Items, e)
		}
	}
	slices.SortFunc(list.Items, func(a, b *experiment.Experiment) int {
		return cmp.Or(cmp.Compare(a.Metadata.Namespace, b.Metadata.Namespace), cmp.Compare(a.Metadata.Name, b.Metadata.Name))
	})
	return list, nil
}

// delete removes an experiment (Step: Delete) and announces it with its
// last state.
func (s *Service) delete(ctx context.Context, ref bus.Ref) (*experiment.Experiment, error) {
	c, err := s.commit(ctx, ref, Delete{Ref: ref})
	if err != nil {
		return nil, err
	}
	if err := s.publish(ctx, c.Out); err != nil {
		return nil, fmt.Errorf("experiment %s was deleted, but its deleted event could not be published: %w", ref, err)
	}
	s.record(s.resultLog(ref, c), c.Result)
	return c.Reply, nil
}
