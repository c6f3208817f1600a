package wsauth_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/testlog"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/wsauthtest"
)

// env is one wsauth server on a loopback httptest server, verifying tokens
// of a real IdP over HTTP, with a fake clock shared by the server, the
// verifier and the IdP.
type env struct {
	t     *testing.T
	clock *wsauthtest.Clock
	idp   *wsauthtest.IdP
	srv   *wsauth.Server
	http  *httptest.Server
	url   string
	rec   *recorder
	logs  *testlog.Buffer // everything the server logged
}

// recorder collects what the hooks saw.
type recorder struct {
	mu          sync.Mutex
	closes      chan closeEvent
	messages    chan received
	undelivered map[wsauth.Principal][]string
}

type closeEvent struct {
	session string
	subject string
	code    protocol.CloseCode
	reason  string
}

type received struct {
	session string
	subject string
	id      string
	data    string
}

func (r *recorder) undeliveredOf(p wsauth.Principal) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.undelivered[p]...)
}

// p returns the principal of subject sub at the env's identity provider.
func (e *env) p(sub string) wsauth.Principal {
	return wsauth.Principal{Issuer: e.idp.Issuer(), Subject: sub}
}

// undeliveredFor returns what OnUndelivered got for sub of the env's
// identity provider.
func (e *env) undeliveredFor(sub string) []string { return e.rec.undeliveredOf(e.p(sub)) }

var epoch = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newEnv(t *testing.T, configure func(*wsauth.Options)) *env {
	t.Helper()
	return newHostileEnv(t, hostileOptions{server: configure}).env
}

// dial opens a raw connection and waits until the server's read loop runs.
func (e *env) dial(header http.Header) *wstest.Conn {
	e.t.Helper()
	c, err := wstest.Dial(e.url, header)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { c.Close() })
	_, err = c.Sync()
	require.NoError(e.t, err)
	return c
}

// login dials and authenticates as sub with a token living ttl, returning
// the connection and its auth_ok frame.
func (e *env) login(sub string, ttl time.Duration) (*wstest.Conn, map[string]any) {
	e.t.Helper()
	c := e.dial(nil)
	require.NoError(e.t, c.Auth(e.idp.Token(sub, ttl)))
	ok, err := c.ReadJSON()
	require.NoError(e.t, err)
	require.Equal(e.t, "auth_ok", ok["type"], "frame: %v", ok)
	return c, ok
}

// expectClose reads until the server's close frame and checks its code and
// reason, then checks that OnClose reported the same.
func (e *env) expectClose(c *wstest.Conn, code protocol.CloseCode, reason string) [][]byte {
	e.t.Helper()
	cl, texts, err := c.ReadClose()
	require.NoError(e.t, err)
	require.Equal(e.t, int(code), cl.Code, "close reason %q", cl.Reason)
	if reason != "" {
		require.Equal(e.t, reason, cl.Reason)
	}
	ev := e.nextClose()
	require.Equal(e.t, code, ev.code)
	return texts
}

func (e *env) nextClose() closeEvent {
	e.t.Helper()
	select {
	case ev := <-e.rec.closes:
		return ev
	case <-time.After(5 * time.Second):
		e.t.Fatal("no OnClose within 5s")
		return closeEvent{}
	}
}

func (e *env) nextMessage() received {
	e.t.Helper()
	select {
	case m := <-e.rec.messages:
		return m
	case <-time.After(5 * time.Second):
		e.t.Fatal("no message reached OnMessage within 5s")
		return received{}
	}
}

// noMessage asserts that no message reached the application.
func (e *env) noMessage() {
	e.t.Helper()
	select {
	case m := <-e.rec.messages:
		e.t.Fatalf("message reached OnMessage: %+v", m)
	default:
	}
}

func readType(t *testing.T, c *wstest.Conn, typ string) map[string]any {
	t.Helper()
	m, err := c.ReadJSON()
	require.NoError(t, err)
	require.Equal(t, typ, m["type"], "frame: %v", m)
	return m
}
