package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/client"
	"github.com/wsauth/wsauth/protocol"
)

// advanceUntil moves the client's clock in small steps until it is Active.
func (p *probe) advanceUntilActive(c *client.Client, step time.Duration) {
	p.t.Helper()
	require.Eventually(p.t, func() bool {
		p.clock.Advance(step)
		return c.State() == client.Active
	}, wait, time.Millisecond)
}

// advanceUntilDone moves the client's clock in small steps until it ended.
func (p *probe) advanceUntilDone(c *client.Client, step time.Duration) {
	p.t.Helper()
	require.Eventually(p.t, func() bool {
		p.clock.Advance(step)
		select {
		case <-c.Done():
			return true
		default:
			return false
		}
	}, wait, time.Millisecond)
}

// waitTimer waits until the client's clock holds exactly n timers.
func (p *probe) waitTimers(n int) {
	p.t.Helper()
	require.Eventually(p.t, func() bool { return p.clock.Pending() == n }, wait, time.Millisecond)
}

// A server shutting down closes with 1001; the client reconnects after a
// jittered backoff, with a fresh token, to the server that takes over the
// address, and sends what was queued meanwhile.
func TestShutdownReconnectsWithBackoff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	p, opts := e.newProbe("pia", time.Hour, nil)
	opts.Backoff = client.Backoff{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond}
	c := e.dial(opts)
	e.expect("auth:pia")
	first := c.Session()

	e.restart()
	e.expect("close:1001")
	p.waitState(client.Connecting)
	require.NoError(t, c.Send(context.Background(), json.RawMessage(`"queued"`)))

	// The first delay is 100ms ± 20%, on the client's clock: only the
	// backoff timer is pending (the refresh timer was stopped).
	p.waitTimers(1)
	p.clock.Advance(79 * time.Millisecond)
	assert.Equal(t, 1, p.clock.Pending(), "reconnected before the backoff")
	p.clock.Advance(41 * time.Millisecond)
	p.waitState(client.Authenticating)
	p.waitState(client.Active)

	assert.NotEqual(t, first, c.Session(), "a new session")
	assert.Equal(t, "pia", c.Subject())
	assert.EqualValues(t, 2, p.calls.Load(), "a fresh token for the new connection")
	e.expect("auth:pia", `msg:1:"queued"`)
	e.send("pia", `"from the new server"`)
	receive(t, c, `"from the new server"`)
}

// While the server refuses upgrades (503 during shutdown) the client keeps
// trying, at least Retry-After (capped at Backoff.Max) apart.
func TestReconnectRetriesRefusedUpgrades(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	p, opts := e.newProbe("quin", time.Hour, nil)
	// No jitter, so that the test moves the clock exactly to the deadline:
	// a timer armed while Advance runs a callback starts from that
	// callback's deadline, not from where Advance is going.
	opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 300 * time.Millisecond, Jitter: -1}
	e.dial(opts)
	e.expect("auth:quin")

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	old := e.server()
	require.NoError(t, old.Shutdown(ctx)) // keeps answering 503 + Retry-After: 5
	e.expect("close:1001")
	p.waitState(client.Connecting)
	p.waitTimers(1)
	p.clock.Advance(10 * time.Millisecond)
	require.Eventually(t, func() bool { return strings.Contains(p.logs.String(), "HTTP 503") }, wait, time.Millisecond)
	p.waitTimers(1)
	p.clock.Advance(299 * time.Millisecond)
	assert.Equal(t, 1, p.clock.Pending(), "waits Retry-After, capped at Backoff.Max")

	e.current.Store(e.newServer())
	p.clock.Advance(time.Millisecond)
	p.waitState(client.Active)
	e.expect("auth:quin")
}

// Which close codes the client reconnects after, and which end it.
func TestCloseCodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	cases := []struct {
		code  protocol.CloseCode
		retry bool
	}{
		{protocol.CloseInternal, true},
		{protocol.CloseAuthTimeout, true},
		{protocol.CloseBufferOverflow, true},
		{protocol.CloseTooManyRequests, true},
		{protocol.CloseSessionExpired, true},
		{protocol.CloseNormal, false},
		{protocol.CloseTooLarge, false},
		{protocol.CloseMalformed, false},
		{protocol.CloseUnauthorized, false},
		{protocol.CloseForbidden, false},
		{4000, false}, // an application's own code
	}
	for _, tc := range cases {
		t.Run(tc.code.String(), func(t *testing.T) {
			p, opts := e.newProbe("rae", time.Hour, nil)
			opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}
			c := e.dial(opts)
			first := c.Session()
			s, ok := e.server().Session(first)
			require.True(t, ok)
			s.Close(tc.code, "test")
			if !tc.retry {
				waitDone(t, c)
				var ce *protocol.CloseError
				require.ErrorAs(t, c.Err(), &ce)
				assert.Equal(t, tc.code, ce.Code)
				assert.Equal(t, "test", ce.Reason)
				assert.EqualValues(t, 1, p.calls.Load())
				return
			}
			p.waitState(client.Connecting)
			p.advanceUntilActive(c, 10*time.Millisecond)
			assert.NotEqual(t, first, c.Session())
			assert.EqualValues(t, 2, p.calls.Load())
			require.NoError(t, c.Close())
		})
	}
}

func TestDisableReconnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, opts := e.newProbe("sam", time.Hour, nil)
	opts.DisableReconnect = true
	c := e.dial(opts)
	e.restart()
	waitDone(t, c)
	var ce *protocol.CloseError
	require.ErrorAs(t, c.Err(), &ce)
	assert.Equal(t, protocol.CloseGoingAway, ce.Code)
}

func TestCloseWhileWaitingToReconnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	p, opts := e.newProbe("tom", time.Hour, nil)
	c := e.dial(opts)
	e.restart()
	p.waitState(client.Connecting)
	p.waitTimers(1) // the backoff; the client's clock never moves
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.Err(), client.ErrClosed)
	assert.Equal(t, 0, p.clock.Pending(), "backoff timer stopped")
	_, err := c.Receive(context.Background())
	assert.ErrorIs(t, err, client.ErrClosed)
}

// Reconnecting after a retryable close with a token the server refuses
// (4401) ends the client: the token was fresh, retrying cannot help.
func TestReconnectWithRefusedTokenStops(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	p, opts := e.newProbe("vic", time.Hour, func(_ context.Context, call int) (string, error) {
		if call == 1 {
			return e.idp.Token("vic", time.Hour), nil
		}
		return e.idp.Token("vic", -time.Minute), nil
	})
	opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	c := e.dial(opts)
	e.restart()
	p.waitState(client.Connecting)
	p.advanceUntilDone(c, 10*time.Millisecond)
	var ce *protocol.CloseError
	require.ErrorAs(t, c.Err(), &ce)
	assert.Equal(t, protocol.CloseUnauthorized, ce.Code)
	assert.Equal(t, "token expired", ce.Reason)
	assert.EqualValues(t, 2, p.calls.Load())
	assert.Equal(t, 0, p.clock.Pending(), "no further attempt scheduled")
}

// A server that authenticates and then closes at once (1011: its
// application fails) is retried ever more slowly: the backoff count
// restarts only after a connection stayed authenticated for Backoff.Max,
// not at every auth_ok, so such a server does not get the client back
// every Initial forever.
func TestBackoffResetsOnlyAfterAStableSession(t *testing.T) {
	t.Parallel()
	const stable = 7 // the connection that stays up
	fk := newFake(t, func(fc *fakeConn, f protocol.ClientFrame) {
		if f.Type != protocol.TypeAuth {
			return
		}
		fc.authOK("fay", time.Time{}) // no exp: no refresh timer
		if fc.n > 1 && fc.n != stable {
			_ = fc.WriteClose(uint16(protocol.CloseInternal), []byte("internal error"))
		}
	})
	p, opts := newProbe(t, fakeSource)
	ms := time.Millisecond
	opts.Backoff = client.Backoff{Initial: 100 * ms, Max: 800 * ms, Jitter: -1}
	c := dial(t, fk.url, opts)

	// waitOut requires the next attempt (connection n) to come exactly
	// after d on the client's clock.
	waitOut := func(n int, d time.Duration) {
		t.Helper()
		p.waitTimers(1) // the backoff
		p.clock.Advance(d - ms)
		require.Equal(t, 1, p.clock.Pending(), "connection %d came before its backoff of %v", n, d)
		p.clock.Advance(ms)
		require.Eventually(t, func() bool { return fk.count() == n }, wait, ms)
	}

	_ = fk.conn(1).WriteClose(uint16(protocol.CloseInternal), []byte("internal error"))
	for n, d := range []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 800 * ms, 800 * ms} {
		waitOut(n+2, d)
	}
	// A session that stays up for Backoff.Max starts the count again.
	require.Eventually(t, func() bool { return c.Session() == fmt.Sprintf("s%d", stable) }, wait, ms)
	p.clock.Advance(800 * ms)
	_ = fk.conn(stable).WriteClose(uint16(protocol.CloseInternal), []byte("internal error"))
	waitOut(stable+1, 100*ms)
	waitOut(stable+2, 200*ms)
}
