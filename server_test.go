package wsauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

func TestAuthenticateAndExchangeMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c, ok := e.login("alice", time.Hour)
	assert.Equal(t, "alice", ok["sub"])
	assert.EqualValues(t, epoch.Add(time.Hour).Unix(), ok["exp"])
	id, _ := ok["session"].(string)
	require.NotEmpty(t, id)

	require.NoError(t, c.WriteText(`{"type":"message","id":"m1","data":{"text":"hi"},"extra":[1,2]}`))
	m := e.nextMessage()
	assert.Equal(t, received{session: id, subject: "alice", id: "m1", data: `{"text":"hi"}`}, m)

	require.NoError(t, e.srv.Send(context.Background(), id, json.RawMessage(`{"reply":1}`)))
	got := readType(t, c, "message")
	assert.Equal(t, map[string]any{"reply": float64(1)}, got["data"])

	n, err := e.srv.SendToPrincipals(context.Background(), json.RawMessage(`"to-alice"`), e.p("alice"))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, "to-alice", readType(t, c, "message")["data"])

	s, found := e.srv.Session(id)
	require.True(t, found)
	assert.Equal(t, session.Active, s.State())
	assert.Equal(t, "alice", s.Identity().Subject)
	assert.Equal(t, e.idp.Issuer(), s.Identity().Issuer)

	assert.ErrorIs(t, e.srv.Send(context.Background(), "nope", json.RawMessage(`1`)), wsauth.ErrSessionNotFound)
	assert.ErrorIs(t, e.srv.Send(context.Background(), id, json.RawMessage(`{bad`)), wsauth.ErrInvalidData)

	// A normal close by the client is reported with its code.
	require.NoError(t, c.WriteFrame(true, wstest.OpClose, []byte{0x03, 0xe8}))
	ev := e.nextClose()
	assert.Equal(t, protocol.CloseNormal, ev.code)
	assert.Equal(t, "alice", ev.subject)
	assert.Equal(t, 0, e.srv.Len())
}

func TestSubprotocolSelection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.dial(http.Header{"Sec-WebSocket-Protocol": {"other, wsauth.v1"}})
	assert.Equal(t, "wsauth.v1", c.Subprotocol)
	c2 := e.dial(nil)
	assert.Equal(t, "", c2.Subprotocol)
	c3 := e.dial(http.Header{"Sec-WebSocket-Protocol": {"other"}})
	assert.Equal(t, "", c3.Subprotocol)
}

func TestAuthFailuresClose4401(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	cases := []struct {
		name   string
		token  func() string
		reason string
	}{
		{"expired", func() string { return e.idp.Token("bob", -time.Minute) }, "token expired"},
		{"wrong audience", func() string {
			return e.idp.Sign(map[string]any{"iss": e.idp.Issuer(), "aud": "other", "sub": "bob", "exp": epoch.Add(time.Hour).Unix()})
		}, "wrong audience"},
		{"unknown issuer", func() string {
			return e.idp.Sign(map[string]any{"iss": "https://evil.example/", "aud": e.idp.Audience(), "sub": "bob", "exp": epoch.Add(time.Hour).Unix()})
		}, "unknown issuer"},
		{"garbage", func() string { return "not.a.jwt" }, "malformed token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(nil)
			tok := tc.token()
			require.NoError(t, c.Auth(tok))
			cl, texts, err := c.ReadClose()
			require.NoError(t, err)
			assert.Empty(t, texts)
			assert.Equal(t, 4401, cl.Code)
			assert.Equal(t, tc.reason, cl.Reason)
			assert.NotContains(t, cl.Reason, tok)
		})
	}
	e.noMessage()
}

func TestNothingBeforeAuthReachesTheApplication(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	cases := []struct {
		name   string
		send   func(c *wstest.Conn) error
		code   protocol.CloseCode
		reason string
	}{
		{"message before auth", func(c *wstest.Conn) error {
			return c.WriteText(`{"type":"message","data":"sneaky"}`)
		}, protocol.CloseUnauthorized, "auth required"},
		{"binary frame", func(c *wstest.Conn) error {
			return c.WriteFrame(true, wstest.OpBinary, []byte(`{"type":"auth","token":"x"}`))
		}, protocol.CloseMalformed, "binary frame"},
		{"not json", func(c *wstest.Conn) error { return c.WriteText(`hello`) }, protocol.CloseMalformed, "malformed frame"},
		{"unknown type", func(c *wstest.Conn) error { return c.WriteText(`{"type":"AUTH","token":"x"}`) }, protocol.CloseMalformed, "malformed frame"},
		{"duplicate keys", func(c *wstest.Conn) error {
			return c.WriteText(`{"type":"auth","type":"message","data":1}`)
		}, protocol.CloseMalformed, "malformed frame"},
		{"invalid utf8", func(c *wstest.Conn) error {
			return c.WriteFrame(true, wstest.OpText, []byte("{\"type\":\"auth\",\"token\":\"\xff\"}"))
		}, protocol.CloseMalformed, "malformed frame"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(nil)
			require.NoError(t, tc.send(c))
			cl, texts, err := c.ReadClose()
			require.NoError(t, err)
			assert.Empty(t, texts)
			assert.Equal(t, int(tc.code), cl.Code)
			assert.Equal(t, tc.reason, cl.Reason)
		})
	}
	e.noMessage()
}

func TestAuthDeadlineIsAbsolute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.AuthTimeout = 2 * time.Second })
	c := e.dial(nil)
	// Pings, and half a frame, every 100ms of fake time: none extends the deadline.
	require.NoError(t, c.WriteFrame(false, wstest.OpText, []byte(`{"type":"auth",`)))
	for i := 0; i < 19; i++ {
		e.clock.Advance(100 * time.Millisecond)
		_, err := c.Sync()
		require.NoError(t, err, "closed early, after %d ticks", i+1)
	}
	e.clock.Advance(100 * time.Millisecond) // exactly 2s after the upgrade
	e.expectClose(c, protocol.CloseAuthTimeout, "auth timeout")
	assert.Equal(t, 0, e.srv.Pending())
}

func TestPreAuthFrameCaps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.MaxPreAuthFrame = 1024 })
	cases := []struct {
		name string
		send func(c *wstest.Conn) error
		code protocol.CloseCode
	}{
		{"header announcing a huge frame", func(c *wstest.Conn) error {
			_, err := c.Write(wstest.HeaderOnly(true, wstest.OpText, 1<<30))
			return err
		}, protocol.CloseTooLarge},
		{"one frame over the cap", func(c *wstest.Conn) error {
			return c.WriteFrame(true, wstest.OpText, make([]byte, 1025))
		}, protocol.CloseTooLarge},
		{"fragments growing past the cap", func(c *wstest.Conn) error {
			for i := 0; i < 3; i++ {
				if err := c.WriteFrame(false, map[bool]byte{true: wstest.OpText, false: wstest.OpContinuation}[i == 0], make([]byte, 400)); err != nil {
					return err
				}
			}
			return nil
		}, protocol.CloseTooLarge},
		{"ping flood", func(c *wstest.Conn) error {
			for i := 0; i < 40; i++ {
				if err := c.WriteFrame(true, wstest.OpPing, make([]byte, 100)); err != nil {
					return err
				}
			}
			return nil
		}, protocol.CloseTooManyRequests},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(nil)
			_ = tc.send(c)
			cl, _, err := c.ReadClose()
			require.NoError(t, err)
			assert.Equal(t, int(tc.code), cl.Code)
		})
	}
	// An auth frame of exactly the cap is fine (padded with an ignored field).
	tok := e.idp.Token("carol", time.Hour)
	frame := fmt.Sprintf(`{"type":"auth","token":%q,"pad":""}`, tok)
	pad := 1024 - len(frame)
	require.Positive(t, pad)
	frame = fmt.Sprintf(`{"type":"auth","token":%q,"pad":"%s"}`, tok, strings.Repeat("x", pad))
	require.Len(t, frame, 1024)
	c := e.dial(nil)
	require.NoError(t, c.WriteText(frame))
	readType(t, c, "auth_ok")
	// After auth the larger MaxFrame applies.
	require.NoError(t, c.WriteText(`{"type":"message","data":"`+strings.Repeat("y", 4000)+`"}`))
	assert.Len(t, e.nextMessage().data, 4002)
}

func TestAuthenticatedFrameCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.MaxFrame = 16 << 10 })
	c, _ := e.login("dave", time.Hour)
	require.NoError(t, c.WriteText(`{"type":"message","data":"`+strings.Repeat("y", 17<<10)+`"}`))
	e.expectClose(c, protocol.CloseTooLarge, "")
	e.noMessage()
}

func TestPendingCaps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) {
		o.MaxPending = 3
		o.MaxPendingPerIP = 2
		o.ClientIP = func(r *http.Request) string { return r.Header.Get("X-Test-IP") }
	})
	ip := func(s string) http.Header { return http.Header{"X-Test-Ip": {s}} }
	authed, _ := e.login("erin", time.Hour) // authenticated sessions never count
	e.dial(ip("a"))
	e.dial(ip("a"))
	_, err := wstest.Dial(e.url, ip("a"))
	var he *wstest.HandshakeError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, http.StatusServiceUnavailable, he.Status)
	assert.Equal(t, "1", he.Header.Get("Retry-After"))

	pending := e.dial(ip("b"))
	_, err = wstest.Dial(e.url, ip("c"))
	require.ErrorAs(t, err, &he)
	assert.Equal(t, http.StatusServiceUnavailable, he.Status, "global cap")
	assert.Equal(t, 3, e.srv.Pending())

	// Authenticating frees a slot.
	require.NoError(t, pending.Auth(e.idp.Token("frank", time.Hour)))
	readType(t, pending, "auth_ok")
	assert.Equal(t, 2, e.srv.Pending())
	e.dial(ip("c"))

	// The authenticated session was unaffected throughout.
	_, err = e.srv.SendToPrincipals(context.Background(), json.RawMessage(`"still here"`), e.p("erin"))
	require.NoError(t, err)
	assert.Equal(t, "still here", readType(t, authed, "message")["data"])
}

func TestOriginCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.OriginPatterns = []string{"*.example.com", "https://app.test:*"} })
	host := strings.TrimPrefix(e.http.URL, "http://")
	cases := []struct {
		origin string
		want   int
	}{
		{"", http.StatusSwitchingProtocols},
		{"http://" + host, http.StatusSwitchingProtocols},
		{"https://chat.example.com", http.StatusSwitchingProtocols},
		{"https://CHAT.Example.com", http.StatusSwitchingProtocols},
		{"https://app.test:8443", http.StatusSwitchingProtocols},
		{"http://app.test:8443", http.StatusForbidden},
		{"https://evil.com", http.StatusForbidden},
		{"https://example.com.evil.com", http.StatusForbidden},
		{"null", http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.origin, func(t *testing.T) {
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			c, err := wstest.Dial(e.url, h)
			if tc.want == http.StatusSwitchingProtocols {
				require.NoError(t, err)
				c.Close()
				return
			}
			var he *wstest.HandshakeError
			require.ErrorAs(t, err, &he)
			assert.Equal(t, tc.want, he.Status)
		})
	}
}

func TestNonUpgradeRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	resp, err := http.Get(e.http.URL + "/ws")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUpgradeRequired, resp.StatusCode)
	resp, err = http.Post(e.http.URL+"/ws", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestHooksDecide(t *testing.T) {
	t.Parallel()
	refuse := errors.New("not today")
	e := newEnv(t, func(o *wsauth.Options) {
		o.OnAuthenticated = func(_ context.Context, s *wsauth.Session) error {
			switch s.Principal().Subject {
			case "mallory":
				return refuse
			case "trudy":
				return &protocol.CloseError{Code: 4000, Reason: "custom"}
			case "panicky":
				panic("boom")
			}
			return nil
		}
		next := o.OnMessage
		o.OnMessage = func(ctx context.Context, s *wsauth.Session, m wsauth.Message) error {
			switch string(m.Data) {
			case `"panic"`:
				panic("handler bug")
			case `"refuse"`:
				return &wsauth.MessageError{Code: 4001, Message: "no thanks"}
			case `"fail"`:
				return errors.New("database down")
			case `"close"`:
				return &protocol.CloseError{Code: protocol.CloseForbidden, Reason: "kicked"}
			}
			return next(ctx, s, m)
		}
	})
	for _, tc := range []struct {
		sub    string
		code   int
		reason string
	}{
		{"mallory", 4403, "forbidden"},
		{"trudy", 4000, "custom"},
		{"panicky", 1011, "internal error"},
	} {
		c := e.dial(nil)
		require.NoError(t, c.Auth(e.idp.Token(tc.sub, time.Hour)))
		cl, texts, err := c.ReadClose()
		require.NoError(t, err)
		assert.Empty(t, texts, tc.sub)
		assert.Equal(t, tc.code, cl.Code, tc.sub)
		assert.Equal(t, tc.reason, cl.Reason, tc.sub)
	}

	c, _ := e.login("grace", time.Hour)
	require.NoError(t, c.WriteText(`{"type":"message","id":"r1","data":"refuse"}`))
	assert.Equal(t, map[string]any{"type": "error", "code": float64(4001), "message": "no thanks", "ref": "r1"}, readType(t, c, "error"))
	require.NoError(t, c.WriteText(`{"type":"message","id":"r2","data":"fail"}`))
	got := readType(t, c, "error")
	assert.Equal(t, float64(protocol.ErrorInternal), got["code"])
	assert.NotContains(t, got["message"], "database")
	require.NoError(t, c.WriteText(`{"type":"message","data":"ok"}`))
	assert.Equal(t, `"ok"`, e.nextMessage().data)

	// A panicking handler closes only its own session with 1011.
	other, _ := e.login("heidi", time.Hour)
	require.NoError(t, c.WriteText(`{"type":"message","data":"panic"}`))
	cl, _, err := c.ReadClose()
	require.NoError(t, err)
	assert.Equal(t, 1011, cl.Code)
	require.NoError(t, other.WriteText(`{"type":"message","data":"alive"}`))
	assert.Equal(t, `"alive"`, e.nextMessage().data)

	require.NoError(t, other.WriteText(`{"type":"message","data":"close"}`))
	cl, _, err = other.ReadClose()
	require.NoError(t, err)
	assert.Equal(t, 4403, cl.Code)
	assert.Equal(t, "kicked", cl.Reason)
}

func TestMessagesRefusedWithoutHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.OnMessage = nil })
	c, _ := e.login("ivan", time.Hour)
	require.NoError(t, c.WriteText(`{"type":"message","id":"x","data":1}`))
	got := readType(t, c, "error")
	assert.Equal(t, float64(protocol.ErrorNotAccepted), got["code"])
	assert.Equal(t, "x", got["ref"])
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	a1, _ := e.login("judy", time.Hour)
	a2, _ := e.login("judy", time.Hour)
	b, _ := e.login("ken", time.Hour)
	assert.Equal(t, 2, must(e.srv.Revoke(context.Background(), e.p("judy"))))
	for _, c := range []*wstest.Conn{a1, a2} {
		cl, _, err := c.ReadClose()
		require.NoError(t, err)
		assert.Equal(t, 4403, cl.Code)
		assert.Equal(t, "session revoked", cl.Reason)
	}
	_, err := e.srv.SendToPrincipals(context.Background(), json.RawMessage(`1`), e.p("ken"))
	require.NoError(t, err)
	readType(t, b, "message")
	assert.Equal(t, 0, must(e.srv.Revoke(context.Background(), e.p("nobody"))))
}

func TestShutdownClosesEverySession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	active, _ := e.login("leo", time.Hour)
	pending := e.dial(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, e.srv.Shutdown(ctx))
	for _, c := range []*wstest.Conn{active, pending} {
		cl, _, err := c.ReadClose()
		require.NoError(t, err)
		assert.Equal(t, 1001, cl.Code)
	}
	_, err := wstest.Dial(e.url, nil)
	var he *wstest.HandshakeError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, http.StatusServiceUnavailable, he.Status)
	assert.Equal(t, 0, e.srv.Len())
	assert.Equal(t, 0, e.srv.Pending())
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	old := e.idp.Token("mia", time.Hour)
	e.idp.Rotate()
	// A token signed by the new key: its unknown kid makes the verifier refetch.
	e.login("mia", time.Hour)
	c2 := e.dial(nil)
	require.NoError(t, c2.Auth(old))
	readType(t, c2, "auth_ok")
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	_, err := wsauth.New(wsauth.Options{})
	require.ErrorContains(t, err, "Verifier is required")
	for _, o := range []wsauth.Options{
		{AuthTimeout: -1},
		{MaxPending: -1},
		{MaxPreAuthFrame: 2 << 20},
		{Expiry: 7},
		{OriginPatterns: []string{"["}},
	} {
		o.Verifier = verifierFunc(nil)
		_, err := wsauth.New(o)
		assert.Error(t, err, "%+v", o)
	}
}

func TestExpiryPolicyText(t *testing.T) {
	t.Parallel()
	for _, p := range []wsauth.ExpiryPolicy{wsauth.ExpiryReauth, wsauth.ExpiryClose, wsauth.ExpiryIgnore} {
		text, err := p.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, p.String(), string(text))
		var back wsauth.ExpiryPolicy = 99
		require.NoError(t, back.UnmarshalText(text))
		assert.Equal(t, p, back)
	}
	var p wsauth.ExpiryPolicy
	require.NoError(t, p.UnmarshalText([]byte("close")))
	assert.Equal(t, wsauth.ExpiryClose, p)
	assert.EqualError(t, p.UnmarshalText([]byte("never")), `wsauth: unknown expiry policy "never" (want reauth, close or ignore)`)
	assert.Equal(t, wsauth.ExpiryClose, p, "a failed UnmarshalText leaves the value alone")
	_, err := wsauth.ExpiryPolicy(7).MarshalText()
	assert.Error(t, err)
	assert.Equal(t, "ExpiryPolicy(7)", wsauth.ExpiryPolicy(7).String())
}

type verifierFunc func(ctx context.Context, token string) (wsauth.Identity, error)

func (f verifierFunc) Verify(ctx context.Context, token string) (wsauth.Identity, error) {
	return f(ctx, token)
}

func TestShutdownTimeoutStillReleasesEverything(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{})
	e := newEnv(t, func(o *wsauth.Options) {
		o.OnMessage = func(ctx context.Context, s *wsauth.Session, m wsauth.Message) error {
			close(entered)
			<-release // a hook that ignores ctx
			return nil
		}
	})
	c, _ := e.login("olga", time.Hour)
	require.NoError(t, c.WriteText(`{"type":"message","data":1}`))
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, e.srv.Shutdown(ctx), context.DeadlineExceeded)
	// The client got its 1001 even though the hook still runs.
	cl, _, err := c.ReadClose()
	require.NoError(t, err)
	assert.Equal(t, 1001, cl.Code)
	close(release)
	assert.Equal(t, protocol.CloseGoingAway, e.nextClose().code)
}

// TestSendToPrincipals: one call reaches every session of every user it
// names, each session once however often its user is listed; a user
// without a session takes nothing and is not an error; the count is of
// sessions.
func TestSendToPrincipals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice1, _ := e.login("alice", time.Hour)
	alice2, _ := e.login("alice", time.Hour)
	bob, _ := e.login("bob", time.Hour)
	dave, _ := e.login("dave", time.Hour)
	n, err := e.srv.SendToPrincipals(context.Background(), json.RawMessage(`{"n":1}`),
		e.p("alice"), e.p("bob"), e.p("alice"), e.p("carol"))
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	for _, c := range []*wstest.Conn{alice1, alice2, bob} {
		assert.Equal(t, map[string]any{"n": float64(1)}, readType(t, c, "message")["data"])
		quiet(t, c) // exactly one copy
	}
	quiet(t, dave)

	n, err = e.srv.SendToPrincipals(context.Background(), json.RawMessage(`1`))
	require.NoError(t, err)
	assert.Zero(t, n, "nobody named")
	_, err = e.srv.SendToPrincipals(context.Background(), json.RawMessage(`{`), e.p("alice"))
	assert.ErrorIs(t, err, wsauth.ErrInvalidData)
}
