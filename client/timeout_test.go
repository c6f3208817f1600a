package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/client"
	"github.com/wsauth/wsauth/protocol"
)

// A server that never answers a reauth leaves the client Reauthenticating
// (its sends queued) only for Options.ReauthTimeout (default 10s): then the
// client closes the connection and reconnects, and the queue goes out on
// the new one.
func TestReauthTimeoutReconnects(t *testing.T) {
	t.Parallel()
	got := make(chan string, 10)
	fk := newFake(t, func(fc *fakeConn, f protocol.ClientFrame) {
		switch {
		case f.Type == protocol.TypeMessage:
			got <- fmt.Sprintf("%d:%s", fc.n, f.Data)
		case fc.auths == 1: // later auth frames go unanswered
			fc.authOK("fay", epoch.Add(time.Hour))
		}
	})
	p, opts := newProbe(t, fakeSource)
	opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	c := dial(t, fk.url, opts)

	p.clock.Advance(time.Hour - 30*time.Second) // the client's own refresh
	p.waitState(client.Reauthenticating)
	require.NoError(t, c.Send(context.Background(), []byte(`"queued"`)))
	p.waitTimers(1)                     // the reauth timeout, armed after the auth frame went out
	p.clock.Advance(10*time.Second - 1) // the default
	assert.Equal(t, client.Reauthenticating, c.State())
	p.clock.Advance(1)
	p.waitState(client.Connecting)
	fk.expectClose(t, "1000:reauth timeout")
	p.advanceUntilActive(c, 10*time.Millisecond)
	assert.Equal(t, "s2", c.Session())
	select {
	case m := <-got:
		assert.Equal(t, `2:"queued"`, m)
	case <-time.After(wait):
		t.Fatal("the queued message was not sent on the new connection")
	}
	require.NoError(t, c.Err())
}

// With DisableReconnect the reauth timeout ends the client with a 1006 of
// the client's own reason.
func TestReauthTimeoutWithoutReconnect(t *testing.T) {
	t.Parallel()
	fk := newFake(t, func(fc *fakeConn, f protocol.ClientFrame) {
		if f.Type == protocol.TypeAuth && fc.auths == 1 {
			fc.authOK("fay", epoch.Add(time.Hour))
		}
	})
	p, opts := newProbe(t, fakeSource)
	opts.DisableReconnect = true
	opts.ReauthTimeout = time.Second
	c := dial(t, fk.url, opts)
	p.clock.Advance(time.Hour - 30*time.Second)
	p.waitState(client.Reauthenticating)
	p.waitTimers(1)
	p.clock.Advance(time.Second)
	waitDone(t, c)
	assert.ErrorIs(t, c.Err(), &protocol.CloseError{Code: protocol.CloseAbnormal})
	assert.ErrorContains(t, c.Err(), "reauth timeout")
}

// The client pings the server every PingInterval (default 30s; the server
// sends no pings and has no idle timeout). A connection on which nothing
// arrives within PongTimeout (default 10s) of a ping is dead: the client
// reconnects.
func TestKeepaliveNoticesASilentNetwork(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	px := newProxy(t, e.url)
	p, opts := e.newProbe("kim", time.Hour, nil)
	opts.PingInterval = 0 // the defaults
	opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	c := dial(t, px.url, opts)
	first := c.Session()
	p.waitTimers(2) // the early refresh and the keepalive

	// The server answers: the connection lives on.
	p.clock.Advance(30 * time.Second)
	p.waitTimers(2) // the ping went out; PongTimeout runs
	require.Eventually(t, func() bool { return client.Pongs(c) == 1 }, wait, time.Millisecond)
	p.clock.Advance(10 * time.Second)
	p.waitTimers(2) // the next ping is due 30s after the last
	p.clock.Advance(20 * time.Second)
	p.waitTimers(2)
	require.Eventually(t, func() bool { return client.Pongs(c) == 2 }, wait, time.Millisecond)
	p.clock.Advance(10 * time.Second)
	p.waitTimers(2)
	assert.Equal(t, client.Active, c.State())
	assert.Equal(t, first, c.Session())

	// Nothing gets through any more: 10s after the next ping, the client
	// gives up on the connection.
	px.freeze()
	p.clock.Advance(20 * time.Second)
	p.waitTimers(2)
	p.clock.Advance(10*time.Second - 1)
	assert.Equal(t, client.Active, c.State())
	p.clock.Advance(1)
	p.waitState(client.Connecting)
	p.advanceUntilActive(c, 10*time.Millisecond)
	assert.NotEqual(t, first, c.Session())
	require.NoError(t, c.Err())
}

// A missing pong says nothing while the client's own application holds
// the read goroutine (Receive not called, buffer full): the pong may wait
// behind the messages. The connection stays.
func TestKeepaliveWaitsForAReaderHeldByTheApplication(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	p, opts := e.newProbe("lou", time.Hour, nil)
	opts.PingInterval = 0
	c := e.dial(opts)
	e.expect("auth:lou")
	for i := 1; i <= 70; i++ {
		e.send("lou", fmt.Sprint(i))
	}
	waitBuffered(t, c, 64)
	p.waitTimers(2)
	for range 3 { // ping, check, ...
		p.clock.Advance(30 * time.Second)
		p.waitTimers(2)
		p.clock.Advance(10 * time.Second)
		p.waitTimers(2)
	}
	assert.Equal(t, client.Active, c.State())
	for i := 1; i <= 70; i++ {
		receive(t, c, fmt.Sprint(i))
	}
	assert.Empty(t, p.states, "no reconnection")
}
