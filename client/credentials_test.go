package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/client"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// kick closes sub's sessions with 1013, which the client retries.
func (e *env) kick(sub string) {
	e.t.Helper()
	for _, s := range e.server().Sessions(e.p(sub)) {
		s.Close(protocol.CloseTryAgainLater, "try again later")
	}
	e.expect("close:1013")
}

// refused requires err to be a refusal of the upgrade (or, with exchange
// set, of the ticket exchange) with status. A 401 is a refused token, as
// a 4401 close is: refused returns that close, nil for other statuses.
func refused(t *testing.T, err error, status int, exchange bool) *protocol.CloseError {
	t.Helper()
	var he *client.HandshakeError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, status, he.StatusCode)
	assert.Equal(t, exchange, he.Exchange)
	var ce *protocol.CloseError
	if status != http.StatusUnauthorized {
		assert.NotErrorAs(t, err, &ce)
		return nil
	}
	require.ErrorAs(t, err, &ce, "a refused token, whatever carried it")
	assert.Equal(t, protocol.CloseUnauthorized, ce.Code)
	return ce
}

// With TokenInHeader the token goes in the upgrade's Authorization header:
// the server starts the session with auth_ok and the client sends no auth
// frame; reauthentication goes on in auth frames on the same socket.
func TestTokenInHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) {
		o.TokenInHeader = true
		o.ReauthLead = 10 * time.Second
	})
	p, opts := e.newProbe("ann", time.Minute, nil)
	opts.TokenInHeader = true
	c := e.dial(opts)
	expectUpgrades(t, e.upgrades, "header")
	// An auth frame after the authenticated start would be a reauth, and
	// run OnAuthenticated again before the message.
	require.NoError(t, c.Send(context.Background(), json.RawMessage(`"hi"`)))
	e.expect("auth:ann", `msg:1:"hi"`)
	session := c.Session()

	e.serverAsks(p, 50*time.Second)
	p.waitState(client.Reauthenticating)
	p.waitState(client.Active)
	e.expect("auth:ann")
	assert.EqualValues(t, 2, p.calls.Load(), "a fresh token for the reauth")
	assert.Equal(t, session, c.Session(), "same socket, same session")
	assert.Equal(t, epoch.Add(50*time.Second+time.Minute).Unix(), c.Expiry().Unix())
	noUpgrades(t, e.upgrades)
	e.send("ann", `"back"`)
	receive(t, c, `"back"`)
}

// A server that does not accept the token in the header
// (wsauth.Options.TokenInHeader off) upgrades without looking at it and,
// getting no auth frame, closes with 4408 at its auth deadline: Dial
// returns that close, and the client's log names the likely cause. The
// session never started.
func TestTokenInHeaderIgnoredIsExplained(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	p, opts := e.newProbe("cy", time.Hour, nil)
	opts.TokenInHeader = true
	dialed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		c, err := client.Dial(ctx, e.url, opts)
		if c != nil {
			_ = c.Close()
		}
		dialed <- err
	}()
	expectUpgrades(t, e.upgrades, "header")
	// The server's default auth deadline is 5 s on its clock, from when
	// its session exists: moved by 5 s until Dial returns.
	var err error
	require.Eventually(t, func() bool {
		e.clock.Advance(5 * time.Second)
		select {
		case err = <-dialed:
			return true
		case <-time.After(10 * time.Millisecond):
			return false
		}
	}, wait, time.Millisecond, "Dial did not return after the server's auth deadline")
	var ce *protocol.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, protocol.CloseAuthTimeout, ce.Code)
	assert.Contains(t, p.logs.String(), "the server ignored the token in the Authorization header")
	e.expect("close:4408")
}

// A token refused in the header gets 401 before the upgrade: on a
// reconnection that ends the client, as a 4401 close would, instead of
// trying again and again.
func TestTokenInHeaderRefusedIsFinal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.TokenInHeader = true })
	p, opts := e.newProbe("bo", time.Hour, func(_ context.Context, call int) (string, error) {
		if call == 1 {
			return e.idp.Token("bo", time.Hour), nil
		}
		return e.idp.Token("bo", -time.Minute), nil // expired
	})
	opts.TokenInHeader = true
	opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond}
	c := e.dial(opts)
	e.expect("auth:bo")
	expectUpgrades(t, e.upgrades, "header")

	e.kick("bo")
	p.advanceUntilDone(c, 10*time.Millisecond)
	ce := refused(t, c.Err(), http.StatusUnauthorized, false)
	// The reason is what arrived with the 401's headers: all of it, as a
	// rule, on loopback.
	assert.Contains(t, []string{"", "token expired"}, ce.Reason)

	expectUpgrades(t, e.upgrades, "header")
	p.clock.Advance(time.Second)
	noUpgrades(t, e.upgrades)
	assert.EqualValues(t, 2, p.calls.Load(), "no attempt after the refusal")
}

// With TicketURL the client exchanges a fresh token for a ticket before
// every connection and opens the socket with it, keeping the URL's own
// query; the session starts authenticated and reauthenticates in-band.
// Tickets are single-use: a reconnection gets a new one.
func TestTicket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.ReauthLead = 10 * time.Second })
	p, opts := e.newProbe("cy", time.Minute, nil)
	opts.TicketURL = e.ticketURL
	opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond}
	// The ticket is bound to the exchange's Origin; the upgrade has the same.
	opts.Header = http.Header{"Origin": {strings.TrimSuffix(e.ticketURL, "/ticket")}}
	c := dial(t, e.url+"?room=lobby", opts)
	ups := expectUpgrades(t, e.upgrades, "exchange", "ticket")
	assert.Equal(t, "lobby", ups[1].query.Get("room"))
	first := ups[1].query.Get("ticket")
	require.NoError(t, c.Send(context.Background(), json.RawMessage(`"hi"`)))
	e.expect("auth:cy", `msg:1:"hi"`) // no auth frame after the start
	session := c.Session()

	e.serverAsks(p, 50*time.Second)
	p.waitState(client.Reauthenticating)
	p.waitState(client.Active)
	e.expect("auth:cy")
	assert.Equal(t, session, c.Session())
	noUpgrades(t, e.upgrades)

	e.kick("cy")
	p.waitState(client.Connecting)
	p.advanceUntilActive(c, 10*time.Millisecond)
	e.expect("auth:cy")
	ups = expectUpgrades(t, e.upgrades, "exchange", "ticket")
	assert.Equal(t, "lobby", ups[1].query.Get("room"))
	second := ups[1].query.Get("ticket")
	assert.NotEqual(t, first, second, "a fresh ticket")
	assert.NotEqual(t, session, c.Session())
	assert.EqualValues(t, 3, p.calls.Load(), "a fresh token for every exchange and reauth")
	e.send("cy", `"back"`)
	receive(t, c, `"back"`)

	// Both tickets are used up: a client that kept one would be refused.
	for _, used := range []string{first, second} {
		_, err := wstest.Dial(e.url+"?ticket="+used, nil)
		var he *wstest.HandshakeError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, http.StatusUnauthorized, he.Status)
	}
	logs := p.logs.String()
	assert.NotContains(t, logs, first)
	assert.NotContains(t, logs, second)
}

// The ticket exchange carries Options.Header: a page of an Origin the
// server does not allow is refused there, before any socket.
func TestTicketExchangeCarriesHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, opts := e.newProbe("fay", time.Hour, nil)
	opts.TicketURL = e.ticketURL
	opts.Header = http.Header{"Origin": {"https://evil.example"}}
	_, err := client.Dial(context.Background(), e.url, opts)
	refused(t, err, http.StatusForbidden, true)
	expectUpgrades(t, e.upgrades, "exchange")
	noUpgrades(t, e.upgrades)
}

// What the ticket exchange answers on a reconnection decides the
// client's fate: a refused token (401) and a refusal (403) end it; an
// unavailable server (503, 500), one that does not answer within the
// handshake timeout, and a network error are retried.
func TestTicketExchangeErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// answer answers exchange n (from 1) in place of the server;
		// false leaves it to the server.
		answer func(n int32, w http.ResponseWriter, r *http.Request) bool
		// expired makes the token source return expired tokens from its
		// second call on.
		expired bool
		final   int    // the status that ends the client; 0: retried
		reason  string // of a final 401
		// handshake is Options.HandshakeTimeout; 0: the default.
		handshake time.Duration
	}{
		{name: "refused token", expired: true, final: http.StatusUnauthorized, reason: "token expired"},
		{name: "refusal echoing the token", final: http.StatusUnauthorized, reason: "",
			answer: refuseSecond(http.StatusUnauthorized, func(r *http.Request) string {
				return "bad " + r.Header.Get("Authorization")
			})},
		{name: "forbidden", final: http.StatusForbidden, answer: refuseSecond(http.StatusForbidden, nil)},
		{name: "unavailable", answer: refuseSecond(http.StatusServiceUnavailable, nil)},
		{name: "server error", answer: refuseSecond(http.StatusInternalServerError, nil)},
		{name: "no answer", handshake: time.Second, answer: func(n int32, _ http.ResponseWriter, r *http.Request) bool {
			if n != 2 {
				return false
			}
			select { // until the client gives up
			case <-r.Context().Done():
			case <-time.After(wait):
			}
			return true
		}},
		{name: "network error", answer: func(n int32, w http.ResponseWriter, _ *http.Request) bool {
			if n != 2 {
				return false
			}
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			var exchanges atomic.Int32
			xs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := exchanges.Add(1)
				if tc.answer == nil || !tc.answer(n, w, r) {
					e.server().TicketHandler().ServeHTTP(w, r)
				}
			}))
			t.Cleanup(xs.Close)
			p, opts := e.newProbe("dee", time.Hour, func(_ context.Context, call int) (string, error) {
				if tc.expired && call > 1 {
					return e.idp.Token("dee", -time.Minute), nil
				}
				return e.idp.Token("dee", time.Hour), nil
			})
			opts.TicketURL = xs.URL + "/ticket"
			opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond}
			opts.HandshakeTimeout = tc.handshake
			c := e.dial(opts)
			e.expect("auth:dee")
			expectUpgrades(t, e.upgrades, "ticket")

			e.kick("dee")
			if tc.final == 0 {
				p.waitState(client.Connecting)
				p.advanceUntilActive(c, 10*time.Millisecond)
				e.expect("auth:dee")
				expectUpgrades(t, e.upgrades, "ticket")
				assert.EqualValues(t, 3, exchanges.Load())
				return
			}
			p.advanceUntilDone(c, 10*time.Millisecond)
			if ce := refused(t, c.Err(), tc.final, true); ce != nil {
				assert.Equal(t, tc.reason, ce.Reason)
			}
			p.clock.Advance(time.Second)
			assert.EqualValues(t, 2, exchanges.Load(), "no attempt after the refusal")
			noUpgrades(t, e.upgrades)
		})
	}
}

// refuseSecond returns an exchange answer that refuses the second
// exchange with code, Retry-After 1 and the JSON body the server would
// send, whose error is reason(r) if reason is set.
func refuseSecond(code int, reason func(r *http.Request) string) func(int32, http.ResponseWriter, *http.Request) bool {
	return func(n int32, w http.ResponseWriter, r *http.Request) bool {
		if n != 2 {
			return false
		}
		msg := http.StatusText(code)
		if reason != nil {
			msg = reason(r)
		}
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
		return true
	}
}

// A session started by a header or a ticket starts at the stream's head,
// so a client that holds a position authenticates in-band, resuming: on a
// reconnection, and on the first connection given Options.Resume. Nothing
// sent while it was away is lost.
func TestUpgradeCredentialsResume(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"header", "ticket"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			cl := newCluster(t, memoryBrokers(broker.MemoryOptions{}))
			p, opts := newProbe(t, func(context.Context, int) (string, error) { return cl.idp.Token("eve", time.Hour), nil })
			opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond}
			start := []string{"header"}
			if mode == "header" {
				opts.TokenInHeader = true
			} else {
				opts.TicketURL = cl.ticketURL
				start = []string{"exchange", "ticket"}
			}
			c := dial(t, cl.url, opts)
			expectUpgrades(t, cl.upgrades, start...)
			cl.send("eve", "1")
			receive(t, c, "1")

			cl.bounce(drop)
			p.waitState(client.Connecting)
			cl.send("eve", "2")
			cl.send("eve", "3")
			p.advanceUntilActive(c, 10*time.Millisecond)
			expectUpgrades(t, cl.upgrades, "frame")
			receive(t, c, "2")
			receive(t, c, "3")
			nothingReceived(t, c)

			require.NoError(t, c.Close())
			saved, ok := c.Position()
			require.True(t, ok)
			cl.send("eve", "4")
			opts.Resume = &saved
			d := dial(t, cl.url, opts)
			expectUpgrades(t, cl.upgrades, "frame")
			receive(t, d, "4")
			nothingReceived(t, d)
			noUpgrades(t, cl.upgrades)
		})
	}
}

// Credential options are checked before anything is dialed.
func TestCredentialOptionsAreChecked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url, ticketURL string
		header               bool
		want                 string
	}{
		{"both", "ws://127.0.0.1:1/ws", "http://127.0.0.1:1/ticket", true, "at most one"},
		{"plain exchange for wss", "wss://127.0.0.1:1/ws", "http://127.0.0.1:1/ticket", false, "must be https"},
		{"scheme", "ws://127.0.0.1:1/ws", "ws://127.0.0.1:1/ticket", false, "scheme"},
		{"relative", "ws://127.0.0.1:1/ws", "/ticket", false, "no host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := client.Dial(context.Background(), tc.url, client.Options{
				Token:         client.StaticToken("t"),
				TokenInHeader: tc.header,
				TicketURL:     tc.ticketURL,
			})
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

// With TokenPerMessage every message carries the token the server last
// accepted for the session: the one that started it (in an auth frame,
// the Authorization header, or exchanged for a ticket), then each
// reauthentication's. The server's handler sees that token's identity,
// its expiry included, and refuses nothing.
func TestTokenPerMessage(t *testing.T) {
	t.Parallel()
	for mode, upgrades := range map[string][]string{
		"auth frame": {"frame"},
		"header":     {"header"},
		"ticket":     {"exchange", "ticket"},
	} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var e *env // set before the server sees a message
			e = newEnv(t, func(o *wsauth.Options) {
				o.TokenPerMessage = true
				o.TokenInHeader = mode == "header"
				o.ReauthLead = 10 * time.Second
				o.OnMessage = func(_ context.Context, _ *wsauth.Session, m wsauth.Message) error {
					// exp as seconds from epoch: the token source's
					// tokens live a minute from the server's now.
					exp := m.Identity.ExpiresAt.Sub(epoch) / time.Second
					e.events <- fmt.Sprintf("msg:%s:%s:%s:%d", m.ID, m.Data, m.Identity.Subject, exp)
					return nil
				}
			})
			p, opts := e.newProbe("ann", time.Minute, nil)
			opts.TokenPerMessage = true
			switch mode {
			case "header":
				opts.TokenInHeader = true
			case "ticket":
				opts.TicketURL = e.ticketURL
				opts.Header = http.Header{"Origin": {strings.TrimSuffix(e.ticketURL, "/ticket")}}
			}
			c := e.dial(opts)
			send := func(data string) {
				t.Helper()
				require.NoError(t, c.Send(context.Background(), json.RawMessage(data)))
			}
			expectUpgrades(t, e.upgrades, upgrades...)
			send(`"hi"`)
			e.expect("auth:ann", `msg:1:"hi":ann:60`)

			e.serverAsks(p, 50*time.Second)
			p.waitState(client.Reauthenticating)
			p.waitState(client.Active)
			e.expect("auth:ann")
			send(`"fresh"`)
			e.expect(`msg:2:"fresh":ann:110`)
			// Past the first token's exp, only the fresh one is accepted.
			e.clock.Advance(20 * time.Second)
			send(`"later"`)
			e.expect(`msg:3:"later":ann:110`)
			e.quiet()
			assert.Empty(t, p.errors)
			assert.EqualValues(t, 2, p.calls.Load(), "the client asked for no token to put in messages")
		})
	}
}

// A client without TokenPerMessage cannot talk to a server that wants a
// token in every message: each message is refused with error 4401 "token
// required", unprocessed, and reported to OnError rather than held to be
// resent, since the same message without a token would be refused again.
func TestTokenPerMessageMissing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.TokenPerMessage = true })
	p, opts := e.newProbe("bo", time.Hour, nil)
	c := e.dial(opts)
	e.expect("auth:bo")
	require.NoError(t, c.Send(context.Background(), json.RawMessage(`"hi"`)))
	select {
	case f := <-p.errors:
		assert.Equal(t, client.ErrorFrame{Code: protocol.ErrorReauthRequired, Message: "token required",
			Ref: "1", Data: json.RawMessage(`"hi"`)}, f)
	case <-time.After(wait):
		t.Fatalf("no error frame within %v", wait)
	}
	e.quiet()
}
