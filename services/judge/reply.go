package judge

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/micro"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// apiError is an error whose message is written for the API's user and
// which still matches a shared sentinel (ErrConflict, ErrNotFound) so that
// shared.APICode maps it to its code.
type apiError struct {
	msg  string
	kind error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.kind }

// notFound is the 404 for ref.
func notFound(ref bus.Ref) error {
	return &apiError{msg: fmt.Sprintf("experiment %s not found", ref), kind: shared.ErrNotFound}
}

// alreadyRunning is the 409 for a create of a name whose run has not ended.
func alreadyRunning(e *experiment.Experiment) error {
	return &apiError{
		msg:  fmt.Sprintf("experiment %s is already running (stage %s); delete it first", e.Key(), e.Status.Stage),
		kind: shared.ErrConflict,
	}
}

// createdConcurrently is the 409 for a create that raced another write.
func createdConcurrently(ref bus.Ref) error {
	return &apiError{
		msg:  fmt.Sprintf("experiment %s was created or changed concurrently; get it, or delete it first", ref),
		kind: shared.ErrConflict,
	}
}

// replyType picks a reply's encoding as docs/protocol.md says: the Accept
// header's, else the request's (its Content-Type, else what its payload
// looks like: YAML in, YAML out), else JSON. A bare "namespace/name" is text,
// not a YAML document, and gets JSON.
func replyType(req micro.Request) string {
	h := req.Headers()
	if ct := bus.NormalizeContentType(h.Get(bus.HeaderAccept)); ct != "" {
		return ct
	}
	if ct := bus.NormalizeContentType(h.Get(bus.HeaderContentType)); ct != "" {
		return ct
	}
	data := bytes.TrimSpace(req.Data())
	if len(data) == 0 {
		return bus.ContentTypeJSON
	}
	ct := bus.Sniff("", req.Data())
	if ct == bus.ContentTypeYAML && !bytes.ContainsRune(data, ':') {
		return bus.ContentTypeJSON
	}
	return ct
}

// replyable reports whether the judge answers a request on reply: an
// inbox, not one of darklaunch's subjects, a system one ($JS, $KV, $SRV)
// or a service's private inbox (bus.InboxPrefix); or none. On a server with
// darklaunch's roles, the API's connection may answer only in people's
// inboxes anyway (bus.RoleAPI); this keeps a judge that serves the API on
// its own connection (an open server, or users that are not darklaunch's
// roles) from writing its answer where a request aims it.
func replyable(reply string) bool {
	switch {
	case reply == "":
		return true // a publish: done, and not answered
	case strings.HasPrefix(reply, "$"), strings.HasPrefix(reply, "darklaunch."):
		return false
	}
	for _, role := range bus.Roles {
		if p := bus.InboxPrefix(role); p != "_INBOX" && strings.HasPrefix(reply, p+".") {
			return false
		}
	}
	return true
}

// replyHeadroom leaves room for a reply's headers under max_payload.
const replyHeadroom = 4 << 10

// reply answers req with v encoded as ct.
func (s *Service) reply(req micro.Request, ct string, v any) {
	data, err := bus.Marshal(ct, v)
	if err != nil {
		s.replyError(req, ct, err)
		return
	}
	// A reply over the server's max_payload would not be sent at all, and
	// the client would wait for its timeout: say why instead. Only a list of
	// many experiments gets there (one experiment is at most
	// experiment.MaxDocumentBytes plus its status).
	if max := s.nc.MaxPayload(); max > 0 && int64(len(data))+replyHeadroom > max {
		s.replyError(req, ct, fmt.Errorf("the reply is %d bytes, over the NATS server's max_payload of %d bytes: list one namespace at a time (%s), delete finished experiments, or raise max_payload",
			len(data), max, `{"namespace": "..."}`))
		return
	}
	if err := req.Respond(data, micro.WithHeaders(micro.Headers{bus.HeaderContentType: {ct}})); err != nil {
		s.log.Warn("reply", "subject", req.Subject(), "err", err)
	}
}

// replyError answers req with micro's error headers (the code, and the
// message on one line) and a bus.ErrorBody encoded as ct. The message quotes
// at most a prefix of the request (shortened), and an error reply that would
// still be over the server's max_payload goes without its body, its message
// clipped: the client gets an answer, not its timeout.
func (s *Service) replyError(req micro.Request, ct string, err error) {
	code := shared.APICode(err)
	if code == http.StatusInternalServerError {
		s.log.Error("request failed", "subject", req.Subject(), "err", err)
	}
	err = shortened(err)
	desc := bus.OneLine(err.Error())
	body, merr := bus.Marshal(ct, errorBody(code, err))
	if merr != nil {
		body = nil
	}
	if max := s.nc.MaxPayload(); max > 0 && int64(len(desc)+len(body))+replyHeadroom > max {
		desc, body = shared.Clip(desc, replyHeadroom/2), nil
	}
	if rerr := req.Error(strconv.Itoa(code), desc, body,
		micro.WithHeaders(micro.Headers{bus.HeaderContentType: {ct}})); rerr != nil {
		s.log.Warn("reply", "subject", req.Subject(), "err", errors.Join(err, rerr))
	}
}
