package testenv

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Leaf is a hub nats-server with JetStream in the domain "hub" and a leaf
// node connected to it, without JetStream of its own, whose account's
// JetStream is the hub's (default_js_domain): the layout of docs/protocol.md's
// "Several Kubernetes clusters", where the services beside the traffic
// reach the streams of the central cluster through their cluster's leaf
// node. Both are shut down by t.Cleanup.
type Leaf struct {
	Hub, Leaf *server.Server
}

// StartLeaf starts the hub and the leaf on 127.0.0.1 and waits until the
// leaf is connected.
func StartLeaf(t testing.TB) *Leaf {
	t.Helper()
	l := &Leaf{}
	start := func(opts *server.Options) *server.Server {
		t.Helper()
		opts.Host, opts.Port, opts.NoSigs, opts.NoLog, opts.MaxPayload = "127.0.0.1", -1, true, true, 8<<20
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("nats-server %s: %v", opts.ServerName, err)
		}
		go ns.Start()
		t.Cleanup(ns.Shutdown)
		if !ns.ReadyForConnections(15 * time.Second) {
			t.Fatalf("nats-server %s did not start", opts.ServerName)
		}
		return ns
	}
	addr := FreeAddr(t)
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	l.Hub = start(&server.Options{
		ServerName: "hub", JetStream: true, JetStreamDomain: "hub", StoreDir: t.TempDir(),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: p},
	})
	u, err := url.Parse("nats-leaf://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	l.Leaf = start(&server.Options{
		ServerName: "leaf",
		// The clients of the leaf's account use the hub's JetStream
		// through the plain API subjects (nats-server's
		// default_js_domain): nothing of darklaunch needs to know.
		JsAccDefaultDomain: map[string]string{server.DEFAULT_GLOBAL_ACCOUNT: "hub"},
		LeafNode:           server.LeafNodeOpts{Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}},
	})
	EventuallyWithin(t, ClusterFormsWithin, "the leaf node connected to the hub", func() (bool, string) {
		n := l.Hub.NumLeafNodes()
		return n == 1 && l.Leaf.NumLeafNodes() == 1, fmt.Sprintf("%d leaf connections", n)
	})
	return l
}
