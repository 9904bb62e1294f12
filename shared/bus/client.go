package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/retry"
)

// Client is a client of the experiments API (create, get, list, delete) and
// of the events stream (Follow). It does not own NC: the caller closes it.
type Client struct {
	NC *nats.Conn
	// Timeout bounds each API call. Default 10s.
	Timeout time.Duration
}

// Create submits a document (YAML, JSON or msgpack; sniffed) and returns the
// created experiment.
func (c *Client) Create(ctx context.Context, doc []byte) (*experiment.Experiment, error) {
	var e experiment.Experiment
	return &e, c.call(ctx, SubjectCreate, doc, &e)
}

// Get returns one experiment.
func (c *Client) Get(ctx context.Context, ref Ref) (*experiment.Experiment, error) {
	var e experiment.Experiment
	return &e, c.call(ctx, SubjectGet, []byte(ref.String()), &e)
}

// Delete removes an experiment (stopping it) and returns its last state.
func (c *Client) Delete(ctx context.Context, ref Ref) (*experiment.Experiment, error) {
	var e experiment.Experiment
	return &e, c.call(ctx, SubjectDelete, []byte(ref.String()), &e)
}

// List returns every experiment, or those of one namespace.
func (c *Client) List(ctx context.Context, namespace string) ([]*experiment.Experiment, error) {
	var req []byte
	if namespace != "" {
		var err error
		if req, err = Marshal(ContentTypeJSON, ListRequest{Namespace: namespace}); err != nil {
			return nil, err
		}
	}
	var l ExperimentList
	return l.Items, c.call(ctx, SubjectList, req, &l)
}

func (c *Client) call(ctx context.Context, subject string, payload []byte, out any) error {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m := nats.NewMsg(subject)
	m.Data = payload
	m.Header.Set(HeaderAccept, ContentTypeMsgpack)
	// A request the server refuses to forward (the user's role may not
	// publish on subject) would only time out: the refusal comes as an
	// asynchronous error. Watch for it, and say so at once.
	ctx, refused := refusals(ctx, c.NC, subject)
	// A judge that is (re)starting has no responder for a moment: retry
	// briefly before telling the user none is running.
	reply, err := retry.Value(ctx, retry.Policy{First: 50 * time.Millisecond, Max: 1600 * time.Millisecond, Within: 3200 * time.Millisecond}, func(ctx context.Context) (*nats.Msg, error) {
		reply, err := c.NC.RequestMsgWithContext(ctx, m)
		if err != nil && !errors.Is(err, nats.ErrNoResponders) {
			return nil, retry.Permanent(err)
		}
		return reply, err
	}, nil)
	if refused() {
		return fmt.Errorf("%w: the NATS server refused %s to this user: its role may not do that (see docs/protocol.md, darklaunch nats-config)", ErrNotPermitted, subject)
	}
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("no judge answers on %s: is the judge running? (darklaunch serve judge)", subject)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		n, _ := strconv.Atoi(code)
		apiErr := &APIError{Code: n, Description: reply.Header.Get(micro.ErrorHeader)}
		var body ErrorBody
		if len(reply.Data) > 0 && DecodeMsg(reply, &body) == nil && body.Error != "" {
			apiErr.Description = body.Error
		}
		return apiErr
	}
	return DecodeMsg(reply, out)
}

// ErrNotPermitted marks a request the NATS server refused to forward: the
// user's role lacks the permission.
var ErrNotPermitted = errors.New("not permitted")

// refusals returns a context that ends as soon as the server reports a
// permissions violation for publishing on subject, and a func that tells
// whether it did.
func refusals(ctx context.Context, nc *nats.Conn, subject string) (context.Context, func() bool) {
	before := nc.LastError()
	ctx, cancel := context.WithCancel(ctx)
	var seen atomic.Bool
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := nc.LastError(); err != nil && err != before && errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
				seen.Store(true)
				cancel()
				return
			}
		}
	}()
	return ctx, func() bool {
		cancel()
		return seen.Load()
	}
}
