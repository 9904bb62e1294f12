package service

import (
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
)

// Readier is implemented by a built service that can say whether it is
// ready: `darklaunch serve`'s /readyz answers 503 with Ready's error, as it
// does while the NATS connection is down.
type Readier interface {
	Ready() error
}

// Readiness is a service's Ready: the things it sets up on its NATS
// connection (a watch, a consumer), each ready once it is set up on the
// connection as it is now. A reconnect makes every one not ready until it
// says it is set up again, so that /readyz never reports a watch that a
// NATS restart took away. The methods of a nil Readiness do nothing (Ready
// returns nil), for callers that need no readiness.
type Readiness struct {
	nc    *nats.Conn
	mu    sync.Mutex
	parts map[string]*part
	order []string
}

type part struct {
	live bool
	// reconnects is the connection's count of reconnects when it was
	// last set up.
	reconnects uint64
	err        error
}

// errStarting is why a part that was never set up is not ready.
var errStarting = errors.New("starting")

// NewReadiness tracks the named parts of a service on nc; none is ready yet.
func NewReadiness(nc *nats.Conn, parts ...string) *Readiness {
	r := &Readiness{nc: nc, parts: map[string]*part{}}
	for _, name := range parts {
		r.parts[name] = &part{err: errStarting}
		r.order = append(r.order, name)
	}
	return r
}

// Up says that the part is set up on the connection as it is now.
func (r *Readiness) Up(name string) {
	if r == nil {
		return
	}
	n := r.nc.Stats().Reconnects
	r.set(name, &part{live: true, reconnects: n})
}

// Down says that the part is not set up, because of err.
func (r *Readiness) Down(name string, err error) {
	if r == nil {
		return
	}
	if err == nil {
		err = errors.New("not set up")
	}
	r.set(name, &part{err: err})
}

func (r *Readiness) set(name string, p *part) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.parts[name]; !ok {
		r.order = append(r.order, name)
	}
	r.parts[name] = p
}

// Ready returns nil when the connection is up and every part is set up on
// it, else what is not.
func (r *Readiness) Ready() error {
	if r == nil {
		return nil
	}
	if st := r.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("NATS connection is %s", st)
	}
	n := r.nc.Stats().Reconnects
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range r.order {
		switch p := r.parts[name]; {
		case !p.live:
			return fmt.Errorf("%s: %w", name, p.err)
		case p.reconnects != n:
			return fmt.Errorf("%s: being set up again after a reconnect", name)
		}
	}
	return nil
}
