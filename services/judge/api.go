package judge

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
	"k8s.io/apimachinery/pkg/util/validation"

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

func (s *Service) handleCreate(ctx context.Context, req micro.Request) {
	ct := replyType(req)
	e, err := decodeDocument(req.Headers().Get(bus.HeaderContentType), req.Data(), s.cfg.MaxRequestBytes)
	if err != nil {
		s.replyError(req, ct, err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if err := s.create(ctx, e); err != nil {
		s.replyError(req, ct, err)
		return
	}
	s.reply(req, ct, e)
}

// create starts a new run of e: a new UID, stage Initializing, stored and
// announced. A name whose last run completed is replaced; one still running
// is a conflict. On any error nothing is left behind.
func (s *Service) create(ctx context.Context, e *experiment.Experiment) error {
	now := s.now()
	md := &e.Metadata
	md.UID = nuid.Next()
	md.CreationTimestamp = &now
	md.Generation = 1
	md.ResourceVersion = ""
	e.Status = experiment.Status{
		Stage:    experiment.StageInitializing,
		InitTime: &now,
		Message:  experiment.ReasonExperimentInitialized + ": Started initialization",
	}
	st := &e.Status
	st.SetCondition(experiment.ConditionCompleted, "False", experiment.ReasonExperimentInitialized, "Experiment initialized", now)
	st.SetCondition(experiment.ConditionFailed, "False", experiment.ReasonExperimentInitialized, "Experiment initialized", now)
	st.SetCondition(experiment.ConditionTargetAcquired, "Unknown", experiment.ReasonExperimentInitialized, "Waiting for the router to set up mirroring", now)

	old, rev, err := s.store.Get(ctx, md.Namespace, md.Name)
	switch {
	case errors.Is(err, shared.ErrNotFound):
		old = nil
		rev, err = s.store.Create(ctx, e)
	case errors.Is(err, bus.ErrUndecodable):
		// A damaged entry is no run: take its key, by compare-and-swap. If
		// the publish below fails, the undo deletes the key (old is nil).
		s.expLog(md.Namespace, md.Name).Warn("damaged state entry replaced by a new run", "err", err)
		old = nil
		rev, err = s.store.Replace(ctx, e, rev)
	case err != nil:
		return fmt.Errorf("read experiment %s: %w", e.Key(), err)
	case !old.Status.Terminal():
		return &apiError{
			msg:  fmt.Sprintf("experiment %s is already running (stage %s); delete it first", e.Key(), old.Status.Stage),
			kind: shared.ErrConflict,
		}
	default:
		// The last run of this name is over: the new run takes its key. The
		// compare-and-swap keeps a concurrent create from being overwritten.
		rev, err = s.store.Replace(ctx, e, rev)
	}
	if errors.Is(err, shared.ErrConflict) {
		return &apiError{
			msg:  fmt.Sprintf("experiment %s was created or changed concurrently; get it, or delete it first", e.Key()),
			kind: shared.ErrConflict,
		}
	}
	if err != nil {
		return fmt.Errorf("store experiment %s: %w", e.Key(), err)
	}

	ev := bus.NewEvent(bus.EventCreated, source, e, now)
	ev.Message = st.Message
	ev.Experiment = e
	// The publish retries until its context ends: give it part of the
	// request's time, and the undo a context of its own, so that a failed
	// publish is undone before the client stops waiting.
	pctx, pcancel := context.WithTimeout(ctx, createPublishBudget)
	err = bus.Publish(pctx, s.js, ev, bus.MsgID(md.UID, bus.EventCreated))
	pcancel()
	if err != nil {
		// Undo the write: the router would otherwise start on an experiment
		// whose creator was told it failed.
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), createUndoBudget)
		defer ucancel()
		var uerr error
		if old != nil {
			_, uerr = s.store.Replace(uctx, old, rev)
		} else {
			uerr = s.store.Delete(uctx, md.Namespace, md.Name, rev)
		}
		if uerr != nil {
			s.expLog(md.Namespace, md.Name).Error("undo create after a failed publish", "err", uerr)
		}
		return fmt.Errorf("publish created event of %s: %w", e.Key(), err)
	}
	s.prom.created.Inc()
	s.expLog(md.Namespace, md.Name).Info("experiment created", "uid", md.UID)
	return nil
}

func (s *Service) handleGet(ctx context.Context, req micro.Request) {
	ct := replyType(req)
	ref, err := bus.ParseRef(req.Headers().Get(bus.HeaderContentType), req.Data())
	if err != nil {
		s.replyError(req, ct, err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	e, _, err := s.get(ctx, ref)
	if err != nil {
		s.replyError(req, ct, err)
		return
	}
	s.reply(req, ct, e)
}

// get reads one experiment, with a 404 that names it.
func (s *Service) get(ctx context.Context, ref bus.Ref) (*experiment.Experiment, uint64, error) {
	e, rev, err := s.store.Get(ctx, ref.Namespace, ref.Name)
	if errors.Is(err, shared.ErrNotFound) {
		return nil, 0, &apiError{msg: fmt.Sprintf("experiment %s not found", ref), kind: shared.ErrNotFound}
	}
	if err != nil {
		return nil, rev, fmt.Errorf("read experiment %s: %w", ref, err)
	}
	return e, rev, nil
}

func (s *Service) handleList(ctx context.Context, req micro.Request) {
	ct := replyType(req)
	var lr bus.ListRequest
	if data := bytes.TrimSpace(req.Data()); len(data) > 0 {
		reqCT := bus.Sniff(req.Headers().Get(bus.HeaderContentType), data)
		if reqCT == bus.ContentTypeYAML && !bytes.ContainsRune(data, ':') {
			// A bare namespace, as people type it.
			lr.Namespace = strings.Trim(string(data), `"'`)
		} else if err := bus.Unmarshal(reqCT, data, &lr); err != nil {
			s.replyError(req, ct, fmt.Errorf(`%w: list request: want empty or {"namespace": ...}: %v`, shared.ErrInvalid, err))
			return
		}
	}
	if lr.Namespace != "" {
		if msgs := validation.IsDNS1123Label(lr.Namespace); len(msgs) > 0 {
			s.replyError(req, ct, fmt.Errorf("%w: list request: namespace %q: %s", shared.ErrInvalid, lr.Namespace, strings.Join(msgs, "; ")))
			return
		}
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	all, err := s.store.List(ctx)
	switch {
	case errors.Is(err, bus.ErrUndecodable):
		s.log.Warn("list: state entries skipped", "err", err)
	case err != nil:
		s.replyError(req, ct, fmt.Errorf("list experiments: %w", err))
		return
	}
	list := bus.ExperimentList{Items: []*experiment.Experiment{}}
	for _, e := range all {
		if lr.Namespace == "" || e.Metadata.Namespace == lr.Namespace {
			list.Items = append(list.Items, e)
		}
	}
	slices.SortFunc(list.Items, func(a, b *experiment.Experiment) int {
		return cmp.Or(cmp.Compare(a.Metadata.Namespace, b.Metadata.Namespace), cmp.Compare(a.Metadata.Name, b.Metadata.Name))
	})
	s.reply(req, ct, list)
}

func (s *Service) handleDelete(ctx context.Context, req micro.Request) {
	ct := replyType(req)
	ref, err := bus.ParseRef(req.Headers().Get(bus.HeaderContentType), req.Data())
	if err != nil {
		s.replyError(req, ct, err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	e, err := s.delete(ctx, ref)
	if err != nil {
		s.replyError(req, ct, err)
		return
	}
	s.reply(req, ct, e)
}

// delete removes an experiment and announces it with its last state. The
// router, loadgen and collector see the key go and stop their work.
func (s *Service) delete(ctx context.Context, ref bus.Ref) (*experiment.Experiment, error) {
	for attempt := 0; ; attempt++ {
		e, rev, err := s.get(ctx, ref)
		if errors.Is(err, bus.ErrUndecodable) {
			return s.deleteDamaged(ctx, ref, rev, err)
		}
		if err != nil {
			return nil, err
		}
		// The revision makes the delete miss if the judge updated the state
		// in between; read again so the event carries the last state.
		err = s.store.Delete(ctx, ref.Namespace, ref.Name, rev)
		if errors.Is(err, shared.ErrConflict) && attempt < 10 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("delete experiment %s: %w", ref, err)
		}
		ev := bus.NewEvent(bus.EventDeleted, source, e, s.now())
		ev.Message = experiment.ReasonExperimentDeleted + ": Experiment deleted"
		ev.Experiment = e
		if err := bus.Publish(ctx, s.js, ev, bus.MsgID(e.Metadata.UID, bus.EventDeleted)); err != nil {
			return nil, fmt.Errorf("experiment %s was deleted, but its deleted event could not be published: %w", ref, err)
		}
		s.expLog(ref.Namespace, ref.Name).Info("experiment deleted", "uid", e.Metadata.UID)
		return e, nil
	}
}

// deleteDamaged removes a state entry that does not decode (written by
// something other than the judge), at the revision it was read. There is no
// last state to reply with or announce: the reply carries the name only, and
// the deleted event says what was removed.
func (s *Service) deleteDamaged(ctx context.Context, ref bus.Ref, rev uint64, cause error) (*experiment.Experiment, error) {
	if err := s.store.Delete(ctx, ref.Namespace, ref.Name, rev); err != nil {
		return nil, fmt.Errorf("delete damaged experiment %s: %w", ref, err)
	}
	e := &experiment.Experiment{
		APIVersion: experiment.APIVersionV2Alpha1,
		Kind:       experiment.Kind,
		Metadata:   experiment.Metadata{Name: ref.Name, Namespace: ref.Namespace},
	}
	ev := bus.NewEvent(bus.EventDeleted, source, e, s.now())
	ev.Message = experiment.ReasonExperimentDeleted + ": damaged state entry deleted"
	if err := bus.Publish(ctx, s.js, ev, bus.MsgID("damaged", ref.Namespace, ref.Name, strconv.FormatUint(rev, 10), bus.EventDeleted)); err != nil {
		return nil, fmt.Errorf("damaged experiment %s was deleted, but its deleted event could not be published: %w", ref, err)
	}
	s.expLog(ref.Namespace, ref.Name).Warn("damaged state entry deleted", "revision", rev, "err", cause)
	return e, nil
}
