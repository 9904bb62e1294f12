package bus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
)

// authServer is a nats-server that lets in only darklaunch's roles.
type authServer struct {
	*bus.Embedded
	seeds map[string][]byte
}

func startAuthServer(t *testing.T) *authServer {
	t.Helper()
	keys, err := bus.NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	users, err := bus.Users(keys)
	if err != nil {
		t.Fatal(err)
	}
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: t.TempDir(), Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	s := &authServer{Embedded: e, seeds: map[string][]byte{}}
	for _, k := range keys {
		s.seeds[k.Role] = k.Seed
	}
	return s
}

// as connects as role, with its inbox prefix.
func (s *authServer) as(t *testing.T, role string) *nats.Conn {
	t.Helper()
	nc, err := bus.Connect(bus.ConnConfig{URL: s.URL(), Name: role, NKeySeed: s.seeds[role], InboxPrefix: bus.InboxPrefix(role)}, nil)
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// publishEvent publishes an event of type typ as nc, to the stream.
func publishEvent(nc *nats.Conn, typ string) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// A refused publish gets no ack: it fails at this timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	ev := &bus.Event{Type: typ, Namespace: "default", Name: "x", UID: "u1", Time: time.Now()}
	return bus.Publish(ctx, js, ev, "")
}

// TestRolesPublishOnlyWhatTheyOwn: on a server configured with
// bus.Users, each service may publish its own events and no one else's,
// people may not publish events at all (the forged-verdict reproduction:
// a metrics event from anyone but the collector is refused), and no role
// reads another's replies or pulls from the judge's consumer.
func TestRolesPublishOnlyWhatTheyOwn(t *testing.T) {
	s := startAuthServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	judge := s.as(t, bus.RoleJudge)
	if _, err := bus.EnsureInfra(ctx, judge, bus.StreamLimits{}); err != nil {
		t.Fatalf("the judge creates the streams and the bucket: %v", err)
	}
	for _, role := range []string{bus.RoleRouter, bus.RoleLoadgen, bus.RoleCollector} {
		if _, err := bus.OpenInfra(ctx, s.as(t, role), nil); err != nil {
			t.Errorf("%s opens the streams and the bucket: %v", role, err)
		}
	}
	owns := map[string]string{bus.RoleRouter: bus.EventRouting, bus.RoleLoadgen: bus.EventLoad, bus.RoleCollector: bus.EventMetrics, bus.RoleJudge: bus.EventVerdict}
	var wg sync.WaitGroup
	for _, role := range bus.Roles {
		nc := s.as(t, role)
		wg.Go(func() {
			for _, typ := range []string{bus.EventRouting, bus.EventLoad, bus.EventMetrics, bus.EventVerdict} {
				err := publishEvent(nc, typ)
				mine := owns[role] == typ
				if mine && err != nil {
					t.Errorf("%s may not publish its own %s event: %v", role, typ, err)
				}
				if !mine && err == nil {
					t.Errorf("%s published a %s event it does not own", role, typ)
				}
			}
		})
	}
	wg.Wait()
	// What was refused never reached the stream: one message per owned
	// event type.
	events, err := jetstream.New(judge)
	if err != nil {
		t.Fatal(err)
	}
	st, err := events.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 4 {
		t.Errorf("the stream holds %v events (err %v), want the 4 owned ones", info.State.Msgs, err)
	}

	// The state is the judge's to write.
	kv, err := bus.OpenInfra(ctx, s.as(t, bus.RoleOperator), nil)
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond) // a refused write gets no ack
	defer pcancel()
	if _, err := kv.Store.KV.Put(pctx, bus.Key("default", "x"), []byte("forged")); err == nil {
		t.Error("an operator wrote the experiment state")
	}

	// Replies and the judge's consumer are private.
	router := s.as(t, bus.RoleRouter)
	if _, err := router.SubscribeSync(bus.InboxPrefix(bus.RoleJudge) + ".>"); err != nil {
		t.Fatal(err)
	}
	router.Flush()
	testenv.Eventually(t, "the server to refuse the subscription", func() (bool, string) {
		err := router.LastError()
		return errors.Is(err, nats.ErrPermissionViolation), errString(err)
	})
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	judgeConsumer := bus.JudgeConsumer(0)
	if _, err := judgeJS(t, judge).CreateOrUpdateConsumer(ctx, bus.StreamJudge, jetstream.ConsumerConfig{Durable: judgeConsumer, FilterSubject: bus.JudgeFilter(0), AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	// The unnamed create names its consumer in the body, where no subject
	// permission sees it: a viewer's, naming the judge's, would change its
	// configuration; on the events stream, the legacy judge's.
	for stream, name := range map[string]string{bus.StreamJudge: judgeConsumer, bus.StreamEvents: "darklaunch-judge"} {
		rewrite := []byte(`{"stream_name":"` + stream + `","config":{"name":"` + name + `","ack_policy":"explicit","filter_subject":"darklaunch.nothing"}}`)
		if m, err := s.as(t, bus.RoleViewer).Request("$JS.API.CONSUMER.CREATE."+stream, rewrite, 500*time.Millisecond); err == nil {
			t.Errorf("a viewer's unnamed consumer create on %s was answered: %s", stream, m.Data)
		}
	}
	if ci, err := judgeJS(t, judge).Consumer(ctx, bus.StreamJudge, judgeConsumer); err != nil {
		t.Fatal(err)
	} else if cfg := ci.CachedInfo().Config; cfg.FilterSubject != bus.JudgeFilter(0) || cfg.AckPolicy != jetstream.AckExplicitPolicy {
		t.Errorf("the judge's consumer was changed: %+v", cfg)
	}
	// The API's identity answers in people's inboxes, and nowhere else.
	api := s.as(t, bus.RoleAPI)
	if err := api.Publish(bus.InboxPrefix(bus.RoleOperator)+".x", nil); err != nil {
		t.Fatal(err)
	}
	pctx2, pcancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer pcancel2()
	if _, err := judgeJS(t, api).Publish(pctx2, "$KV."+bus.BucketExperiments+"."+bus.Key("default", "x"), []byte("{}")); err == nil {
		t.Error("the API's identity wrote the state")
	}

	viewer := judgeJS(t, s.as(t, bus.RoleViewer))
	fctx, fcancel := context.WithTimeout(ctx, time.Second)
	defer fcancel()
	if c, err := viewer.Consumer(fctx, bus.StreamJudge, judgeConsumer); err == nil {
		if b, err := c.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond)); err == nil {
			for m := range b.Messages() {
				t.Errorf("a viewer pulled %s from the judge's consumer", m.Subject())
			}
		}
	}
}

func judgeJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// TestAuthorizationConfigOnARealServer: the block `darklaunch nats-config`
// prints is accepted by nats-server's own configuration parser, and the
// server it configures lets the judge create darklaunch's streams.
func TestAuthorizationConfigOnARealServer(t *testing.T) {
	keys, err := bus.NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	block, err := bus.AuthorizationConfig(keys)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	content := "listen: 127.0.0.1:-1\njetstream { store_dir: " + `"` + filepath.Join(dir, "js") + `"` + " }\n" + block
	if err := os.WriteFile(conf, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server refuses the block: %v\n%s", err, block)
	}
	if len(opts.Nkeys) != len(bus.Roles) {
		t.Fatalf("%d users parsed, want %d", len(opts.Nkeys), len(bus.Roles))
	}
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server did not start")
	}
	var judgeSeed []byte
	for _, k := range keys {
		if k.Role == bus.RoleJudge {
			judgeSeed = k.Seed
		}
	}
	nc, err := bus.Connect(bus.ConnConfig{URL: ns.ClientURL(), NKeySeed: judgeSeed, InboxPrefix: bus.InboxPrefix(bus.RoleJudge)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := bus.EnsureInfra(ctx, nc, bus.StreamLimits{}); err != nil {
		t.Fatalf("the judge on a server configured from the block: %v", err)
	}
	if strings.Contains(block, "allow_responses") {
		t.Error("a role may answer on any reply subject (allow_responses): a request could aim its answer at the state")
	}
}

// TestRefusedRequestSaysSo: a request the user's role may not make is
// refused by the server, and the client says so at once rather than
// timing out.
func TestRefusedRequestSaysSo(t *testing.T) {
	s := startAuthServer(t)
	c := &bus.Client{NC: s.as(t, bus.RoleViewer), Timeout: 10 * time.Second}
	start := time.Now()
	_, err := c.Create(context.Background(), []byte("kind: Experiment"))
	if !errors.Is(err, bus.ErrNotPermitted) || !strings.Contains(err.Error(), bus.SubjectCreate) {
		t.Fatalf("create as a viewer: %v, want ErrNotPermitted naming %s", err, bus.SubjectCreate)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the refusal took %v, want it at once", d)
	}
	// A permitted request is no refusal: no judge here, so no responders.
	if _, err := c.List(context.Background(), ""); errors.Is(err, bus.ErrNotPermitted) || !strings.Contains(err.Error(), "no judge answers") {
		t.Errorf("list as a viewer: %v, want no responders", err)
	}
}
