package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/client"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/wsauthtest"
)

var epoch = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// wait bounds every wait of a test for something asynchronous.
const wait = 5 * time.Second

// env is a real wsauth.Server on a loopback httptest server, verifying the
// tokens of a real IdP through jwks over HTTP. Server, IdP and verifier share
// a fake clock; every client gets a fake clock of its own, so that moving
// server time (expiry, reauth_required) and client time (early refresh,
// backoff) are separate steps of a test.
type env struct {
	t         *testing.T
	clock     *wsauthtest.Clock
	idp       *wsauthtest.IdP
	verifier  *jwks.Verifier
	configure func(*wsauth.Options)
	current   atomic.Pointer[wsauth.Server] // what the listener serves
	url       string
	ticketURL string // the server's TicketHandler
	// upgrades records upgrade requests and ticket exchanges (see record).
	upgrades chan upgrade
	// events records, in order, what the servers' hooks saw:
	// "auth:<sub>", "msg:<id>:<data>" and "close:<code>".
	events chan string
}

func newEnv(t *testing.T, configure func(*wsauth.Options)) *env {
	t.Helper()
	clock := wsauthtest.NewClock(epoch)
	idp := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{})
	idp.SetNow(clock.Now)
	ctx, cancel := context.WithCancel(context.Background())
	v, err := jwks.New(ctx, jwks.Options{
		Issuers: []jwks.Issuer{{Issuer: idp.Issuer(), JWKSURL: idp.JWKSURL(), Audience: []string{idp.Audience()}}},
		Now:     clock.Now,
	})
	require.NoError(t, err)
	e := &env{t: t, clock: clock, idp: idp, verifier: v, configure: configure, events: make(chan string, 1000),
		upgrades: make(chan upgrade, 100)}
	e.current.Store(e.newServer())
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(e.upgrades, r)
		if r.URL.Path == "/ticket" {
			e.current.Load().TicketHandler().ServeHTTP(w, r)
			return
		}
		e.current.Load().ServeHTTP(w, r)
	}))
	e.url = "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	e.ticketURL = hs.URL + "/ticket"
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), wait)
		defer scancel()
		require.NoError(t, e.current.Load().Shutdown(sctx))
		hs.Close()
		v.Close()
		cancel()
	})
	return e
}

func (e *env) newServer() *wsauth.Server {
	opts := wsauth.Options{
		Verifier: e.verifier,
		Clock:    e.clock,
		Logger:   slog.New(slog.DiscardHandler),
		OnAuthenticated: func(_ context.Context, s *wsauth.Session) error {
			e.events <- "auth:" + s.Principal().Subject
			return nil
		},
		OnMessage: func(_ context.Context, _ *wsauth.Session, m wsauth.Message) error {
			e.events <- fmt.Sprintf("msg:%s:%s", m.ID, m.Data)
			return nil
		},
		OnClose: func(_ *wsauth.Session, ce *protocol.CloseError) {
			e.events <- fmt.Sprintf("close:%d", ce.Code)
		},
	}
	if e.configure != nil {
		e.configure(&opts)
	}
	srv, err := wsauth.New(opts)
	require.NoError(e.t, err)
	return srv
}

func (e *env) server() *wsauth.Server { return e.current.Load() }

// restart shuts the current server down (its sessions get 1001) and serves
// a new one on the same address, as a rolling restart behind a load
// balancer would.
func (e *env) restart() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	old := e.current.Load()
	require.NoError(e.t, old.Shutdown(ctx))
	e.current.Store(e.newServer())
}

// upgrade is what a request to an env or a cluster carried.
type upgrade struct {
	// kind is "exchange" for a ticket exchange; for an upgrade request
	// its credential: "header" (Authorization), "ticket" (?ticket=), or
	// "frame" (none: an auth frame follows).
	kind  string
	query url.Values
}

func upgradeOf(r *http.Request) upgrade {
	u := upgrade{kind: "frame", query: r.URL.Query()}
	switch {
	case r.URL.Path == "/ticket":
		u.kind = "exchange"
	case r.Header.Get("Authorization") != "":
		u.kind = "header"
	case u.query.Has("ticket"):
		u.kind = "ticket"
	}
	return u
}

// record records r in ch, unless ch is full: tests that reconnect many
// times look at none of it.
func record(ch chan upgrade, r *http.Request) {
	select {
	case ch <- upgradeOf(r):
	default:
	}
}

// expectUpgrades requires the next requests recorded in ch to be of the
// kinds want, and returns them.
func expectUpgrades(t *testing.T, ch chan upgrade, want ...string) []upgrade {
	t.Helper()
	var got []upgrade
	for _, w := range want {
		select {
		case u := <-ch:
			require.Equal(t, w, u.kind, "request %d", len(got)+1)
			got = append(got, u)
		case <-time.After(wait):
			t.Fatalf("no request within %v; want %q", wait, w)
		}
	}
	return got
}

// noUpgrades requires that no request was recorded in ch since the last
// expectUpgrades.
func noUpgrades(t *testing.T, ch chan upgrade) {
	t.Helper()
	select {
	case u := <-ch:
		t.Fatalf("unexpected request %q", u.kind)
	default:
	}
}

// p returns the principal of sub at the env's identity provider.
func (e *env) p(sub string) wsauth.Principal {
	return wsauth.Principal{Issuer: e.idp.Issuer(), Subject: sub}
}

// send queues data for every session of sub and requires exactly one.
func (e *env) send(sub, data string) {
	e.t.Helper()
	n, err := e.server().SendToPrincipals(context.Background(), json.RawMessage(data), e.p(sub))
	require.NoError(e.t, err)
	require.Equal(e.t, 1, n)
}

// expect requires the next events of the servers' hooks to be want.
func (e *env) expect(want ...string) {
	e.t.Helper()
	for _, w := range want {
		select {
		case got := <-e.events:
			require.Equal(e.t, w, got)
		case <-time.After(wait):
			e.t.Fatalf("no server event within %v; want %q", wait, w)
		}
	}
}

// quiet requires that no server hook has run since the last expect.
func (e *env) quiet() {
	e.t.Helper()
	select {
	case got := <-e.events:
		e.t.Fatalf("unexpected server event %q", got)
	default:
	}
}

// probe is one client's fake clock, token source and observations.
type probe struct {
	t      *testing.T
	clock  *wsauthtest.Clock
	states chan client.State
	errors chan client.ErrorFrame
	logs   *logRecorder
	calls  atomic.Int32 // token source calls
	mu     sync.Mutex
	minted []string // every token handed out
}

// newProbe returns a probe and client Options whose token source mints
// tokens for sub living ttl; next, if not nil, replaces the source from the
// given call on (calls count from 1). The options send no pings: tests that
// move the client's clock by minutes would otherwise race the pongs of the
// keepalive against its PongTimeout; the keepalive tests turn it on.
func (e *env) newProbe(sub string, ttl time.Duration, next func(ctx context.Context, call int) (string, error)) (*probe, client.Options) {
	return newProbe(e.t, func(ctx context.Context, call int) (string, error) {
		if next != nil {
			return next(ctx, call)
		}
		return e.idp.Token(sub, ttl), nil
	})
}

// newProbe returns a probe and client Options whose token source is
// source (calls count from 1), for clients of servers other than an env's.
func newProbe(t *testing.T, source func(ctx context.Context, call int) (string, error)) (*probe, client.Options) {
	p := &probe{
		t:      t,
		clock:  wsauthtest.NewClock(epoch),
		states: make(chan client.State, 100),
		errors: make(chan client.ErrorFrame, 100),
		logs:   &logRecorder{},
	}
	t.Cleanup(p.checkLogs)
	return p, client.Options{
		Token: client.TokenFunc(func(ctx context.Context) (string, error) {
			call := int(p.calls.Add(1))
			tok, err := source(ctx, call)
			p.mu.Lock()
			p.minted = append(p.minted, tok)
			p.mu.Unlock()
			return tok, err
		}),
		OnState:      func(s client.State) { p.states <- s },
		OnError:      func(f client.ErrorFrame) { p.errors <- f },
		Clock:        p.clock,
		Logger:       slog.New(p.logs),
		PingInterval: -1,
	}
}

// serverAsks moves the server's clock by d, for it to send reauth_required,
// and the client's by the second that the client leaves between two auth
// frames on a socket, so that it answers at once.
func (e *env) serverAsks(p *probe, d time.Duration) {
	e.clock.Advance(d)
	p.clock.Advance(time.Second)
}

// waitState requires the client to reach state want (skipping others).
func (p *probe) waitState(want client.State) {
	p.t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case s := <-p.states:
			if s == want {
				return
			}
		case <-timeout:
			p.t.Fatalf("client did not reach state %v within %v", want, wait)
		}
	}
}

// checkLogs requires that no token ever appeared in the client's logs.
func (p *probe) checkLogs() {
	p.mu.Lock()
	defer p.mu.Unlock()
	logs := p.logs.String()
	for _, tok := range p.minted {
		if tok != "" && strings.Contains(logs, tok) {
			p.t.Errorf("a token appeared in the client's logs")
		}
	}
}

// dial connects a client and closes it when the test ends.
func (e *env) dial(opts client.Options) *client.Client {
	e.t.Helper()
	return dial(e.t, e.url, opts)
}

// dial connects a client to url and closes it when the test ends.
func dial(t *testing.T, url string, opts client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := client.Dial(ctx, url, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// receive requires the client's next message to be want.
func receive(t *testing.T, c *client.Client, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	data, err := c.Receive(ctx)
	require.NoError(t, err)
	require.JSONEq(t, want, string(data))
}

// nothingReceived requires that no message is waiting for Receive.
func nothingReceived(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	data, err := c.Receive(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "received %s", data)
}

func waitDone(t *testing.T, c *client.Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(wait):
		t.Fatalf("client still running after %v", wait)
	}
}

// gate is a token source step that blocks until opened (or ctx ends).
type gate chan struct{}

func (g gate) wait(ctx context.Context, tok func() string) (string, error) {
	select {
	case <-g:
		return tok(), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// logRecorder is a slog.Handler keeping every record as one line of text,
// for tests that look for a message or make sure a token never appears.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Level.String() + " " + rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
	return nil
}

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r } // the client adds none
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}
