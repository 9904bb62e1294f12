package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// The judge's work queue. The events the judge acts on (routing, metrics,
// load) are sourced from the events stream into a stream of its own, whose
// subjects carry a partition: darklaunch.judge.<p>.<ns>.<name>.<type>, p
// the server's hash of <ns>.<name> (the subject transform partition()) in
// [0, JudgePartitions). An experiment is always on one partition, so that
// one consumer per partition with one event in flight (MaxAckPending 1)
// keeps each experiment's events in order, while the partitions, and so
// the experiments, are handled in parallel, by every judge instance at
// once: the partitions' durable consumers are shared, as the one consumer
// of the events stream was. Nothing of the partition is the publishers':
// they publish on the events stream as before, and only the server writes
// here.
const (
	StreamJudge = "DARKLAUNCH_JUDGE"
	JudgePrefix = "darklaunch.judge"
	// JudgePartitions is the number of partitions. It is part of the
	// stream's configuration, and changing it would move experiments
	// between partitions mid-run: it is fixed. Each partition handles one
	// event at a time, each a few round trips to JetStream: with 16, 300
	// experiments at once (900 events/s) left the judge 30 s behind on 2
	// cores that were not busy; with 64, 9 s (the scale benchmark).
	JudgePartitions = 64
	// legacyJudgeConsumer was the judge's one durable consumer on the
	// events stream, before the partitions. A judge that finds it starts
	// its queue where it had got to, then deletes it.
	legacyJudgeConsumer = "darklaunch-judge"
)

// JudgeTypes are the event types the judge acts on.
var JudgeTypes = []string{EventRouting, EventMetrics, EventLoad}

// JudgeConsumer is the durable consumer of partition p, shared by every
// judge instance.
func JudgeConsumer(p int) string { return "darklaunch-judge-" + strconv.Itoa(p) }

// JudgeFilter is the subjects of partition p.
func JudgeFilter(p int) string { return JudgePrefix + "." + strconv.Itoa(p) + ".>" }

// JudgePartition is the partition of the experiment namespace/name: what
// the server's subject transform {{partition(n,1,2)}} computes, the 32-bit
// FNV-1a hash of the two tokens, concatenated, modulo n (nats-server,
// server/subject_transform.go, getHashPartition). TestJudgePartition
// checks it against a server's.
func JudgePartition(namespace, name string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(namespace))
	_, _ = h.Write([]byte(name))
	return int(h.Sum32() % JudgePartitions)
}

// JudgeSubject is the subject of an experiment's event of type typ in the
// judge's queue.
func JudgeSubject(namespace, name, typ string) string {
	return JudgePrefix + "." + strconv.Itoa(JudgePartition(namespace, name)) + "." + namespace + "." + name + "." + typ
}

// EventSubjectOf is the events stream's subject of the event at subject
// in the judge's queue; "" when subject is not one of the queue's.
func EventSubjectOf(subject string) string {
	rest, ok := strings.CutPrefix(subject, JudgePrefix+".")
	if !ok {
		return ""
	}
	_, rest, ok = strings.Cut(rest, ".")
	if !ok || rest == "" {
		return ""
	}
	return EventsPrefix + "." + rest
}

// judgeStreamConfig is the judge's queue, sourcing the events stream from
// stream sequence start.
func judgeStreamConfig(lim StreamLimits, start uint64) jetstream.StreamConfig {
	src := &jetstream.StreamSource{Name: StreamEvents, OptStartSeq: start}
	for _, t := range JudgeTypes {
		src.SubjectTransforms = append(src.SubjectTransforms, jetstream.SubjectTransformConfig{
			Source: EventTypeFilter(t),
			Destination: fmt.Sprintf("%s.{{partition(%d,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.%s",
				JudgePrefix, JudgePartitions, t),
		})
	}
	return jetstream.StreamConfig{
		Name:        StreamJudge,
		Description: "darklaunch judge's work queue: its events, partitioned by experiment",
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      lim.EventsMaxAge,
		Replicas:    lim.Replicas,
		Sources:     []*jetstream.StreamSource{src},
	}
}

// ensureJudgeStream creates or updates the judge's queue. Created the
// first time, it sources the events from where the legacy consumer had
// handled them all (so that an upgraded judge neither handles an event
// twice nor skips one), or from the first; once it exists, its source's
// start stays as it is (the source's position is the server's).
func ensureJudgeStream(ctx context.Context, js jetstream.JetStream, lim StreamLimits) (jetstream.Stream, error) {
	var start uint64
	existing, err := js.Stream(ctx, StreamJudge)
	switch {
	case err == nil:
		if srcs := existing.CachedInfo().Config.Sources; len(srcs) == 1 {
			start = srcs[0].OptStartSeq
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
		legacy, err := js.Consumer(ctx, StreamEvents, legacyJudgeConsumer)
		switch {
		case err == nil:
			start = legacy.CachedInfo().AckFloor.Stream + 1
		case !errors.Is(err, jetstream.ErrConsumerNotFound):
			return nil, fmt.Errorf("consumer %s: %w", legacyJudgeConsumer, err)
		}
	default:
		return nil, err
	}
	want := judgeStreamConfig(lim, start)
	s := existing
	if s == nil || !sameJudgeStream(s.CachedInfo().Config, want) {
		// An update as another judge creates its consumers races in the
		// server (nats-server 2.15's fileStore.UpdateConfig against
		// ConsumerStore, seen under -race): update only what changed.
		if s, err = js.CreateOrUpdateStream(ctx, want); err != nil {
			return nil, err
		}
	}
	if err := js.DeleteConsumer(ctx, StreamEvents, legacyJudgeConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("delete the legacy consumer %s: %w", legacyJudgeConsumer, err)
	}
	return s, nil
}

// sameJudgeStream says whether the queue as configured, have, is want in
// every setting judgeStreamConfig makes (the server fills in the others).
func sameJudgeStream(have, want jetstream.StreamConfig) bool {
	if have.Description != want.Description || have.Retention != want.Retention || have.Storage != want.Storage ||
		have.MaxAge != want.MaxAge || have.Replicas != want.Replicas || len(have.Sources) != len(want.Sources) {
		return false
	}
	for i, w := range want.Sources {
		h := have.Sources[i]
		if h.Name != w.Name || h.OptStartSeq != w.OptStartSeq || !slices.Equal(h.SubjectTransforms, w.SubjectTransforms) {
			return false
		}
	}
	return true
}
