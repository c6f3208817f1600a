package client_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/client"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/wsauthtest"
)

// cluster is a wsauth cluster in this process: servers sharing one
// broker (docs/cluster.md), reached through one URL whose listener hands
// every upgrade to the serving node of the moment, as a load balancer
// would. Two nodes serve clients; the test moves clients between them by
// shutting one down (1001; a new node takes its place, as in a rolling
// restart) or by cutting its connections (no close frame). A third node
// serves no client: the test sends through it, as an application's API
// node would, so that sending never depends on the node a client is on.
// Nodes take tokens in the Authorization header too, and the serving node
// exchanges tickets at ticketURL (kept in the shared broker).
type cluster struct {
	t         *testing.T
	idp       *wsauthtest.IdP
	verifier  *jwks.Verifier
	newBroker func() broker.Broker // the broker of a new node
	sender    *wsauth.Server
	url       string
	ticketURL string // the serving node's TicketHandler
	// upgrades records upgrade requests and ticket exchanges (see record).
	upgrades chan upgrade

	mu      sync.Mutex
	nodes   [2]*node
	serving int // the index in nodes of the node that takes connections
}

// node is a serving node and the connections it was handed.
type node struct {
	srv *wsauth.Server

	mu    sync.Mutex
	conns []net.Conn
}

type connKey struct{}

// newCluster starts a cluster whose nodes get their brokers from
// newBroker: the same broker.Memory for all, or a connection each to one
// NATS server.
func newCluster(t *testing.T, newBroker func() broker.Broker) *cluster {
	t.Helper()
	idp := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{})
	cl := &cluster{t: t, idp: idp, verifier: idp.Verifier(t), newBroker: newBroker, upgrades: make(chan upgrade, 100)}
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nd := cl.servingNode()
		record(cl.upgrades, r)
		if r.URL.Path == "/ticket" {
			nd.srv.TicketHandler().ServeHTTP(w, r)
			return
		}
		nd.mu.Lock()
		nd.conns = append(nd.conns, r.Context().Value(connKey{}).(net.Conn))
		nd.mu.Unlock()
		nd.srv.ServeHTTP(w, r)
	}))
	hs.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	hs.Start()
	t.Cleanup(hs.Close) // after the nodes' shutdowns, registered later
	cl.url = "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	cl.ticketURL = hs.URL + "/ticket"
	cl.sender = cl.newServer()
	cl.nodes = [2]*node{{srv: cl.newServer()}, {srv: cl.newServer()}}
	return cl
}

// newServer starts a node, shut down when the test ends.
func (cl *cluster) newServer() *wsauth.Server {
	cl.t.Helper()
	srv, err := wsauth.New(wsauth.Options{
		Verifier:      cl.verifier,
		Broker:        cl.newBroker(),
		Logger:        slog.New(slog.DiscardHandler),
		TokenInHeader: true,
	})
	require.NoError(cl.t, err)
	cl.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		require.NoError(cl.t, srv.Shutdown(ctx))
	})
	return srv
}

func (cl *cluster) servingNode() *node {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.nodes[cl.serving]
}

// token mints a token for sub that outlives the test.
func (cl *cluster) token(sub string) client.TokenSource {
	return client.TokenFunc(func(context.Context) (string, error) { return cl.idp.Token(sub, time.Hour), nil })
}

// send appends data to sub's stream, through the sender node.
func (cl *cluster) send(sub, data string) {
	cl.t.Helper()
	p := wsauth.Principal{Issuer: cl.idp.Issuer(), Subject: sub}
	_, err := cl.sender.SendToPrincipals(context.Background(), json.RawMessage(data), p)
	require.NoError(cl.t, err)
}

type bounce int

const (
	shutdown bounce = iota // the serving node shuts down: 1001
	drop                   // the serving node's connections are cut: 1006
)

func (b bounce) String() string { return [...]string{"shutdown", "drop"}[b] }

// bounce moves the clients of the serving node to the other one: new
// connections go there, then the serving node shuts down (a new node
// replaces it) or loses its connections.
func (cl *cluster) bounce(how bounce) {
	cl.t.Helper()
	cl.mu.Lock()
	old := cl.serving
	nd := cl.nodes[old]
	cl.serving = 1 - old
	cl.mu.Unlock()
	switch how {
	case shutdown:
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		require.NoError(cl.t, nd.srv.Shutdown(ctx))
		fresh := &node{srv: cl.newServer()}
		cl.mu.Lock()
		cl.nodes[old] = fresh
		cl.mu.Unlock()
	case drop:
		nd.mu.Lock()
		for _, c := range nd.conns {
			_ = c.Close()
		}
		nd.conns = nil
		nd.mu.Unlock()
	}
}

// waitServed waits until c is Active on the serving node.
func (cl *cluster) waitServed(c *client.Client) {
	cl.t.Helper()
	prefix := cl.servingNode().srv.Node() + "."
	require.Eventually(cl.t, func() bool {
		return c.State() == client.Active && strings.HasPrefix(c.Session(), prefix)
	}, wait, time.Millisecond, "the client did not move to the serving node")
}
