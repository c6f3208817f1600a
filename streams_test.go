package wsauth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// Users' streams and resume (docs/protocol.md, "Resume"), on one node with a
// Memory broker and on in-process clusters of several.

// streamEnv starts a server with a Memory broker on the env's clock.
func streamEnv(t *testing.T, opts broker.MemoryOptions, configure func(*wsauth.Options)) *hostileEnv {
	t.Helper()
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.ReauthGrace = 5 * time.Second
		if configure != nil {
			configure(o)
		}
	}, broker: func(now func() time.Time) broker.Broker {
		if opts.Now == nil {
			opts.Now = now
		}
		return broker.NewMemory(opts)
	}})
	return h
}

// pos is a client's view of its place in its stream.
type pos struct {
	epoch string
	seq   uint64
}

func (p pos) resume() string {
	return fmt.Sprintf(`,"resume":{"epoch":%q,"seq":%d}`, p.epoch, p.seq)
}

// dialResume connects, authenticates with token (resuming from from, if
// not nil) and returns the connection, the auth_ok frame and the position
// it starts at.
func dialResume(t *testing.T, h *hostileEnv, token string, from *pos) (*wstest.Conn, map[string]any, pos) {
	t.Helper()
	c := h.open(t, nil)
	frame := `{"type":"auth","token":"` + token + `"`
	if from != nil {
		frame += from.resume()
	}
	require.NoError(t, c.WriteText(frame+"}"))
	ok := readType(t, c, "auth_ok")
	require.Contains(t, ok, "epoch", "a server with a broker says where the session starts")
	return c, ok, pos{ok["epoch"].(string), uint64(ok["seq"].(float64))}
}

// readStream reads n stream messages, checking that each follows at from,
// and returns their data and the position after them.
func readStream(t *testing.T, c *wstest.Conn, at pos, n int) ([]string, pos) {
	t.Helper()
	var got []string
	for range n {
		g, p := checkStream(t, readType(t, c, "message"), at)
		got, at = append(got, g), p
	}
	return got, at
}

// checkStream checks that m is the stream message after at and returns its
// data and position.
func checkStream(t *testing.T, m map[string]any, at pos) (string, pos) {
	t.Helper()
	require.Contains(t, m, "seq", "not a stream message: %v", m)
	seq := uint64(m["seq"].(float64))
	epoch := m["epoch"].(string)
	if epoch == at.epoch {
		require.Equal(t, at.seq+1, seq, "gap or repeat in %v", m)
	} else {
		require.Equal(t, uint64(1), seq, "a new epoch starts at 1: %v", m)
	}
	b, err := json.Marshal(m["data"])
	require.NoError(t, err)
	return string(b), pos{epoch, seq}
}

func sendTo(t *testing.T, h *hostileEnv, sub string, data ...string) {
	t.Helper()
	for _, d := range data {
		_, err := h.srv.SendToPrincipals(context.Background(), json.RawMessage(d), h.p(sub))
		require.NoError(t, err)
	}
}

// TestResume: a client that presents the last position it got receives
// what it missed, after auth_ok, in order, exactly once, then live traffic;
// one that got nothing resumes from the start; one whose position is gone
// is told "lost" and goes on from the head.
func TestResume(t *testing.T) {
	t.Parallel()
	h := streamEnv(t, broker.MemoryOptions{MaxMessages: 4}, nil)
	tok := func() string { return h.idp.Token("ada", time.Hour) }

	c, ok, at := dialResume(t, h, tok(), nil)
	assert.Equal(t, pos{"", 0}, at, "an empty stream")
	assert.NotContains(t, ok, "resume", "no resume asked, no answer")
	sendTo(t, h, "ada", "1", "2")
	got, at := readStream(t, c, at, 2)
	assert.Equal(t, []string{"1", "2"}, got)
	c.Close()

	sendTo(t, h, "ada", "3", "4") // missed
	c, ok, start := dialResume(t, h, tok(), &at)
	assert.Equal(t, protocol.ResumeOK, ok["resume"])
	assert.Equal(t, at, start, "it starts where the client was")
	sendTo(t, h, "ada", "5")
	got, at = readStream(t, c, at, 3)
	assert.Equal(t, []string{"3", "4", "5"}, got)
	quiet(t, c)
	c.Close()

	// From the start: a client whose first connection got nothing.
	c2, _, nothing := dialResume(t, h, h.idp.Token("bea", time.Hour), nil)
	c2.Close()
	sendTo(t, h, "bea", `"b1"`, `"b2"`)
	c2, ok, _ = dialResume(t, h, h.idp.Token("bea", time.Hour), &nothing)
	assert.Equal(t, protocol.ResumeOK, ok["resume"])
	got, _ = readStream(t, c2, nothing, 2)
	assert.Equal(t, []string{`"b1"`, `"b2"`}, got)
	quiet(t, c2)
}

// TestResumeLost covers each way a position can be lost, one connection
// each.
func TestResumeLost(t *testing.T) {
	t.Parallel()
	h := streamEnv(t, broker.MemoryOptions{MaxMessages: 4, KeepFor: time.Minute}, nil)
	c, _, at := dialResume(t, h, h.idp.Token("cy", time.Hour), nil)
	sendTo(t, h, "cy", "1")
	_, at = readStream(t, c, at, 1)
	c.Close()
	sendTo(t, h, "cy", "2", "3", "4", "5", "6") // one more than the broker keeps
	cases := []struct {
		name string
		from pos
	}{
		{"evicted", at},
		{"another epoch", pos{"another", 1}},
		{"ahead of the stream", pos{at.epoch, 99}},
		{"an epoch without a seq", pos{"", 3}},
	}
	for _, tc := range cases {
		c, ok, start := dialResume(t, h, h.idp.Token("cy", time.Hour), &tc.from)
		assert.Equal(t, protocol.ResumeLost, ok["resume"], tc.name)
		assert.Equal(t, pos{at.epoch, 6}, start, tc.name)
		quiet(t, c)
		c.Close()
	}
	// Too old: KeepFor passed.
	c, _, at = dialResume(t, h, h.idp.Token("cy", time.Hour), nil)
	c.Close()
	sendTo(t, h, "cy", "7")
	h.clock.Advance(time.Minute + time.Second)
	c, ok, _ := dialResume(t, h, h.idp.Token("cy", time.Hour), &at)
	assert.Equal(t, protocol.ResumeLost, ok["resume"], "older than KeepFor")
	quiet(t, c)
}

// TestStreamsArePerPrincipal is red team item 3 for streams: alice of issuer
// A and alice of issuer B have a stream each.
func TestStreamsArePerPrincipal(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{issuers: 2, broker: memoryBroker})
	a, b := h.idps[0], h.idps[1]
	aliceA := wsauth.Principal{Issuer: a.Issuer(), Subject: "alice"}
	cA, okA, atA := dialResume(t, h, a.Token("alice", time.Hour), nil)
	cB, _, atB := dialResume(t, h, b.Token("alice", time.Hour), nil)
	_, err := h.srv.SendToPrincipals(context.Background(), json.RawMessage(`"for A"`), aliceA)
	require.NoError(t, err)
	got, atA := readStream(t, cA, atA, 1)
	assert.Equal(t, []string{`"for A"`}, got)
	quiet(t, cB)
	cB.Close()
	_, ok, _ := dialResume(t, h, b.Token("alice", time.Hour), &atB)
	assert.Equal(t, protocol.ResumeOK, ok["resume"])
	_ = atA
	n, err := h.srv.Revoke(context.Background(), aliceA)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	cl, _, err := cA.ReadClose()
	require.NoError(t, err)
	assert.Equal(t, wstest.Close{Code: int(protocol.CloseForbidden), Reason: "session revoked"}, cl)
	assert.Equal(t, protocol.CloseForbidden, h.closeEventOf(t, okA["session"].(string)).code)
}

// TestResumeAfterExpiry: the messages a session held when its grace ran
// out (4440) are not handed to OnUndelivered: the stream keeps them, and
// the next connection resumes with them. Messages outside the stream (a
// Send to the session) still go to OnUndelivered. Two tabs that missed the
// same messages (red team item 6) each get them once.
func TestResumeAfterExpiry(t *testing.T) {
	t.Parallel()
	h := streamEnv(t, broker.MemoryOptions{}, nil)
	c1, ok1, at := dialResume(t, h, h.idp.Token("dee", time.Minute), nil)
	c2, _, _ := dialResume(t, h, h.idp.Token("dee", time.Minute), nil)
	h.clock.Advance(time.Minute)
	readType(t, c1, "reauth_required")
	readType(t, c2, "reauth_required")
	sendTo(t, h, "dee", "1", "2")
	require.NoError(t, h.srv.Send(context.Background(), ok1["session"].(string), json.RawMessage(`"just c1"`)))
	h.clock.Advance(5 * time.Second)
	h.expectClose(c1, protocol.CloseSessionExpired, "session expired")
	h.expectClose(c2, protocol.CloseSessionExpired, "session expired")
	assert.Equal(t, []string{`"just c1"`}, h.undeliveredFor("dee"))

	for range 2 { // each tab resumes from where it was
		c, ok, _ := dialResume(t, h, h.idp.Token("dee", time.Hour), &at)
		assert.Equal(t, protocol.ResumeOK, ok["resume"])
		got, _ := readStream(t, c, at, 2)
		assert.Equal(t, []string{"1", "2"}, got)
		quiet(t, c)
	}
}

// TestStreamLagCatchesUp: messages of the user's stream that find the
// session's outbox full, from senders that cannot wait, are not lost and do
// not close the session: it falls behind its stream and, once its outbox has
// room, reads them from the stream's history, in order.
func TestStreamLagCatchesUp(t *testing.T) {
	t.Parallel()
	h := streamEnv(t, broker.MemoryOptions{}, func(o *wsauth.Options) { o.BufferMessages = 4 })
	c, _, at := dialResume(t, h, h.idp.Token("eve", time.Minute), nil)
	h.clock.Advance(time.Minute) // expired: the outbox holds everything
	readType(t, c, "reauth_required")
	var sent []string
	for i := range 20 {
		sent = append(sent, strconv.Itoa(i))
	}
	sendTo(t, h, "eve", sent...)
	require.NoError(t, c.Auth(h.idp.Token("eve", time.Hour)))
	readType(t, c, "auth_ok")
	got, at := readStream(t, c, at, 20)
	assert.Equal(t, sent, got)
	quiet(t, c)
	sendTo(t, h, "eve", `"live"`)
	got, _ = readStream(t, c, at, 1)
	assert.Equal(t, []string{`"live"`}, got, "caught up: live messages reach it again")
}

// memoryBroker is a hostileOptions.broker: a Memory on the env's clock.
func memoryBroker(now func() time.Time) broker.Broker {
	return broker.NewMemory(broker.MemoryOptions{Now: now})
}

// newCluster starts n servers on one broker, sharing identity providers
// and clock; mk makes the broker, given that clock.
func newCluster(t *testing.T, n int, mk func(now func() time.Time) broker.Broker) ([]*hostileEnv, broker.Broker) {
	t.Helper()
	var b broker.Broker
	shared := func(now func() time.Time) broker.Broker {
		if b == nil {
			b = mk(now)
		}
		return b
	}
	nodes := []*hostileEnv{newHostileEnv(t, hostileOptions{broker: shared})}
	for len(nodes) < n {
		nodes = append(nodes, newHostileEnv(t, hostileOptions{peer: nodes[0], broker: shared}))
	}
	return nodes, b
}

// memory makes a Memory broker on the env's clock with opts.
func memory(opts broker.MemoryOptions) func(now func() time.Time) broker.Broker {
	return func(now func() time.Time) broker.Broker {
		opts.Now = now
		return broker.NewMemory(opts)
	}
}

// TestClusterDelivery: a message to a user reaches the user's sessions on
// every node, in one order; a Send reaches a session of another node by its
// id; a broadcast and a revocation reach every node.
func TestClusterDelivery(t *testing.T) {
	t.Parallel()
	nodes, _ := newCluster(t, 3, memory(broker.MemoryOptions{}))
	a, b, c := nodes[0], nodes[1], nodes[2]
	ca, oka, atA := dialResume(t, a, a.idp.Token("fay", time.Hour), nil)
	cb, _, atB := dialResume(t, b, a.idp.Token("fay", time.Hour), nil)
	cc, okc, _ := dialResume(t, c, a.idp.Token("gus", time.Hour), nil)

	// From a node with no session of fay, and from one with one.
	sendTo(t, c, "fay", "1")
	sendTo(t, a, "fay", "2")
	sendTo(t, b, "fay", "3")
	gotA, _ := readStream(t, ca, atA, 3)
	gotB, _ := readStream(t, cb, atB, 3)
	assert.Equal(t, []string{"1", "2", "3"}, gotA)
	assert.Equal(t, gotA, gotB)

	require.NoError(t, a.srv.Send(context.Background(), okc["session"].(string), json.RawMessage(`"to gus"`)))
	assert.Equal(t, "to gus", readType(t, cc, "message")["data"])
	assert.ErrorIs(t, a.srv.Send(context.Background(), b.srv.Node()+".nobody", json.RawMessage(`1`)), wsauth.ErrSessionNotFound)
	assert.ErrorIs(t, b.srv.Send(context.Background(), oka["session"].(string)+"x", json.RawMessage(`1`)), wsauth.ErrSessionNotFound)

	n, err := b.srv.Broadcast(context.Background(), json.RawMessage(`"all"`))
	require.NoError(t, err)
	assert.Equal(t, 1, n, "this node's sessions")
	for _, conn := range []*wstest.Conn{ca, cb, cc} {
		assert.Equal(t, "all", readType(t, conn, "message")["data"])
	}

	n, err = c.srv.Revoke(context.Background(), a.p("fay"))
	require.NoError(t, err)
	assert.Zero(t, n, "no session of fay on this node")
	a.expectClose(ca, protocol.CloseForbidden, "session revoked")
	b.expectClose(cb, protocol.CloseForbidden, "session revoked")
	quiet(t, cc)
}

// TestClusterBounce is the cluster issue's central promise: 1,000 messages
// to a user whose client is bounced between three nodes (a clean close, a
// dropped connection, a node shut down) all arrive, in order, exactly once.
func TestClusterBounce(t *testing.T) {
	t.Parallel()
	const total = 1000
	nodes, _ := newCluster(t, 3, memory(broker.MemoryOptions{MaxMessages: total}))
	sender := nodes[0]
	first, _, start := dialResume(t, nodes[0], sender.idp.Token("hal", time.Hour), nil)
	sent := make(chan error, 1)
	go func() {
		for i := range total {
			if _, err := sender.srv.SendToPrincipals(context.Background(), json.RawMessage(strconv.Itoa(i)), sender.p("hal")); err != nil {
				sent <- err
				return
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // spread the sends over the bounces
			}
		}
		sent <- nil
	}()
	var at *pos
	next := 0
	live := nodes
	for round := 0; next < total; round++ {
		node := live[round%len(live)]
		c := first
		if round > 0 {
			var ok map[string]any
			c, ok, start = dialResume(t, node, node.idp.Token("hal", time.Hour), at)
			require.Equal(t, protocol.ResumeOK, ok["resume"], "round %d", round)
		}
		here := start
		// Read a few, then leave in one of three ways. (A sender that
		// outpaces the client does not get it closed: it falls behind
		// and catches up from the stream.)
		for k := 0; k < 150 && next < total; k++ {
			got, p := readStream(t, c, here, 1)
			require.Equal(t, strconv.Itoa(next), got[0], "round %d", round)
			next++
			here = p
		}
		at = &here
		switch {
		case round == 2:
			// The node shuts down: its client gets 1001, and the node
			// is gone for the rest of the test.
			require.NoError(t, node.srv.Shutdown(context.Background()))
			cl, _, err := c.ReadClose()
			if err == nil {
				assert.Equal(t, int(protocol.CloseGoingAway), cl.Code)
			}
			live = nodes[:2]
		case round%2 == 0:
			c.Close()
		default:
			c.Abort() // a TCP reset: no close frame
		}
	}
	require.NoError(t, <-sent)
}

// unreliable is a Broker whose members' Handlers get other nodes' stream
// messages out of order (each pair swapped) and with some lost (every
// fifth), as a broker may deliver them around a reconnect.
type unreliable struct{ broker.Broker }

func (u unreliable) Join(ctx context.Context, node string, h broker.Handler) (broker.Member, error) {
	return u.Broker.Join(ctx, node, &shuffler{Handler: h})
}

type shuffler struct {
	broker.Handler
	mu   sync.Mutex
	n    int
	held *broker.Message
}

func (s *shuffler) Deliver(m broker.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	switch {
	case s.n%5 == 0:
		return // lost
	case s.held == nil:
		s.held = &m
	default:
		s.Handler.Deliver(m)
		s.Handler.Deliver(*s.held)
		s.held = nil
	}
}

// TestClusterOrdersAndFills: a node that gets another node's stream
// messages out of order, and some not at all, still hands them to its
// sessions in order, without a gap or a repeat: a late message waits for
// the ones before it, a lost one is read from the stream's history.
func TestClusterOrdersAndFills(t *testing.T) {
	t.Parallel()
	const total = 200
	nodes, _ := newCluster(t, 2, func(now func() time.Time) broker.Broker {
		return unreliable{broker.NewMemory(broker.MemoryOptions{MaxMessages: 2 * total, Now: now})}
	})
	a, b := nodes[0], nodes[1]
	c, _, at := dialResume(t, b, a.idp.Token("ida", time.Hour), nil)
	for i := range total {
		sendTo(t, a, "ida", strconv.Itoa(i))
	}
	// A message lost at the very end is noticed with the next one: keep
	// sending until the client has all of them.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				_, _ = a.srv.SendToPrincipals(context.Background(), json.RawMessage(`"tail"`), a.p("ida"))
			}
		}
	}()
	c.Timeout = 10 * time.Second
	got, _ := readStream(t, c, at, total)
	for i, g := range got {
		require.Equal(t, strconv.Itoa(i), g)
	}
}
