package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// call is what a gRPC version noted of one call.
type call struct {
	method, authority, mark string
	msgs                    []string // a stream's messages
}

// grpcVersion is a gRPC server on loopback (h2c) that notes its calls.
type grpcVersion struct {
	addr string
	mu   sync.Mutex
	got  []call
}

func (v *grpcVersion) note(ctx context.Context, method string, msgs []string) {
	md, _ := metadata.FromIncomingContext(ctx)
	first := func(k string) string {
		if vs := md.Get(k); len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	v.mu.Lock()
	v.got = append(v.got, call{method: method, authority: first(":authority"), mark: first(strings.ToLower(experiment.MirrorHeader)), msgs: msgs})
	v.mu.Unlock()
}

func (v *grpcVersion) calls() []call {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]call(nil), v.got...)
}

func serveGRPC(t *testing.T, v *grpcVersion, register func(*grpc.Server), opts ...grpc.ServerOption) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	v.addr = ln.Addr().String()
	srv := grpc.NewServer(opts...)
	register(srv)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
}

// health is a health service that answers SERVING with a trailer, or fails
// every call with code fail; the service "unknown" is NOT_FOUND.
type health struct {
	healthpb.UnimplementedHealthServer
	v    *grpcVersion
	fail codes.Code
}

func (h *health) Check(ctx context.Context, in *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.v.note(ctx, "Check", []string{in.GetService()})
	if in.GetService() == "unknown" {
		return nil, status.Error(codes.NotFound, "unknown service")
	}
	if h.fail != codes.OK {
		return nil, status.Error(h.fail, "dark is down")
	}
	grpc.SetTrailer(ctx, metadata.Pairs("x-version-trailer", "live"))
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func newHealthVersion(t *testing.T, fail codes.Code) *grpcVersion {
	v := &grpcVersion{}
	serveGRPC(t, v, func(s *grpc.Server) { healthpb.RegisterHealthServer(s, &health{v: v, fail: fail}) })
	return v
}

// dialProxy is a gRPC client of the proxy at base whose calls carry
// :authority customdomain.com.
func dialProxy(t *testing.T, base string) *grpc.ClientConn {
	cc, err := grpc.NewClient(strings.TrimPrefix(base, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("customdomain.com"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestProxyGRPCUnary: unary gRPC calls through the proxy reach live, whose
// answer and trailers come back intact (grpc-status and grpc-message too);
// the copy reaches dark, marked. The outcomes are grpc-status: a dark
// version answering UNAVAILABLE is a failed copy while live stays OK, and a
// NOT_FOUND from live is a failed live request, in the published batches.
func TestProxyGRPCUnary(t *testing.T) {
	ctx := context.Background()
	infra := testenv.Infra(t, testenv.StartNATS(t).Conn(t))
	live, dark := newHealthVersion(t, codes.OK), newHealthVersion(t, codes.Unavailable)
	p, base := newTestProxy(t, Config{FlushInterval: 50 * time.Millisecond}, infra.JS)
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	go p.runFlusher(fctx)
	e := routertest.Experiment("grpc", "customdomain.com", "http://"+live.addr, "http://"+dark.addr, 100, experiment.StageRunning)
	e.Spec.Mirroring.Methods = []string{"POST"} // every gRPC call is a POST
	setup(t, p, e)
	obs := newObsReader(t, infra.JS, "default", "grpc")

	hc := healthpb.NewHealthClient(dialProxy(t, base))
	const n = 5
	for range n {
		var trailer metadata.MD
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := hc.Check(cctx, &healthpb.HealthCheckRequest{Service: "svc"}, grpc.Trailer(&trailer))
		cancel()
		if err != nil {
			t.Fatalf("Check through the proxy: %v", err)
		}
		if res.GetStatus() != healthpb.HealthCheckResponse_SERVING || strings.Join(trailer.Get("x-version-trailer"), ",") != "live" {
			t.Fatalf("Check through the proxy: %v with trailer %v; want live's SERVING and its trailer", res.GetStatus(), trailer)
		}
	}
	_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"})
	if s, _ := status.FromError(err); s.Code() != codes.NotFound || s.Message() != "unknown service" {
		t.Fatalf("Check of an unknown service: %v; want live's NOT_FOUND \"unknown service\"", err)
	}

	testenv.Until(t, 5*time.Second, "the copies at dark", func() bool { return len(dark.calls()) == n+1 })
	for _, c := range dark.calls() {
		if c.authority != "customdomain.com-shadow" || c.mark != "default/grpc" {
			t.Errorf("copy with :authority %q and mark %q; want customdomain.com-shadow and default/grpc", c.authority, c.mark)
		}
	}
	if c := live.calls()[0]; c.authority != "customdomain.com" || c.mark != "" {
		t.Errorf("live got :authority %q and mark %q", c.authority, c.mark)
	}
	live_, dark_ := obs.aggs[bus.RoleLive], obs.aggs[bus.RoleDark]
	obs.readUntil(t, 10*time.Second, func() bool { return live_.Count == n+1 && dark_.Count == n+1 })
	if live_.Errors != 1 || dark_.Errors != n+1 || dark_.Mirrored != n+1 {
		t.Errorf("errors: live %d, dark %d (mirrored %d); want 1 (NOT_FOUND) and all %d (UNAVAILABLE)", live_.Errors, dark_.Errors, dark_.Mirrored, n+1)
	}
	if u, nf := counter(t, p, "default/grpc", "dark", "5xx"), counter(t, p, "default/grpc", "dark", "4xx"); u != n || nf != 1 {
		t.Errorf("dark counters 5xx %v 4xx %v, want %d (UNAVAILABLE is 503) and 1 (NOT_FOUND)", u, nf, n)
	}
	if ok, nf := counter(t, p, "default/grpc", "live", "2xx"), counter(t, p, "default/grpc", "live", "4xx"); ok != n || nf != 1 {
		t.Errorf("live counters 2xx %v 4xx %v, want %d and 1 (NOT_FOUND is 404)", ok, nf, n)
	}
}

// rawCodec passes messages as bytes, for a stream without generated code.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

// newEchoVersion answers every method as a bidirectional stream that
// echoes each message as soon as it arrives.
func newEchoVersion(t *testing.T) *grpcVersion {
	v := &grpcVersion{}
	echo := func(_ any, ss grpc.ServerStream) error {
		var msgs []string
		defer func() {
			method, _ := grpc.MethodFromServerStream(ss)
			v.note(ss.Context(), method, msgs)
		}()
		for {
			var m []byte
			if err := ss.RecvMsg(&m); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return err
			}
			msgs = append(msgs, string(m))
			if err := ss.SendMsg(&m); err != nil {
				return err
			}
		}
	}
	serveGRPC(t, v, func(*grpc.Server) {}, grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(echo))
	return v
}

// TestProxyGRPCStreamNotHeld: a bidirectional call, whose client waits for
// each answer before it sends the next message, runs through the proxy as
// it would directly: the copy is not read up front, which would hold live
// until the client stopped sending. Once the client ends its stream within
// MirrorMaxBody, dark gets the copy: every message the client sent.
func TestProxyGRPCStreamNotHeld(t *testing.T) {
	live, dark := newEchoVersion(t), newEchoVersion(t)
	p, base := newTestProxy(t, Config{}, nil)
	e := routertest.Experiment("stream", "customdomain.com", "http://"+live.addr, "http://"+dark.addr, 100, experiment.StageRunning)
	e.Spec.Mirroring.Methods = []string{"POST"}
	setup(t, p, e)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	desc := &grpc.StreamDesc{StreamName: "Chat", ServerStreams: true, ClientStreams: true}
	cs, err := dialProxy(t, base).NewStream(ctx, desc, "/test.Echo/Chat", grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"ping", "pong"} {
		m := []byte(msg)
		if err := cs.SendMsg(&m); err != nil {
			t.Fatalf("send %s: %v", msg, err)
		}
		var got []byte
		if err := cs.RecvMsg(&got); err != nil || string(got) != msg {
			t.Fatalf("echo of %s: %q, %v (live held until the client stops sending?)", msg, got, err)
		}
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var m []byte
	if err := cs.RecvMsg(&m); !errors.Is(err, io.EOF) {
		t.Fatalf("end of the stream: %v, want io.EOF (status OK)", err)
	}
	testenv.Until(t, 5*time.Second, "the copy at dark", func() bool { return len(dark.calls()) == 1 })
	if c := dark.calls()[0]; c.method != "/test.Echo/Chat" || strings.Join(c.msgs, ",") != "ping,pong" || c.mark != "default/stream" {
		t.Errorf("dark got %s with %v, mark %q; want /test.Echo/Chat with ping,pong, marked", c.method, c.msgs, c.mark)
	}
	rt := p.table.Load().byKey["default/stream"]
	testenv.Until(t, 5*time.Second, "the copy's outcome", func() bool { return recorded(rt, roleDark).Count == 1 })
	if l := recorded(rt, roleLive); l.Count != 1 || l.Errors != 0 {
		t.Errorf("live observed %d calls, %d failed; want 1 and 0", l.Count, l.Errors)
	}
}

// TestProxyGRPCStreamCopyDropped: a stream whose body outgrows
// MirrorMaxBody, or that does not end within MirrorTimeout, is not copied
// (dropped, "body"), and live does not notice.
func TestProxyGRPCStreamCopyDropped(t *testing.T) {
	for _, tc := range []struct {
		name  string
		msg   int           // bytes per message
		pause time.Duration // between the messages
	}{
		{"over MirrorMaxBody", 600, 0},
		{"longer than MirrorTimeout", 10, 600 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live, dark := newEchoVersion(t), newEchoVersion(t)
			p, base := newTestProxy(t, Config{MirrorMaxBody: 1 << 10, MirrorTimeout: 300 * time.Millisecond}, nil)
			e := routertest.Experiment("dropped", "customdomain.com", "http://"+live.addr, "http://"+dark.addr, 100, experiment.StageRunning)
			e.Spec.Mirroring.Methods = []string{"POST"}
			setup(t, p, e)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			desc := &grpc.StreamDesc{StreamName: "Chat", ServerStreams: true, ClientStreams: true}
			cs, err := dialProxy(t, base).NewStream(ctx, desc, "/test.Echo/Chat", grpc.ForceCodec(rawCodec{}))
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				time.Sleep(tc.pause)
				m := []byte(strings.Repeat("x", tc.msg))
				if err := cs.SendMsg(&m); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
				var got []byte
				if err := cs.RecvMsg(&got); err != nil || len(got) != tc.msg {
					t.Fatalf("echo %d: %d bytes, %v", i, len(got), err)
				}
			}
			cs.CloseSend()
			var m []byte
			if err := cs.RecvMsg(&m); !errors.Is(err, io.EOF) {
				t.Fatalf("end of the stream: %v", err)
			}
			testenv.Until(t, 5*time.Second, "the copy dropped", func() bool { return dropped(t, p, "default/dropped", DropBody) == 1 })
			rt := p.table.Load().byKey["default/dropped"]
			testenv.Until(t, 5*time.Second, "nothing in flight", func() bool { return rt.active.Load() == 0 && p.copyBytes.Load() == 0 })
			if n := len(dark.calls()); n != 0 {
				t.Errorf("dark got %d calls, want none", n)
			}
			if l := recorded(rt, roleLive); l.Count != 1 || l.Errors != 0 {
				t.Errorf("live observed %d calls, %d failed; want 1 and 0", l.Count, l.Errors)
			}
		})
	}
}

// TestInitCheckAcceptsGRPCVersions: a gRPC server answers only HTTP/2; the
// init check of a new experiment accepts its answer.
func TestInitCheckAcceptsGRPCVersions(t *testing.T) {
	live, dark := newHealthVersion(t, codes.OK), newHealthVersion(t, codes.OK)
	p, _ := newTestProxyWith(t, Config{}, mirroring.Settings{InitTimeout: time.Second, InitInterval: 50 * time.Millisecond}, nil)
	e := routertest.Experiment("grpcinit", "customdomain.com", "http://"+live.addr, "http://"+dark.addr, 40, experiment.StageInitializing)
	if _, err := p.Setup(context.Background(), e); err != nil {
		t.Fatalf("init check of two gRPC versions: %v", err)
	}
}
