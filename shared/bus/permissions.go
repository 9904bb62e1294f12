package bus

import (
	"fmt"
	"slices"
	"strings"

	"github.com/darklaunch/darklaunch/shared/members"
)

// Roles on the bus: one per service, and two for people. Each connects as
// its own NATS user, whose permissions allow only what docs/protocol.md
// gives the role, so that no client can publish a fact it does not own
// (a metrics event is the collector's, a routing event the router's, the
// state the judge's).
const (
	RoleJudge     = "judge"
	RoleRouter    = "router"
	RoleLoadgen   = "loadgen"
	RoleCollector = "collector"
	// RoleOperator may create, get, list and delete experiments and read
	// the events and the state.
	RoleOperator = "operator"
	// RoleViewer may get and list experiments and read the events and the
	// state.
	RoleViewer = "viewer"
	// RoleAPI is the judge's second identity, on which it serves the
	// experiments API: it receives people's requests and may answer only
	// in people's inboxes. A request's reply subject is the requester's
	// to choose; answered on the judge's own connection, which may write
	// the state and publish verdicts, a request for `$SRV.PING` whose
	// reply subject is a state key would have the judge write its ping
	// answer there (nats-server's allow_responses cannot narrow where).
	RoleAPI = "api"
)

// Roles lists every role, the services' first.
var Roles = []string{RoleRouter, RoleLoadgen, RoleCollector, RoleJudge, RoleAPI, RoleOperator, RoleViewer}

// Permission is what one role may publish and subscribe to, in
// nats-server's terms.
type Permission struct {
	Publish   []string
	Subscribe []string
	// DenyPublish are exceptions to Publish.
	DenyPublish []string
}

// InboxPrefix is where a service's replies come back: a prefix of its own,
// so that no other client may read them (people share nats.go's default
// "_INBOX"). nats.go's JetStream calls reply there too.
func InboxPrefix(role string) string {
	if isService(role) {
		return "_INBOX_" + role
	}
	return "_INBOX"
}

func isService(role string) bool {
	return slices.Contains([]string{RoleJudge, RoleAPI, RoleRouter, RoleLoadgen, RoleCollector}, role)
}

// The streams' names as JetStream's API subjects know them.
var (
	kvStream      = "KV_" + BucketExperiments
	kvPrefix      = "$KV." + BucketExperiments
	membersStream = "KV_" + members.BucketMembers
	membersPrefix = "$KV." + members.BucketMembers
)

// api is a JetStream API subject.
func api(parts ...string) string { return "$JS.API." + strings.Join(parts, ".") }

// readStream is what reading a stream with an ordered or ephemeral
// consumer takes (a KV watch is one): looking the stream up, making and
// deleting the consumer, answering its flow control, and the direct gets
// of single messages (a KV get).
func readStream(stream string) []string {
	return []string{
		api("STREAM.INFO", stream),
		api("CONSUMER.CREATE", stream, ">"),
		api("CONSUMER.CREATE", stream),
		api("CONSUMER.DELETE", stream, ">"),
		api("CONSUMER.INFO", stream, ">"),
		api("CONSUMER.MSG.NEXT", stream, ">"),
		api("DIRECT.GET", stream, ">"),
		api("STREAM.MSG.GET", stream),
		"$JS.FC." + stream + ".>",
	}
}

// Permissions returns what role may do on the bus.
func Permissions(role string) (Permission, error) {
	var p Permission
	// Every role reads the state and finds the streams, and gets its
	// replies; the judge and people read the events too.
	p.Publish = append(readStream(kvStream), api("STREAM.INFO", StreamEvents), api("STREAM.INFO", StreamObs),
		// The account's JetStream limits and API level, which nats.go
		// asks for before some calls.
		api("INFO"))
	p.Subscribe = []string{InboxPrefix(role) + ".>"}
	// A service's instances divide their work by leases (shared/members):
	// each writes its own role's keys only; everyone may see who is there.
	p.Publish = append(p.Publish, readStream(membersStream)...)
	if isService(role) {
		p.Publish = append(p.Publish, membersPrefix+"."+role+".>")
	}
	readEvents := func() {
		p.Publish = append(p.Publish, readStream(StreamEvents)...)
	}
	// People's readers of the events must keep off the legacy judge's
	// durable consumer (a judge from before the partitions may still use
	// it): pulling from it would hold events back from that judge, and a
	// create naming it would change its configuration. The unnamed create
	// ($JS.API.CONSUMER.CREATE.<stream>) takes its name from the request's
	// body, where no subject permission can see it: people, whose nats.go
	// names every consumer in the subject, may not use it on the events.
	// The judge's queue (StreamJudge) they cannot read at all.
	judgeConsumer := []string{
		api("CONSUMER.MSG.NEXT", StreamEvents, legacyJudgeConsumer),
		api("CONSUMER.CREATE", StreamEvents),
		api("CONSUMER.CREATE", StreamEvents, legacyJudgeConsumer),
		api("CONSUMER.CREATE", StreamEvents, legacyJudgeConsumer, ">"),
		api("CONSUMER.DELETE", StreamEvents, legacyJudgeConsumer),
	}
	event := func(types ...string) {
		for _, t := range types {
			p.Publish = append(p.Publish, EventTypeFilter(t))
		}
	}
	switch role {
	case RoleJudge:
		// It owns the streams and the bucket: it creates them, writes the
		// state, publishes the lifecycle events and consumes what the
		// others publish from its queue, with the partitions' durable
		// consumers. It serves the API as RoleAPI, and receives no request
		// on this connection. It may look up and delete the legacy
		// consumer (ensureJudgeStream).
		readEvents()
		p.Publish = append(p.Publish, readStream(StreamJudge)...)
		for _, s := range []string{StreamEvents, StreamObs, kvStream, membersStream, StreamJudge} {
			p.Publish = append(p.Publish, api("STREAM.CREATE", s), api("STREAM.UPDATE", s))
		}
		p.Publish = append(p.Publish, kvPrefix+".>",
			api("CONSUMER.DURABLE.CREATE", StreamJudge, ">"),
			"$JS.ACK."+StreamJudge+".>")
		event(EventCreated, EventIteration, EventVerdict, EventCompleted, EventFailed, EventDeleted)
	case RoleAPI:
		// Only what micro needs: the requests, and answers in people's
		// inboxes. Nothing of the streams or the state.
		p.Publish = []string{InboxPrefix(RoleOperator) + ".>"}
		p.Subscribe = append(p.Subscribe, APIGroup+".>", "$SRV.>")
	case RoleRouter:
		event(EventRouting)
		p.Publish = append(p.Publish, ObsPrefix+".>")
	case RoleLoadgen:
		event(EventLoad)
	case RoleCollector:
		event(EventMetrics)
		// The last snapshot stored, where a clock taken over from another
		// collector resumes (a get of one message, no consumer).
		p.Publish = append(p.Publish, api("STREAM.MSG.GET", StreamEvents), api("DIRECT.GET", StreamEvents, ">"))
		p.Publish = append(p.Publish, readStream(StreamObs)...)
		p.Publish = append(p.Publish, api("STREAM.PURGE", StreamObs))
	case RoleOperator:
		readEvents()
		p.Publish = append(p.Publish, APIGroup+".>", "$SRV.>")
		p.Subscribe = append(p.Subscribe, EventsPrefix+".>")
		p.DenyPublish = judgeConsumer
	case RoleViewer:
		readEvents()
		p.Publish = append(p.Publish, SubjectGet, SubjectList, "$SRV.>")
		p.Subscribe = append(p.Subscribe, EventsPrefix+".>")
		p.DenyPublish = judgeConsumer
	default:
		return p, fmt.Errorf("unknown role %q (want one of %s)", role, strings.Join(Roles, ", "))
	}
	return p, nil
}
