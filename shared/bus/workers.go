package bus

import (
	"context"
	"sync"
)

// Workers runs at most one goroutine per experiment key, for one UID at a
// time: a service reconciling from Store.Watch calls Ensure for experiments
// that need work and Stop for those that do not.
type Workers struct {
	ctx context.Context
	mu  sync.Mutex
	m   map[string]*worker
	wg  sync.WaitGroup
}

type worker struct {
	uid    string
	cancel context.CancelFunc
	done   chan struct{}
}

// NewWorkers returns Workers whose goroutines end when ctx ends.
func NewWorkers(ctx context.Context) *Workers {
	return &Workers{ctx: ctx, m: map[string]*worker{}}
}

// Ensure starts fn for key unless a worker for the same uid is already there
// (running or finished); a worker for another uid (an older experiment of
// the same name) is stopped first. It reports whether fn was started.
func (w *Workers) Ensure(key, uid string, fn func(ctx context.Context)) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.m[key]; ok {
		if old.uid == uid {
			return false
		}
		old.cancel()
	}
	ctx, cancel := context.WithCancel(w.ctx)
	wk := &worker{uid: uid, cancel: cancel, done: make(chan struct{})}
	w.m[key] = wk
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(wk.done)
		fn(ctx)
	}()
	return true
}

// Stop cancels the worker for key and waits for it to return.
func (w *Workers) Stop(key string) {
	w.mu.Lock()
	wk, ok := w.m[key]
	delete(w.m, key)
	w.mu.Unlock()
	if ok {
		wk.cancel()
		<-wk.done
	}
}

// Has reports whether a worker for key and uid exists.
func (w *Workers) Has(key, uid string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	wk, ok := w.m[key]
	return ok && wk.uid == uid
}

// Wait waits for every worker to return; call it after ctx ended.
func (w *Workers) Wait() { w.wg.Wait() }
