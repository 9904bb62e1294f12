package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Store is the experiment state in the KV bucket. The judge is its only
// writer; the other services watch it.
type Store struct {
	KV jetstream.KeyValue
	// Conn is the connection KV goes through; with it, Watch ends when the
	// connection is re-established.
	Conn *nats.Conn
}

// Get returns an experiment and its revision, or shared.ErrNotFound. An
// entry that does not decode gives ErrUndecodable with its revision, so that
// it can still be deleted or replaced by compare-and-swap.
func (s *Store) Get(ctx context.Context, namespace, name string) (*experiment.Experiment, uint64, error) {
	entry, err := s.KV.Get(ctx, Key(namespace, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, fmt.Errorf("experiment %s/%s: %w", namespace, name, shared.ErrNotFound)
	}
	if err != nil {
		return nil, 0, err
	}
	e, err := decodeEntry(entry)
	if err != nil {
		return nil, entry.Revision(), err
	}
	return e, entry.Revision(), nil
}

// Create stores a new experiment; shared.ErrConflict if the key exists.
func (s *Store) Create(ctx context.Context, e *experiment.Experiment) (uint64, error) {
	data, err := Marshal(ContentTypeMsgpack, e)
	if err != nil {
		return 0, err
	}
	rev, err := s.KV.Create(ctx, Key(e.Metadata.Namespace, e.Metadata.Name), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("experiment %s: %w", e.Key(), shared.ErrConflict)
	}
	return rev, err
}

// Replace overwrites the experiment stored at revision rev (compare-and-swap).
func (s *Store) Replace(ctx context.Context, e *experiment.Experiment, rev uint64) (uint64, error) {
	data, err := Marshal(ContentTypeMsgpack, e)
	if err != nil {
		return 0, err
	}
	rev, err = s.KV.Update(ctx, Key(e.Metadata.Namespace, e.Metadata.Name), data, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("experiment %s changed concurrently: %w", e.Key(), shared.ErrConflict)
	}
	return rev, err
}

// ErrNoChange, returned by an Update function, leaves the stored value alone.
var ErrNoChange = errors.New("no change")

// Update reads the experiment, applies fn and writes it back with
// compare-and-swap, retrying when another writer got there first. fn may run
// more than once; returning ErrNoChange skips the write.
func (s *Store) Update(ctx context.Context, namespace, name string, fn func(*experiment.Experiment) error) (*experiment.Experiment, error) {
	for attempt := 0; ; attempt++ {
		e, rev, err := s.Get(ctx, namespace, name)
		if err != nil {
			return nil, err
		}
		if err := fn(e); err != nil {
			if errors.Is(err, ErrNoChange) {
				return e, nil
			}
			return nil, err
		}
		if _, err = s.Replace(ctx, e, rev); err == nil {
			return e, nil
		}
		if !errors.Is(err, shared.ErrConflict) || attempt >= 20 {
			return nil, err
		}
	}
}

// Delete removes an experiment; the watchers see the deletion.
func (s *Store) Delete(ctx context.Context, namespace, name string, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev > 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	err := s.KV.Delete(ctx, Key(namespace, name), opts...)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("experiment %s/%s changed concurrently: %w", namespace, name, shared.ErrConflict)
	}
	return err
}

// List returns every stored experiment. Entries that do not decode are left
// out, so one damaged entry does not hide every other experiment: the list is
// returned with an ErrUndecodable error naming them, which callers log.
func (s *Store) List(ctx context.Context) ([]*experiment.Experiment, error) {
	lister, err := s.KV.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	defer lister.Stop()
	var out []*experiment.Experiment
	var undecodable []error
	for key := range lister.Keys() {
		ns, name := SplitKey(key)
		e, _, err := s.Get(ctx, ns, name)
		switch {
		case errors.Is(err, shared.ErrNotFound):
			continue
		case errors.Is(err, ErrUndecodable):
			undecodable = append(undecodable, err)
			continue
		case err != nil:
			return nil, err
		}
		out = append(out, e)
	}
	return out, errors.Join(undecodable...)
}

// Change is one observed state of one key: Experiment is nil when the key was
// deleted.
type Change struct {
	Key        string
	Revision   uint64
	Experiment *experiment.Experiment
}

// Watch delivers the current state of every experiment, then every change,
// until ctx ends. Services that keep per-experiment work in memory (router,
// loadgen, collector) reconcile from it (shared/reconcile): after a restart
// the first values they see rebuild exactly the work they had. live, when
// not nil, is called once the current state has been delivered: from then
// on the watch follows every change.
//
// When the connection to NATS is re-established (Conn set), Watch returns
// ErrReconnected at once: a NATS restart lost the watch's consumer. Watch
// again, which delivers the current state again.
func (s *Store) Watch(ctx context.Context, fn func(Change), live func()) error {
	wctx := ctx
	if s.Conn != nil {
		var cancel context.CancelFunc
		wctx, cancel = UntilReconnect(ctx, s.Conn)
		defer cancel()
	}
	// ended is why the watch stopped once wctx ended: nil when ctx did.
	ended := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return nil
		case Reconnected(wctx):
			return ErrReconnected
		}
		return err
	}
	w, err := s.KV.WatchAll(wctx)
	if err != nil {
		return ended(err)
	}
	defer w.Stop()
	for {
		select {
		case <-wctx.Done():
			return ended(nil)
		case entry, ok := <-w.Updates():
			if !ok {
				return ended(errors.New("kv watcher closed"))
			}
			if entry == nil { // end of the initial values
				if live != nil && wctx.Err() == nil {
					live()
				}
				continue
			}
			c := Change{Key: entry.Key(), Revision: entry.Revision()}
			if entry.Operation() == jetstream.KeyValuePut {
				e, err := decodeEntry(entry)
				if err != nil {
					continue // not ours to judge; the judge wrote it
				}
				c.Experiment = e
			}
			fn(c)
		}
	}
}

// ErrUndecodable marks a state entry that is not an experiment: written by
// something other than the judge (nats kv put), or damaged.
var ErrUndecodable = errors.New("undecodable experiment state")

func decodeEntry(entry jetstream.KeyValueEntry) (*experiment.Experiment, error) {
	var e experiment.Experiment
	if err := Unmarshal(ContentTypeMsgpack, entry.Value(), &e); err != nil {
		return nil, fmt.Errorf("%w: key %s: %w", ErrUndecodable, entry.Key(), err)
	}
	return &e, nil
}
