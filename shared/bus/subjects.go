// Package bus is darklaunch's contract on NATS: subject names, the codec
// (msgpack between services, YAML/JSON from people), the messages, the
// JetStream stream and KV definitions, connection and embedded-server helpers.
// Every service uses it; no service talks to another any other way.
package bus

import "strings"

// The experiments API (a nats.go micro service).
const (
	ServiceName    = "darklaunch"
	APIGroup       = "darklaunch.experiments"
	SubjectCreate  = APIGroup + ".create"
	SubjectGet     = APIGroup + ".get"
	SubjectList    = APIGroup + ".list"
	SubjectDelete  = APIGroup + ".delete"
	EndpointCreate = "create"
	EndpointGet    = "get"
	EndpointList   = "list"
	EndpointDelete = "delete"
)

// Streams, subjects and the state bucket.
const (
	// StreamEvents holds the lifecycle events: darklaunch.events.<ns>.<name>.<type>.
	StreamEvents = "DARKLAUNCH_EVENTS"
	EventsPrefix = "darklaunch.events"
	// StreamObs holds the proxy's aggregated observations: darklaunch.obs.<ns>.<name>.<uid>.
	StreamObs = "DARKLAUNCH_OBS"
	ObsPrefix = "darklaunch.obs"
	// BucketExperiments is the KV bucket of experiment state, key <ns>.<name>.
	BucketExperiments = "darklaunch-experiments"
)

// Event types: the last token of an event subject.
const (
	EventCreated   = "created"
	EventRouting   = "routing"
	EventLoad      = "load"
	EventMetrics   = "metrics"
	EventIteration = "iteration"
	EventVerdict   = "verdict"
	EventCompleted = "completed"
	EventFailed    = "failed"
	EventDeleted   = "deleted"
)

// EventTypes lists every event type, in lifecycle order.
var EventTypes = []string{EventCreated, EventRouting, EventLoad, EventMetrics, EventIteration, EventVerdict, EventCompleted, EventFailed, EventDeleted}

// EventSubject is the subject of one event of one experiment.
func EventSubject(namespace, name, typ string) string {
	return EventsPrefix + "." + namespace + "." + name + "." + typ
}

// EventsFilter matches every event of one experiment; with empty namespace
// and name, every event of every experiment.
func EventsFilter(namespace, name string) string {
	if namespace == "" {
		namespace = "*"
	}
	if name == "" {
		name = "*"
	}
	return EventsPrefix + "." + namespace + "." + name + ".>"
}

// EventTypeFilter matches one event type of every experiment.
func EventTypeFilter(typ string) string { return EventsPrefix + ".*.*." + typ }

// ObsSubject is the subject of one experiment's observations. The UID is
// part of it so that the observations of a deleted experiment can be purged
// without touching those of a new experiment of the same name.
func ObsSubject(namespace, name, uid string) string {
	return ObsPrefix + "." + namespace + "." + name + "." + uid
}

// ObsFilter matches the observations of every experiment named
// namespace/name, past and present; with empty namespace and name, all
// observations.
func ObsFilter(namespace, name string) string {
	if namespace == "" && name == "" {
		return ObsPrefix + ".>"
	}
	return ObsPrefix + "." + namespace + "." + name + ".*"
}

// SplitObsSubject returns the namespace, name and UID of an observation
// subject; ok is false for anything else.
func SplitObsSubject(subject string) (namespace, name, uid string, ok bool) {
	rest, found := strings.CutPrefix(subject, ObsPrefix+".")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// Key is the KV key of one experiment.
func Key(namespace, name string) string { return namespace + "." + name }

// SplitKey splits a KV key into namespace and name.
func SplitKey(key string) (namespace, name string) {
	namespace, name, _ = strings.Cut(key, ".")
	return namespace, name
}

// MsgID builds a Nats-Msg-Id from the experiment's UID and parts, so that a
// restarted service republishing the same fact is de-duplicated by the stream.
func MsgID(uid string, parts ...string) string {
	return uid + "." + strings.Join(parts, ".")
}
