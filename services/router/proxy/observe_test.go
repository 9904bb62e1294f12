package proxy

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
)

// obsReader reads an experiment's observation batches from the stream.
type obsReader struct {
	cons jetstream.Consumer
	// msgs and totals per role.
	msgs     map[string]int
	aggs     map[string]*sketch.Aggregate
	msgIDs   map[string]bool
	instance string
	// seqs lists each series' batch numbers in the order read; finals
	// counts the batches marked Final.
	seqs   map[string][]uint64
	finals int
}

func newObsReader(t *testing.T, js jetstream.JetStream, ns, name string) *obsReader {
	t.Helper()
	cons, err := js.OrderedConsumer(context.Background(), bus.StreamObs, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.ObsFilter(ns, name)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &obsReader{cons: cons, msgs: map[string]int{}, aggs: map[string]*sketch.Aggregate{bus.RoleLive: sketch.NewAggregate(), bus.RoleDark: sketch.NewAggregate()}, msgIDs: map[string]bool{}, seqs: map[string][]uint64{}}
}

// readUntil consumes batches until done holds.
func (o *obsReader) readUntil(t *testing.T, within time.Duration, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("observations incomplete after %s: live %+v dark %+v", within, *o.aggs[bus.RoleLive], *o.aggs[bus.RoleDark])
		}
		m, err := o.cons.Next(jetstream.FetchMaxWait(200 * time.Millisecond))
		if err != nil {
			continue
		}
		var b bus.ObservationBatch
		if err := bus.Unmarshal(m.Headers().Get(bus.HeaderContentType), m.Data(), &b); err != nil {
			t.Fatalf("decode batch: %v", err)
		}
		id := m.Headers().Get(bus.HeaderMsgID)
		want := bus.MsgID(b.UID, b.Role, b.Router, b.Series, strconv.FormatUint(b.Seq, 10))
		if id != want {
			t.Errorf("Nats-Msg-Id %q, want %q", id, want)
		}
		if o.msgIDs[id] {
			t.Errorf("Msg-Id %s delivered twice", id)
		}
		o.msgIDs[id] = true
		if !b.Slotted || !b.End.After(b.Start) {
			t.Errorf("batch %v..%v (slotted %v): want a slot", b.Start, b.End, b.Slotted)
		}
		if b.Count > 0 && len(b.Sketch) == 0 {
			t.Errorf("batch with %d requests has no sketch", b.Count)
		}
		o.msgs[b.Role]++
		if b.Series == "" {
			t.Errorf("batch %d without a series", b.Seq)
		}
		if o.finals > 0 {
			t.Errorf("batch %d of series %s after the Final one", b.Seq, b.Series)
		}
		o.seqs[b.Series] = append(o.seqs[b.Series], b.Seq)
		if b.Final {
			o.finals++
		}
		if err := o.aggs[b.Role].Add(&b); err != nil {
			t.Fatal(err)
		}
	}
}

func TestProxyPublishesAggregatedObservations(t *testing.T) {
	ctx := context.Background()
	infra := testenv.Infra(t, testenv.StartNATS(t).Conn(t))
	fail := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(500)
		}
	}
	live := routertest.NewVersion(t, fail)
	dark := routertest.NewVersion(t, fail)
	p, base := newTestProxy(t, Config{FlushInterval: 50 * time.Millisecond, Instance: "test-router"}, infra.JS)
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	go p.runFlusher(fctx)

	e := routertest.Experiment("obs", "customdomain.com", live.URL, dark.URL, 50, experiment.StageRunning)
	setup(t, p, e)
	obs := newObsReader(t, infra.JS, "default", "obs")

	// 200 GETs, 20 of which fail, then 20 POSTs. At 50% request n (from 1)
	// is copied when n is even, i.e. i = n-1 odd: every failing GET
	// (i%10 == 1) is copied, and half of the POSTs are selected and
	// dropped for their method.
	for i := range 200 {
		path := "/ok"
		if i%10 == 1 {
			path = "/fail"
		}
		routertest.Send(t, base, "customdomain.com", "GET", path, nil)
	}
	for range 20 {
		routertest.Send(t, base, "customdomain.com", "POST", "/", strings.NewReader("x"))
	}
	live_, dark_ := obs.aggs[bus.RoleLive], obs.aggs[bus.RoleDark]
	obs.readUntil(t, 10*time.Second, func() bool {
		return live_.Count == 220 && dark_.Count == 100 && dark_.Dropped[DropMethod] == 10
	})
	if dark_.Mirrored != 100 {
		t.Errorf("mirrored %d, want 100", dark_.Mirrored)
	}
	// The mean latency's interval needs the bound of every copy's latency.
	if dark_.TimeoutMs != float64(DefaultMirrorTimeout.Milliseconds()) || live_.TimeoutMs != 0 {
		t.Errorf("timeoutMs: dark %v, live %v; want the mirror timeout %v and 0 (live is bounded by no timeout of the proxy)", dark_.TimeoutMs, live_.TimeoutMs, DefaultMirrorTimeout.Milliseconds())
	}
	if live_.Errors != 20 || dark_.Errors != 20 {
		t.Errorf("errors: live %d dark %d, want 20 and 20", live_.Errors, dark_.Errors)
	}
	if total := obs.msgs[bus.RoleLive] + obs.msgs[bus.RoleDark]; total >= 220 {
		t.Errorf("%d batches for 220 requests: observations are not aggregated", total)
	}
	v := live_.Values()
	if mean := *v[experiment.MetricMeanLatency]; !(mean > 0 && mean < 1000) {
		t.Errorf("live mean latency %v ms, want a plausible value", mean)
	}

	// Teardown publishes the last batch: requests after the last periodic
	// flush are not lost.
	stop()
	routertest.Send(t, base, "customdomain.com", "GET", "/ok", nil)
	if err := p.Teardown(ctx, e); err != nil {
		t.Fatal(err)
	}
	obs.readUntil(t, 5*time.Second, func() bool { return live_.Count == 221 && obs.finals == 1 })
	// One series, numbered 1, 2, 3, ... without a gap, the last batch
	// Final: what lets the collector tell a clean stop from a crash.
	if len(obs.seqs) != 1 {
		t.Fatalf("%d series, want 1: %v", len(obs.seqs), obs.seqs)
	}
	for _, seqs := range obs.seqs {
		for i, s := range seqs {
			if s != uint64(i+1) {
				t.Fatalf("batch numbers %v, want 1, 2, 3, ...", seqs)
			}
		}
	}
}

func TestFlushRetriesWhileNATSIsDown(t *testing.T) {
	ns := testenv.StartNATS(t)
	nc := ns.Conn(t)
	ctx := context.Background()
	infra := testenv.Infra(t, nc)
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, nil)
	p, base := newTestProxy(t, Config{Instance: "retry"}, infra.JS)
	setup(t, p, routertest.Experiment("retry", "customdomain.com", live.URL, dark.URL, 100, experiment.StageRunning))

	// Stop NATS (testenv's Restart stops and starts at once; here the
	// traffic and a failed flush happen in between).
	addr := ns.Server.Addr().String()
	ns.Embedded.Shutdown()
	for range 3 {
		routertest.Send(t, base, "customdomain.com", "GET", "/", nil)
	}
	// The requests' slot closes within a second; then it is published, or
	// not: it is kept, after the batch that opened the route's series.
	testenv.Until(t, 5*time.Second, "a flush with NATS down to fail with the requests' batch kept", func() bool {
		sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		return p.Flush(sctx) != nil && len(p.table.Load().byKey["default/retry"].pendingBatches()) > 1
	})
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Addr: addr, StoreDir: ns.StoreDir})
	if err != nil {
		t.Fatal(err)
	}
	ns.Embedded = e // shut down by testenv's cleanup
	testenv.Until(t, 10*time.Second, "reconnect", nc.IsConnected)

	obs := newObsReader(t, infra.JS, "default", "retry")
	testenv.Until(t, 10*time.Second, "the kept batches to be published", func() bool {
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return p.Flush(fctx) == nil
	})
	obs.readUntil(t, 5*time.Second, func() bool { return obs.aggs[bus.RoleLive].Count == 3 })
}

// TestConcurrentFlushes: the flusher, a teardown and Close may flush at the
// same time; retired routes must survive it.
func TestConcurrentFlushes(t *testing.T) {
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, nil)
	p, base := newTestProxy(t, Config{}, nil)
	ctx := context.Background()
	for round := range 200 {
		e := routertest.Experiment("again", "customdomain.com", live.URL, dark.URL, 100, experiment.StageRunning)
		setup(t, p, e) // replaces the previous round's experiment: retired
		if round%10 == 0 {
			routertest.Send(t, base, "customdomain.com", "GET", "/", nil)
		}
		done := make(chan struct{})
		for range 8 {
			go func() { _ = p.Flush(ctx); done <- struct{}{} }()
		}
		if round%2 == 0 {
			if err := p.Teardown(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		for range 8 {
			<-done
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.retired) != 0 {
		t.Errorf("%d retired routes left after a flush with nothing to publish", len(p.retired))
	}
}

// TestProxyCountsARequestInTheSlotOfItsEnd: a request is published in the
// batch of the slot it ended in, not the one it started in, on a grid from
// the experiment's start; a copy mirrored is tallied where it was decided.
func TestProxyCountsARequestInTheSlotOfItsEnd(t *testing.T) {
	ctx := context.Background()
	infra := testenv.Infra(t, testenv.StartNATS(t).Conn(t))
	const took = 250 * time.Millisecond // longer than two slots
	slow := func(w http.ResponseWriter, r *http.Request) { time.Sleep(took) }
	live := routertest.NewVersion(t, slow)
	dark := routertest.NewVersion(t, slow)
	p, base := newTestProxy(t, Config{FlushInterval: 100 * time.Millisecond, Instance: "slots"}, infra.JS)
	e := routertest.Experiment("slots", "customdomain.com", live.URL, dark.URL, 100, experiment.StageRunning)
	begin := time.Now().Add(-1234567 * time.Microsecond).UTC() // on no grid but its own
	e.Status.StartTime = &begin
	setup(t, p, e)

	sent := time.Now()
	routertest.Send(t, base, "customdomain.com", "GET", "/", nil)
	dark.WaitCount(t, 1, 5*time.Second)
	rt := p.table.Load().byKey[e.Key()]
	testenv.Until(t, 5*time.Second, "the copy to end", func() bool { return rt.active.Load() == 0 })
	answered := time.Now()
	if err := p.Teardown(ctx, e); err != nil { // publishes the open slot too
		t.Fatal(err)
	}

	cons, err := infra.JS.OrderedConsumer(ctx, bus.StreamObs, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.ObsFilter("default", "slots")}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx) // every batch was stored before Teardown returned
	if err != nil {
		t.Fatal(err)
	}
	var batches []bus.ObservationBatch
	for range info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var b bus.ObservationBatch
		if err := bus.Unmarshal(m.Headers().Get(bus.HeaderContentType), m.Data(), &b); err != nil {
			t.Fatal(err)
		}
		batches = append(batches, b)
	}
	var counted, mirrored int
	for _, b := range batches {
		if !b.Slotted || b.End.Sub(b.Start) != 100*time.Millisecond || b.Start.Sub(begin)%(100*time.Millisecond) != 0 {
			t.Errorf("batch %s %v..%v: want a slot of 100ms on the grid from the start %v", b.Role, b.Start, b.End, begin)
		}
		if b.Count > 0 {
			counted++
			// It ended between sent+took and answered, not at sent.
			if !b.Start.After(sent) || b.End.Before(sent.Add(took)) || b.Start.After(answered) {
				t.Errorf("%s request sent at %v, answered by %v, counted in slot %v..%v", b.Role, sent, answered, b.Start, b.End)
			}
		}
		if b.Mirrored > 0 {
			mirrored++
			if b.Start.After(sent.Add(took)) || !b.End.After(sent) {
				t.Errorf("copy decided at %v tallied in slot %v..%v", sent, b.Start, b.End)
			}
		}
	}
	if counted != 2 || mirrored != 1 {
		t.Errorf("%d batches with a request (want live and dark), %d with the copy (want 1): %+v", counted, mirrored, batches)
	}
}
