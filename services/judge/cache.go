package judge

import (
	"sync"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// stateCache is the state this judge last read or wrote of each running
// experiment, with its revision, so that handling an event need not read
// the state back from the bucket (a round trip and a decode per event:
// the judge's partitions waited on them). It is only a guess: a write
// from it is a compare-and-swap on its revision, which fails if anyone
// (another judge, the API, the watchdog) wrote since, and commit then
// reads the bucket; and a step on it that changes nothing is stepped again
// on the bucket's state, since only a write checks the guess. Step never
// changes the experiment it is given (it clones it), so an entry is never
// changed in place either.
type stateCache struct {
	mu sync.Mutex
	m  map[bus.Ref]cachedState
}

type cachedState struct {
	exp *experiment.Experiment
	rev uint64
}

func newStateCache() *stateCache { return &stateCache{m: map[bus.Ref]cachedState{}} }

func (c *stateCache) get(ref bus.Ref) (cachedState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[ref]
	return e, ok
}

// put keeps exp at rev; an experiment that is gone or finished is dropped:
// no event moves it any more.
func (c *stateCache) put(ref bus.Ref, exp *experiment.Experiment, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp == nil || exp.Status.Terminal() {
		delete(c.m, ref)
		return
	}
	c.m[ref] = cachedState{exp: exp, rev: rev}
}

func (c *stateCache) drop(ref bus.Ref) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, ref)
}

// keepOnly drops the entries of experiments not in list (the bucket's
// experiments, as the watchdog reads them every pass): one deleted through
// another judge's API, or finished by another judge, is not kept for ever.
func (c *stateCache) keepOnly(list []*experiment.Experiment) {
	running := make(map[bus.Ref]bool, len(list))
	for _, e := range list {
		if !e.Status.Terminal() {
			running[bus.Ref{Namespace: e.Metadata.Namespace, Name: e.Metadata.Name}] = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for ref := range c.m {
		if !running[ref] {
			delete(c.m, ref)
		}
	}
}
