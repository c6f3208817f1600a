package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/client"
	"github.com/wsauth/wsauth/protocol"
)

// The server asks (reauth_required, 10s before exp) and the client answers
// on the same socket with a fresh token, round after round.
func TestServerAsksForReauth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.ReauthLead = 10 * time.Second })
	p, opts := e.newProbe("gus", time.Minute, nil)
	c := e.dial(opts)
	e.expect("auth:gus")
	session := c.Session()

	now := time.Duration(0)
	for round := 2; round <= 3; round++ {
		// exp is 1 min after the last auth; reauth_required comes at exp-10s.
		e.serverAsks(p, 50*time.Second)
		now += 50 * time.Second
		p.waitState(client.Reauthenticating)
		p.waitState(client.Active)
		e.expect("auth:gus")
		assert.EqualValues(t, round, p.calls.Load(), "one token per reauth")
		assert.Equal(t, session, c.Session(), "same socket, same session")
		assert.Equal(t, epoch.Add(now+time.Minute).Unix(), c.Expiry().Unix())
		s, ok := e.server().Session(session)
		require.True(t, ok)
		assert.Equal(t, epoch.Add(now+time.Minute).Unix(), s.Identity().ExpiresAt.Unix())
	}
	// Still usable both ways.
	require.NoError(t, c.Send(context.Background(), json.RawMessage(`"after"`)))
	e.expect(`msg:1:"after"`)
	e.send("gus", `"back"`)
	receive(t, c, `"back"`)
}

// Without being asked, the client refreshes RefreshBefore ahead of exp, on
// its own clock.
func TestRefreshesEarlyOnItsOwn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.ReauthLead = 5 * time.Second })
	p, opts := e.newProbe("hal", time.Minute, nil)
	opts.RefreshBefore = 20 * time.Second
	c := e.dial(opts)
	e.expect("auth:hal")
	session := c.Session()
	for round := 2; round <= 3; round++ {
		// The next refresh is due 40s after the last auth (exp-20s), well
		// before the server's reauth_required (exp-5s).
		e.clock.Advance(40 * time.Second)
		p.clock.Advance(40 * time.Second)
		p.waitState(client.Reauthenticating)
		p.waitState(client.Active)
		e.expect("auth:hal")
		assert.EqualValues(t, round, p.calls.Load())
		assert.Equal(t, session, c.Session())
		assert.Equal(t, epoch.Add(time.Duration(round-1)*40*time.Second+time.Minute).Unix(), c.Expiry().Unix())
	}
}

// tokenAfterGate returns a token source step that answers the first call
// at once and later ones when g opens.
func tokenAfterGate(e *env, sub string, ttl time.Duration, g gate) func(context.Context, int) (string, error) {
	return func(ctx context.Context, call int) (string, error) {
		tok := func() string { return e.idp.Token(sub, ttl) }
		if call == 1 {
			return tok(), nil
		}
		return g.wait(ctx, tok)
	}
}

// gatedReauth connects sub with a one-minute token to a server that asks
// for reauth 10s before exp; the client's later tokens wait for the gate.
func gatedReauth(t *testing.T, sub string) (*env, *probe, *client.Client, gate) {
	e := newEnv(t, func(o *wsauth.Options) { o.ReauthLead = 10 * time.Second })
	g := make(gate)
	p, opts := e.newProbe(sub, time.Minute, tokenAfterGate(e, sub, time.Minute, g))
	c := e.dial(opts)
	e.expect("auth:" + sub)
	return e, p, c, g
}

// While the token is expired the server buffers; after the reauth the
// client receives everything in order, without gap or duplicate.
func TestMessagesBufferedWhileExpiredArriveInOrder(t *testing.T) {
	t.Parallel()
	e, p, c, g := gatedReauth(t, "ida")
	e.send("ida", `{"n":0}`)
	receive(t, c, `{"n":0}`)

	e.serverAsks(p, time.Minute) // reauth_required, then expired
	p.waitState(client.Reauthenticating)
	for n := 1; n <= 5; n++ {
		e.send("ida", fmt.Sprintf(`{"n":%d}`, n))
	}
	nothingReceived(t, c)

	close(g)
	p.waitState(client.Active)
	for n := 1; n <= 5; n++ {
		receive(t, c, fmt.Sprintf(`{"n":%d}`, n))
	}
	e.send("ida", `{"n":6}`)
	receive(t, c, `{"n":6}`)
	nothingReceived(t, c)
}

// Sends while reauthenticating wait in the queue and reach the server
// after the reauth, in order.
func TestSendDuringReauthIsDeliveredAfterAuthOK(t *testing.T) {
	t.Parallel()
	e, p, c, g := gatedReauth(t, "jan")

	e.serverAsks(p, 50*time.Second) // reauth_required; the token is still valid
	p.waitState(client.Reauthenticating)
	for _, d := range []string{`"a"`, `"b"`, `"c"`} {
		require.NoError(t, c.Send(context.Background(), json.RawMessage(d)))
	}
	assert.Equal(t, client.Reauthenticating, c.State())
	e.quiet()

	close(g)
	e.expect("auth:jan", `msg:1:"a"`, `msg:2:"b"`, `msg:3:"c"`)
	require.NoError(t, c.Send(context.Background(), json.RawMessage(`"d"`)))
	e.expect(`msg:4:"d"`)
	assert.Empty(t, p.errors)
}

// A message that reaches the server after its token expired is refused
// with error 4401, not processed; the client sends it again after auth_ok.
func TestMessageRefusedWhileExpiredIsResent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.ReauthLead = 10 * time.Second })
	p, opts := e.newProbe("kai", time.Minute, nil)
	blocked, unblock := make(chan struct{}), make(chan struct{})
	opts.OnMessage = func(data json.RawMessage) {
		if string(data) == `"block"` {
			close(blocked)
			<-unblock
		}
	}
	c := e.dial(opts)
	e.expect("auth:kai")

	// Hold the client's reader, so it sees reauth_required only later.
	e.send("kai", `"block"`)
	<-blocked
	e.serverAsks(p, time.Minute) // reauth_required (unread), then expired
	require.NoError(t, c.Send(context.Background(), json.RawMessage(`"x"`)))
	require.Eventually(t, func() bool { return client.Written(c) == 1 }, wait, time.Millisecond,
		"the client writes x while it still believes the token valid")
	close(unblock)

	// Refused (4401) before the reauth, processed once after it.
	e.expect("auth:kai", `msg:1:"x"`)
	assert.Contains(t, p.logs.String(), "will resend")
	require.NoError(t, c.Send(context.Background(), json.RawMessage(`"y"`)))
	e.expect(`msg:2:"y"`)
	e.quiet()
	assert.Empty(t, p.errors, "a resent message is not reported")
}

// 4401 on a reauth means the source's fresh token was refused: the client
// stops rather than reconnect with the same source. Likewise 4403.
func TestRefusedReauthIsTerminal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.ReauthLead = 10 * time.Second })
	cases := []struct {
		name   string
		second func() string
		code   protocol.CloseCode
	}{
		{"expired token", func() string { return e.idp.Token("lea", -time.Second) }, protocol.CloseUnauthorized},
		{"garbage", func() string { return "x.y.z" }, protocol.CloseUnauthorized},
		{"another subject", func() string { return e.idp.Token("mallory", time.Hour) }, protocol.CloseForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, opts := e.newProbe("lea", time.Hour, func(_ context.Context, call int) (string, error) {
				if call == 1 {
					return e.idp.Token("lea", time.Hour), nil
				}
				return tc.second(), nil
			})
			opts.RefreshBefore = 59 * time.Minute // refresh 30 min in (half the lifetime)
			c := e.dial(opts)
			e.clock.Advance(time.Second) // the server's reauth interval
			// Half the lifetime; the probe's clock may be behind the
			// server's by the seconds earlier cases advanced it.
			p.clock.Advance(30*time.Minute + 5*time.Second)
			waitDone(t, c)
			var ce *protocol.CloseError
			require.ErrorAs(t, c.Err(), &ce)
			assert.Equal(t, tc.code, ce.Code)
			assert.EqualValues(t, 2, p.calls.Load(), "no further attempt")
		})
	}
}

func TestTokenSourceFailureOnReauthIsTerminal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	revoked := errors.New("refresh token revoked")
	p, opts := e.newProbe("max", time.Hour, func(_ context.Context, call int) (string, error) {
		if call == 1 {
			return e.idp.Token("max", time.Hour), nil
		}
		return "", revoked
	})
	c := e.dial(opts)
	e.expect("auth:max")
	p.clock.Advance(time.Hour - 30*time.Second)
	waitDone(t, c)
	assert.ErrorIs(t, c.Err(), client.ErrTokenSource)
	assert.ErrorIs(t, c.Err(), revoked)
	e.expect("close:1000")
}

// Close ends a reauth blocked in the token source.
func TestCloseDuringReauth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	p, opts := e.newProbe("ned", time.Hour, tokenAfterGate(e, "ned", time.Hour, make(gate)))
	c := e.dial(opts)
	p.clock.Advance(time.Hour - 30*time.Second)
	p.waitState(client.Reauthenticating)
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.Err(), client.ErrClosed)
}

func TestQueueIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	g := make(gate)
	p, opts := e.newProbe("ola", time.Hour, tokenAfterGate(e, "ola", time.Hour, g))
	opts.QueueSize = 2
	c := e.dial(opts)
	e.expect("auth:ola")
	e.clock.Advance(time.Second)                // the server's reauth interval
	p.clock.Advance(time.Hour - 30*time.Second) // own refresh, held at the gate
	p.waitState(client.Reauthenticating)

	ctx := context.Background()
	require.NoError(t, c.Send(ctx, json.RawMessage(`"a"`)))
	require.NoError(t, c.Send(ctx, json.RawMessage(`"b"`)))
	done, cancel := context.WithCancel(ctx)
	cancel()
	err := c.Send(done, json.RawMessage(`"c"`))
	assert.ErrorIs(t, err, client.ErrQueueFull)
	assert.ErrorIs(t, err, context.Canceled)

	// A patient sender waits for room.
	sent := make(chan error, 1)
	go func() { sent <- c.Send(ctx, json.RawMessage(`"c"`)) }()
	e.quiet()
	close(g)
	e.expect("auth:ola", `msg:1:"a"`, `msg:2:"b"`)
	require.NoError(t, <-sent)
	e.expect(`msg:3:"c"`) // the refused Send took no id
}

// TestRefreshTooSoonIsRetried: a refresh the server refuses as too soon
// after the previous auth frame (error 4429, not verified) leaves the
// session as it was; the client tries again once the interval has passed.
func TestRefreshTooSoonIsRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	p, opts := e.newProbe("rita", time.Hour, nil)
	opts.RefreshBefore = 59 * time.Minute
	c := e.dial(opts)
	e.expect("auth:rita")
	p.clock.Advance(30 * time.Minute) // the client refreshes; the server's clock has not moved
	p.waitState(client.Reauthenticating)
	p.waitState(client.Active)
	assert.EqualValues(t, 2, p.calls.Load())
	e.quiet()
	e.clock.Advance(time.Second)
	p.clock.Advance(time.Second)
	e.expect("auth:rita")
	p.waitState(client.Active)
	assert.EqualValues(t, 3, p.calls.Load())
	require.NoError(t, c.Err())
}

// A token living longer than any timer a platform might cap (24.8 days is
// JavaScript's) is refreshed once, RefreshBefore ahead of its exp: Clock
// durations do not overflow.
func TestLongLivedTokenRefreshesOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const life = 30 * 24 * time.Hour
	p, opts := e.newProbe("pat", life, nil)
	c := e.dial(opts)
	e.expect("auth:pat")
	p.waitTimers(1)
	p.clock.Advance(life - 30*time.Second - time.Millisecond)
	assert.Equal(t, 1, p.clock.Pending(), "refreshed early")
	assert.EqualValues(t, 1, p.calls.Load())
	e.clock.Advance(time.Second) // the server's interval between auth frames
	p.clock.Advance(time.Millisecond)
	p.waitState(client.Reauthenticating)
	p.waitState(client.Active)
	e.expect("auth:pat")
	assert.EqualValues(t, 2, p.calls.Load())
	assert.Equal(t, epoch.Add(time.Second+life).Unix(), c.Expiry().Unix())
}
