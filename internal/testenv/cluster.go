package testenv

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Cluster is a JetStream cluster of in-process nats-servers on loopback,
// each with its own store in t.TempDir(), shut down by t.Cleanup.
type Cluster struct {
	t testing.TB
	// Servers are the nodes, nil once Shutdown.
	Servers []*server.Server
	// urls are the nodes' client URLs, kept after a node is shut down:
	// a client given every URL keeps trying the stopped one too, as it
	// would in production.
	urls []string
}

// ClusterFormsWithin bounds how long a cluster may take to elect its
// JetStream meta leader on a loaded machine (nats-server's own tests allow
// 40s).
const ClusterFormsWithin = 40 * time.Second

// StartCluster starts n nats-servers with JetStream, clustered over routes
// on 127.0.0.1 (every port picked by the system), and waits until the
// JetStream meta leader is elected and knows every node. Each node routes
// to the ones started before it, so no port has to be known in advance;
// gossip completes the mesh.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	t.Cleanup(func() {
		for i := range c.Servers {
			c.Shutdown(i)
		}
	})
	var routes []string
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			MaxPayload: 8 << 20, // as bus.StartEmbedded's
			Cluster:    server.ClusterOpts{Name: "darklaunch-test", Host: "127.0.0.1", Port: -1},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("nats-server %s: %v", opts.ServerName, err)
		}
		go ns.Start()
		if !ns.ReadyForConnections(15 * time.Second) {
			ns.Shutdown()
			t.Fatalf("nats-server %s did not start", opts.ServerName)
		}
		c.Servers = append(c.Servers, ns)
		c.urls = append(c.urls, ns.ClientURL())
		routes = append(routes, "nats-route://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(ns.ClusterAddr().Port)))
	}
	c.WaitForMetaLeader(n)
	return c
}

// URL is every node's client URL, comma-separated: what a client is given
// to fail over from one node to the next.
func (c *Cluster) URL() string { return strings.Join(c.urls, ",") }

// WaitForMetaLeader waits until a JetStream meta leader is elected, sees
// peers nodes online and every running node knows it.
func (c *Cluster) WaitForMetaLeader(peers int) {
	c.t.Helper()
	EventuallyWithin(c.t, ClusterFormsWithin, "the JetStream meta leader", func() (bool, string) {
		i := c.MetaLeader()
		if i < 0 {
			return false, "no meta leader"
		}
		if got := c.Servers[i].JetStreamClusterPeers(); len(got) != peers {
			return false, fmt.Sprintf("meta leader %s sees peers %v, want %d", c.Servers[i].Name(), got, peers)
		}
		for _, s := range c.Servers {
			if s != nil && !s.JetStreamIsCurrent() {
				return false, s.Name() + " is not current with the meta leader"
			}
		}
		return true, ""
	})
}

// MetaLeader is the index of the running node that is the JetStream meta
// leader, or -1.
func (c *Cluster) MetaLeader() int {
	for i, s := range c.Servers {
		if s != nil && s.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// StreamLeader is the index of the running node that leads stream (in the
// default account), or -1.
func (c *Cluster) StreamLeader(stream string) int {
	for i, s := range c.Servers {
		if s != nil && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// Shutdown stops node i, as a crash of its machine would (its clients
// fail over to another node); shutting a stopped node down does nothing.
func (c *Cluster) Shutdown(i int) {
	s := c.Servers[i]
	if s == nil {
		return
	}
	c.Servers[i] = nil
	s.Shutdown()
	s.WaitForShutdown()
}

// ConsumerLeader is the index of the running node that leads consumer of
// stream (in the default account), or -1.
func (c *Cluster) ConsumerLeader(stream, consumer string) int {
	for i, s := range c.Servers {
		if s != nil && s.JetStreamIsConsumerLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream, consumer) {
			return i
		}
	}
	return -1
}

// Lead makes node to the leader of stream or, with a consumer name, of
// that consumer of stream (JetStream's leader step-down with a preferred
// node), through nc, and waits until it is.
func (c *Cluster) Lead(nc *nats.Conn, to int, stream, consumer string) {
	c.t.Helper()
	subject, leader := "$JS.API.STREAM.LEADER.STEPDOWN."+stream, func() int { return c.StreamLeader(stream) }
	what := "stream " + stream
	if consumer != "" {
		subject, leader = "$JS.API.CONSUMER.LEADER.STEPDOWN."+stream+"."+consumer, func() int { return c.ConsumerLeader(stream, consumer) }
		what = "consumer " + stream + "/" + consumer
	}
	req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, c.Servers[to].Name())
	EventuallyWithin(c.t, ClusterFormsWithin, c.Servers[to].Name()+" leading "+what, func() (bool, string) {
		if leader() == to {
			return true, ""
		}
		if leader() < 0 {
			return false, "an election under way"
		}
		reply, err := nc.Request(subject, []byte(req), 5*time.Second)
		if err != nil {
			return false, err.Error()
		}
		// Give the election the step-down starts time to end before
		// asking again.
		for deadline := time.Now().Add(5 * time.Second); leader() != to && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		return leader() == to, fmt.Sprintf("leader %d after a step-down answered %s", leader(), reply.Data)
	})
}
