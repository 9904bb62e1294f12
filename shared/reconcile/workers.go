package reconcile

import (
	"context"
	"sync"
)

// workers runs at most one goroutine per experiment key, for one UID at a
// time. Only the watch goroutine calls ensure and stop, so the map needs no
// lock.
type workers struct {
	ctx context.Context
	m   map[string]*worker
	wg  sync.WaitGroup
}

type worker struct {
	uid    string
	cancel context.CancelFunc
	done   chan struct{}
}

func newWorkers(ctx context.Context) *workers {
	return &workers{ctx: ctx, m: map[string]*worker{}}
}

// ensure starts fn for key unless a worker for the same uid is already there
// (running or finished); a worker for another uid (an older experiment of
// the same name) is stopped first.
func (w *workers) ensure(key, uid string, fn func(ctx context.Context)) {
	if old, ok := w.m[key]; ok {
		if old.uid == uid {
			return
		}
		w.stop(key)
	}
	ctx, cancel := context.WithCancel(w.ctx)
	wk := &worker{uid: uid, cancel: cancel, done: make(chan struct{})}
	w.m[key] = wk
	w.wg.Go(func() {
		defer close(wk.done)
		fn(ctx)
	})
}

// stop cancels the worker for key and waits for it to return.
func (w *workers) stop(key string) {
	if wk, ok := w.m[key]; ok {
		delete(w.m, key)
		wk.cancel()
		<-wk.done
	}
}

// wait waits for every worker to return; call it after ctx ended.
func (w *workers) wait() { w.wg.Wait() }
