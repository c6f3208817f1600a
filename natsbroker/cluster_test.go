package natsbroker_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/internal/natstest"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/natsbroker"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/wsauthtest"
)

// wsauth Servers clustered on a real NATS server: the cluster issue's
// promises end to end, over loopback sockets.

type wsNode struct {
	srv *wsauth.Server
	hs  *httptest.Server
	url string
}

type wsCluster struct {
	nats  *natstest.Server
	idp   *wsauthtest.IdP
	nodes []*wsNode
}

// newWSCluster starts a NATS server and n wsauth Servers, each with a NATS
// connection of its own.
func newWSCluster(t testing.TB, n int) *wsCluster {
	t.Helper()
	c := &wsCluster{nats: natstest.Start(t), idp: wsauthtest.NewIdP(t, wsauthtest.IdPOptions{})}
	for range n {
		c.addNode(t)
	}
	return c
}

func (c *wsCluster) addNode(t testing.TB) *wsNode {
	t.Helper()
	return c.addNodeWith(t, newBroker(t, c.nats.URL(), clusterOptions), nil)
}

// clusterOptions are the natsbroker options of a wsCluster's nodes.
var clusterOptions = natsbroker.Options{MaxMessages: 2000, KeepFor: time.Hour}

// addNodeWith adds a node on broker b, with its Options changed by
// configure if not nil.
func (c *wsCluster) addNodeWith(t testing.TB, b broker.Broker, configure func(*wsauth.Options)) *wsNode {
	t.Helper()
	opts := wsauth.Options{Verifier: c.idp.Verifier(t), Broker: b}
	if configure != nil {
		configure(&opts)
	}
	srv, err := wsauth.New(opts)
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	nd := &wsNode{srv: srv, hs: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http")}
	t.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		hs.Close()
	})
	c.nodes = append(c.nodes, nd)
	return nd
}

func (c *wsCluster) p(sub string) wsauth.Principal {
	return wsauth.Principal{Issuer: c.idp.Issuer(), Subject: sub}
}

// login connects to nd as sub, resuming from at if not nil.
func (c *wsCluster) login(t testing.TB, nd *wsNode, sub string, at *protocol.Position) (*wstest.Conn, protocol.ServerFrame) {
	t.Helper()
	return c.loginWith(t, nd, c.idp.Token(sub, time.Hour), at)
}

// loginToken connects to nd with token.
func (c *wsCluster) loginToken(t testing.TB, nd *wsNode, token string) (*wstest.Conn, protocol.ServerFrame) {
	t.Helper()
	return c.loginWith(t, nd, token, nil)
}

func (c *wsCluster) loginWith(t testing.TB, nd *wsNode, token string, at *protocol.Position) (*wstest.Conn, protocol.ServerFrame) {
	t.Helper()
	conn, err := wstest.Dial(nd.url, nil)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.WriteText(string(protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeAuth, Token: token, Resume: at}))))
	ok := next(t, conn)
	require.Equal(t, protocol.TypeAuthOK, ok.Type, "%+v", ok)
	return conn, ok
}

// next reads the next frame.
func next(t testing.TB, conn *wstest.Conn) protocol.ServerFrame {
	t.Helper()
	conn.Timeout = 10 * time.Second
	b, err := conn.Next()
	require.NoError(t, err)
	f, err := protocol.DecodeServer(b)
	require.NoError(t, err)
	return f
}

func TestClusterOnNATS(t *testing.T) {
	t.Parallel()
	c := newWSCluster(t, 3)
	a, b, d := c.nodes[0], c.nodes[1], c.nodes[2]
	alice, _ := c.login(t, b, "alice", nil)
	alice2, _ := c.login(t, d, "alice", nil)
	bob, okBob := c.login(t, d, "bob", nil)

	// A message to alice sent on a node where she has no session.
	n, err := a.srv.SendToPrincipals(context.Background(), json.RawMessage(`"hi alice"`), c.p("alice"))
	require.NoError(t, err)
	assert.Zero(t, n, "no session of alice on node a")
	for _, conn := range []*wstest.Conn{alice, alice2} {
		m := next(t, conn)
		assert.Equal(t, uint64(1), m.Seq)
		assert.JSONEq(t, `"hi alice"`, string(m.Data))
	}

	require.NoError(t, a.srv.Send(context.Background(), okBob.Session, json.RawMessage(`"to bob's session"`)))
	assert.JSONEq(t, `"to bob's session"`, string(next(t, bob).Data))
	assert.ErrorIs(t, a.srv.Send(context.Background(), d.srv.Node()+".nobody", json.RawMessage(`1`)), wsauth.ErrSessionNotFound)

	_, err = a.srv.Broadcast(context.Background(), json.RawMessage(`"everyone"`))
	require.NoError(t, err)
	for _, conn := range []*wstest.Conn{alice, alice2, bob} {
		assert.JSONEq(t, `"everyone"`, string(next(t, conn).Data))
	}

	// Revoke everywhere, within a bound: measured here, documented in
	// docs/cluster.md.
	start := time.Now()
	_, err = a.srv.Revoke(context.Background(), c.p("alice"))
	require.NoError(t, err)
	for _, conn := range []*wstest.Conn{alice, alice2} {
		cl, _, err := conn.ReadClose()
		require.NoError(t, err)
		assert.Equal(t, int(protocol.CloseForbidden), cl.Code)
	}
	took := time.Since(start)
	t.Logf("revoke reached every node in %v", took)
	assert.Less(t, took, 2*time.Second)
	texts, err := bob.Sync()
	require.NoError(t, err)
	assert.Empty(t, texts)
}

// TestClusterBounceOnNATS: 1,000 messages to a user whose client is bounced
// between three nodes (a clean close, a dropped connection, a node shut
// down) all arrive, in order, exactly once.
func TestClusterBounceOnNATS(t *testing.T) {
	t.Parallel()
	const total = 1000
	c := newWSCluster(t, 3)
	first, ok := c.login(t, c.nodes[0], "hal", nil)
	sent := make(chan error, 1)
	go func() {
		sender := c.nodes[0].srv
		for i := range total {
			if _, err := sender.SendToPrincipals(context.Background(), json.RawMessage(strconv.Itoa(i)), c.p("hal")); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	at := protocol.Position{Epoch: ok.Epoch, Seq: ok.Seq}
	live := c.nodes
	conn := first
	got := 0
	for round := 0; got < total; round++ {
		if round > 0 {
			nd := live[round%len(live)]
			var ok protocol.ServerFrame
			conn, ok = c.login(t, nd, "hal", &at)
			require.Equal(t, protocol.ResumeOK, ok.Resume, "round %d", round)
		}
		for k := 0; k < 150 && got < total; k++ {
			m := next(t, conn)
			require.Equal(t, protocol.TypeMessage, m.Type, "%+v", m)
			if at.Epoch == "" {
				at.Epoch = m.Epoch
			}
			require.Equal(t, at.Seq+1, m.Seq, "round %d: gap or repeat", round)
			require.Equal(t, strconv.Itoa(got), string(m.Data))
			at = protocol.Position{Epoch: m.Epoch, Seq: m.Seq}
			got++
		}
		switch {
		case round == 2:
			nd := live[round%len(live)]
			require.NoError(t, nd.srv.Shutdown(context.Background()))
			live = live[:2]
		case round%2 == 0:
			conn.Close()
		default:
			conn.Abort()
		}
	}
	require.NoError(t, <-sent)
}

// TestNATSDownMidTraffic: while NATS is down, sessions stay up, sends reach
// this node's sessions and report broker.ErrUnavailable; once NATS is back,
// the stream goes on and a client resuming on another node gets every
// message that was accepted.
func TestNATSDownMidTraffic(t *testing.T) {
	t.Parallel()
	c := newWSCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	conn, ok := c.login(t, a, "ivy", nil)
	send := func(i int) error {
		_, err := a.srv.SendToPrincipals(context.Background(), json.RawMessage(strconv.Itoa(i)), c.p("ivy"))
		return err
	}
	require.NoError(t, send(1))
	m := next(t, conn)
	at := protocol.Position{Epoch: m.Epoch, Seq: m.Seq}

	c.nats.Stop()
	err := send(2)
	require.True(t, errors.Is(err, broker.ErrUnavailable), "%v", err)
	m = next(t, conn)
	assert.JSONEq(t, "2", string(m.Data), "this node's session still gets it")
	assert.Zero(t, m.Seq, "outside the stream")

	c.nats.Start()
	var accepted []string
	require.Eventually(t, func() bool { return send(3) == nil }, 10*time.Second, 20*time.Millisecond)
	accepted = append(accepted, "3")
	require.NoError(t, send(4))
	accepted = append(accepted, "4")
	conn.Close()

	resumed, ok2 := c.login(t, b, "ivy", &at)
	require.Equal(t, protocol.ResumeOK, ok2.Resume)
	var got []string
	for len(got) < len(accepted) {
		m := next(t, resumed)
		got = append(got, string(m.Data))
	}
	// A send whose acknowledgement was lost while NATS went away may be
	// in the stream too: every accepted one is, in order.
	assert.Subset(t, got, accepted)
	assert.Equal(t, accepted[len(accepted)-1], got[len(got)-1])
	assert.Equal(t, ok.Epoch, "", "ivy's stream was empty when she connected")
}

// TestNodeKilledMidReauth: a node dies (its NATS connection closed without
// a Leave, its listener and its client's socket gone) while a session on
// it is expired, awaiting a fresh token, with messages accepted for the
// user meanwhile. The client resumes on another node with a fresh token
// and gets every accepted message, those buffered on the dead node and
// those sent after its death, in order and once.
func TestNodeKilledMidReauth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := wsauthtest.NewClock(time.Now())
	c := &wsCluster{nats: natstest.Start(t), idp: wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Clock: clock})}
	onClock := func(o *wsauth.Options) { o.Clock = clock }
	nc := connect(t, c.nats.URL())
	b, err := natsbroker.New(ctx, nc, clusterOptions)
	require.NoError(t, err)
	doomed := c.addNodeWith(t, b, onClock)
	survivor := c.addNodeWith(t, newBroker(t, c.nats.URL(), clusterOptions), onClock)
	kim := c.p("kim")
	send := func(i int) {
		t.Helper()
		n, err := survivor.srv.SendToPrincipals(ctx, json.RawMessage(strconv.Itoa(i)), kim)
		require.NoError(t, err)
		assert.Zero(t, n, "kim's session is on the other node")
	}

	conn, ok := c.loginWith(t, doomed, c.idp.Token("kim", time.Minute), nil)
	at := protocol.Position{Epoch: ok.Epoch, Seq: ok.Seq}
	for i := range 3 {
		send(i)
		m := next(t, conn)
		require.Equal(t, protocol.TypeMessage, m.Type, "%+v", m)
		require.JSONEq(t, strconv.Itoa(i), string(m.Data))
		at = protocol.Position{Epoch: m.Epoch, Seq: m.Seq}
	}

	clock.Advance(time.Minute) // past exp: reauth_required, then expired
	require.Equal(t, protocol.TypeReauthRequired, next(t, conn).Type)
	for i := 3; i < 6; i++ {
		send(i)
	}
	// The session is expired: its messages are refused, and those sent
	// to it are held back.
	require.NoError(t, conn.WriteText(`{"type":"message","id":"m1","data":1}`))
	refused := next(t, conn)
	require.Equal(t, protocol.TypeError, refused.Type, "%+v", refused)
	require.Equal(t, protocol.ErrorReauthRequired, refused.Code)
	conn.Timeout = 300 * time.Millisecond
	_, err = conn.Next()
	require.Error(t, err, "nothing is delivered while expired")

	nc.Close()
	doomed.hs.Listener.Close()
	conn.Abort()
	for i := 6; i < 9; i++ {
		send(i)
	}

	resumed, ok2 := c.loginWith(t, survivor, c.idp.Token("kim", time.Hour), &at)
	require.Equal(t, protocol.ResumeOK, ok2.Resume, "%+v", ok2)
	for i := 3; i < 9; i++ {
		m := next(t, resumed)
		require.Equal(t, protocol.TypeMessage, m.Type, "%+v", m)
		require.JSONEq(t, strconv.Itoa(i), string(m.Data))
		require.Equal(t, at.Seq+1, m.Seq, "gap or repeat")
		at = protocol.Position{Epoch: m.Epoch, Seq: m.Seq}
	}
	resumed.Timeout = 300 * time.Millisecond
	_, err = resumed.Next()
	require.Error(t, err, "nothing more: no message twice")
}

// TestRevocationSurvivesRestart: a revoked token stays refused on every
// node, including one that starts after the revocation (a node restarted),
// which reads it from JetStream when it joins.
func TestRevocationSurvivesRestart(t *testing.T) {
	t.Parallel()
	c := newWSCluster(t, 2)
	old := c.idp.Token("rex", time.Hour)
	conn, _ := c.loginToken(t, c.nodes[1], old)
	_, err := c.nodes[0].srv.Revoke(context.Background(), c.p("rex"))
	require.NoError(t, err)
	cl, _, err := conn.ReadClose()
	require.NoError(t, err)
	assert.Equal(t, int(protocol.CloseForbidden), cl.Code)

	restarted := c.addNode(t)
	for _, nd := range []*wsNode{c.nodes[0], c.nodes[1], restarted} {
		conn, err := wstest.Dial(nd.url, nil)
		require.NoError(t, err)
		require.NoError(t, conn.Auth(old))
		cl, _, err := conn.ReadClose()
		require.NoError(t, err)
		assert.Equal(t, wstest.Close{Code: int(protocol.CloseForbidden), Reason: "token revoked"}, cl)
		conn.Close()
	}
	// A token issued after the revocation ("iat" counts whole seconds:
	// from the next second on) gets in.
	later := time.Now().Add(2 * time.Second)
	fresh := c.idp.Sign(jwt.MapClaims{"iss": c.idp.Issuer(), "aud": c.idp.Audience(), "sub": "rex",
		"iat": later.Unix(), "exp": later.Add(time.Hour).Unix()})
	_, ok := c.loginToken(t, restarted, fresh)
	assert.Equal(t, "rex", ok.Subject)
}
