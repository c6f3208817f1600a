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

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// TestHostileApplicationFaults: a faulty application handler hurts only its
// own session.
func TestHostileApplicationFaults(t *testing.T) {
	t.Parallel()
	release, giveUp := make(chan struct{}), make(chan struct{})
	blocked := make(chan string, 10)
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		next := o.OnMessage
		o.OnMessage = func(ctx context.Context, s *wsauth.Session, m wsauth.Message) error {
			switch string(m.Data) {
			case `"panic"`:
				panic("handler bug")
			case `"block"`:
				blocked <- s.ID()
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil
			case `"wait"`: // a well-behaved handler: it waits on its context
				blocked <- s.ID()
				select {
				case <-ctx.Done():
				case <-giveUp: // only so that a failing test can end
				}
				return nil
			}
			return next(ctx, s, m)
		}
	}})
	t.Cleanup(func() {
		close(giveUp)
		select {
		case <-release:
		default:
			close(release)
		}
	})
	login := func(sub string) (*wstest.Conn, string) {
		c, ok := h.loginT(t, h.idp.Token(sub, time.Hour))
		return c, ok["session"].(string)
	}
	roundTrip := func(t *testing.T, c *wstest.Conn, id, data string) {
		t.Helper()
		require.NoError(t, c.WriteText(`{"type":"message","data":`+data+`}`))
		m := h.nextMessage()
		assert.Equal(t, received{session: id, subject: m.subject, data: data}, m)
		require.NoError(t, h.srv.Send(context.Background(), id, json.RawMessage(data)))
		assert.Equal(t, map[string]any{"type": "message", "data": must(decode(data))}, must(c.ReadJSON()))
	}

	t.Run("a panicking handler closes only its session with 1011", func(t *testing.T) {
		a, _ := login("anna")
		b, bid := login("boris")
		require.NoError(t, a.WriteText(`{"type":"message","data":"panic"}`))
		h.refused(t, a, protocol.CloseInternal, "internal error")
		roundTrip(t, b, bid, `"still here"`)
		assert.Contains(t, h.logs.String(), "application hook panicked")
	})

	t.Run("a blocked handler does not block other sessions", func(t *testing.T) {
		a, aid := login("carl")
		b, bid := login("dora")
		require.NoError(t, a.WriteText(`{"type":"message","data":"block"}`))
		select {
		case id := <-blocked:
			require.Equal(t, aid, id)
		case <-time.After(5 * time.Second):
			t.Fatal("the handler was not called")
		}
		// The other session is served while the handler blocks.
		for i := range 10 {
			roundTrip(t, b, bid, fmt.Sprint(i))
		}
		// The blocked session's own frames wait, in order; what the server
		// sends it still goes out.
		require.NoError(t, a.WriteText(`{"type":"message","data":"after"}`))
		require.NoError(t, h.srv.Send(context.Background(), aid, json.RawMessage(`"to carl"`)))
		assert.Equal(t, "to carl", must(a.ReadJSON())["data"])
		select {
		case m := <-h.rec.messages:
			t.Fatalf("a frame overtook the blocked handler: %+v", m)
		case <-time.After(50 * time.Millisecond):
		}
		close(release)
		assert.Equal(t, received{session: aid, subject: "carl", data: `"after"`}, h.nextMessage())
		// Pending sockets are not held up either.
		p := h.open(t, nil)
		require.NoError(t, p.Auth(h.idp.Token("erik", time.Hour)))
		assert.Equal(t, "auth_ok", must(p.ReadJSON())["type"])
	})

	// Session.Context "is cancelled when the session closes", and
	// OnMessage gets it. It must be cancelled when the server marks the
	// session closed, not when the read loop ends: the read loop is the
	// goroutine running the handler, so the session would never finish.
	t.Run("a handler waiting on its context is released when the server closes the session", func(t *testing.T) {
		a, aid := login("fred")
		require.NoError(t, a.WriteText(`{"type":"message","data":"wait"}`))
		select {
		case id := <-blocked:
			require.Equal(t, aid, id)
		case <-time.After(5 * time.Second):
			t.Fatal("the handler was not called")
		}
		require.Equal(t, 1, must(h.srv.Revoke(context.Background(), h.p("fred"))))
		cl, _, err := a.ReadClose()
		require.NoError(t, err)
		assert.Equal(t, wstest.Close{Code: 4403, Reason: "session revoked"}, cl)
		deadline := time.After(2 * time.Second)
		for {
			select {
			case ev := <-h.rec.closes:
				if ev.session != aid {
					continue
				}
				assert.Equal(t, protocol.CloseForbidden, ev.code)
			case <-deadline:
				t.Fatal("the revoked session never finished: its handler still waits on a context nobody cancelled")
			}
			break
		}
	})
}

func decode(s string) (any, error) {
	var v any
	err := json.Unmarshal([]byte(s), &v)
	return v, err
}

// TestHostileNoTokenLeaks runs a session history with every kind of failure,
// reauths and refusals, and then checks that no token minted along the way
// (nor its payload or signature on their own) appears in the server's logs,
// in a close reason or in any frame a client received.
func TestHostileNoTokenLeaks(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.ReauthLead = 10 * time.Second
		next := o.OnMessage
		o.OnMessage = func(ctx context.Context, s *wsauth.Session, m wsauth.Message) error {
			switch string(m.Data) {
			case `"refuse"`:
				return &wsauth.MessageError{Code: 4001, Message: "refused"}
			case `"fail"`:
				return errors.New("database down")
			case `"panic"`:
				panic("handler bug")
			}
			return next(ctx, s, m)
		}
		o.OnAuthenticated = func(_ context.Context, s *wsauth.Session) error {
			if s.Principal().Subject == "banned" {
				return errors.New("banned")
			}
			return nil
		}
	}})
	idp := h.idp
	var tokens, seen []string
	mint := func(tok string) string { tokens = append(tokens, tok); return tok }
	// drain records everything the server sent c until it closed.
	drain := func(c *wstest.Conn) {
		cl, texts, err := c.ReadClose()
		require.NoError(t, err)
		seen = append(seen, cl.Reason)
		for _, b := range texts {
			seen = append(seen, string(b))
		}
	}
	read := func(c *wstest.Conn, typ string) map[string]any {
		b, err := c.Next()
		require.NoError(t, err)
		seen = append(seen, string(b))
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		require.Equal(t, typ, m["type"], "frame %s", b)
		return m
	}
	claims := func(edit func(map[string]any)) jwt.MapClaims {
		c := h.claimsFor(idp, "alice")
		edit(c)
		return c
	}

	// Refused first auth frames.
	for _, tok := range []string{
		idp.Token("alice", -time.Minute),
		idp.Sign(claims(func(c map[string]any) { c["aud"] = "elsewhere" })),
		idp.SignWith(nil, nil, map[string]any{"kid": "nope"}, claims(func(map[string]any) {})),
		idp.SignWith(nil, nil, map[string]any{"kid": nil}, claims(func(map[string]any) {})),
		idp.SignWith(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, claims(func(map[string]any) {})),
		idp.SignWith(jwt.SigningMethodHS256, idp.PublicKeyPEM(), nil, claims(func(map[string]any) {})),
		tamper(idp.Token("alice", time.Hour), claims(func(c map[string]any) { c["sub"] = "root" })),
		idp.Token("banned", time.Hour),
	} {
		c := h.open(t, nil)
		require.NoError(t, c.Auth(mint(tok)))
		drain(c)
	}
	// Frames carrying a valid token that are refused before it is read.
	for _, frame := range []func(tok string) []byte{
		func(tok string) []byte {
			return wstest.Frame(true, wstest.OpBinary, []byte(`{"type":"auth","token":"`+tok+`"}`))
		},
		func(tok string) []byte { return text(`{"type":"auth","token":"` + tok + `","token":"` + tok + `"}`) },
		func(tok string) []byte { return text("{\"type\":\"auth\",\"token\":\"" + tok + "\xff\"}") },
		func(tok string) []byte { return text(`{"type":"Auth","token":"` + tok + `"}`) },
		func(tok string) []byte { return text(`{"type":"message","data":"` + tok + `"}`) },
		func(tok string) []byte {
			return text(`{"type":"auth","token":"` + tok + `","pad":"` + strings.Repeat("x", wsauth.DefaultMaxPreAuthFrame) + `"}`)
		},
	} {
		c := h.open(t, nil)
		_, err := c.Write(frame(mint(idp.Token("alice", time.Hour))))
		require.NoError(t, err)
		drain(c)
	}
	// An unknown kid while the IdP is down: the failed refetch is logged.
	idp.SetDown(true)
	h.clock.Advance(10 * time.Minute)
	c := h.open(t, nil)
	require.NoError(t, c.Auth(mint(idp.SignWith(nil, nil, map[string]any{"kid": "rotated"}, claims(func(map[string]any) {})))))
	drain(c)
	idp.SetDown(false)

	// A session through reauths, expiry and refusals.
	c = h.open(t, nil)
	require.NoError(t, c.Auth(mint(idp.Token("alice", 20*time.Second))))
	read(c, "auth_ok")
	h.clock.Advance(time.Second)                                         // past the reauth budget
	require.NoError(t, c.Auth(mint(idp.Token("alice", 20*time.Second)))) // early refresh
	read(c, "auth_ok")
	for _, data := range []string{`"refuse"`, `"fail"`} {
		require.NoError(t, c.WriteText(`{"type":"message","id":"m","data":`+data+`}`))
		read(c, "error")
	}
	h.clock.Advance(20 * time.Second) // past exp: expired, buffered
	read(c, "reauth_required")
	require.NoError(t, c.WriteText(`{"type":"message","id":"late","data":1}`))
	read(c, "error")
	require.NoError(t, c.Auth(mint(idp.Token("alice", time.Hour))))
	read(c, "auth_ok")
	require.NoError(t, c.Auth(mint(idp.Token("alice", 2*time.Hour)))) // too soon
	read(c, "error")
	h.clock.Advance(time.Second)
	require.NoError(t, c.Auth(mint(idp.Token("mallory", time.Hour)))) // another subject
	drain(c)

	for _, bad := range []string{
		idp.Token("alice", -time.Second),
		idp.SignWith(nil, nil, map[string]any{"kid": "nope"}, claims(func(map[string]any) {})),
		"e30." + strings.Repeat("A", 70<<10) + ".sig",
	} {
		c, _ := h.loginT(t, mint(idp.Token("alice", time.Hour)))
		h.clock.Advance(time.Second)
		require.NoError(t, c.Auth(mint(bad)))
		read(c, "error") // a refused reauth leaves the session open
		c.Close()
	}
	c, _ = h.loginT(t, mint(idp.Token("alice", time.Hour)))
	require.NoError(t, c.WriteText(`{"type":"message","data":"panic"}`))
	drain(c)

	// Shut the server down with sessions open: the last log lines.
	c, _ = h.loginT(t, mint(idp.Token("alice", time.Hour)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.srv.Shutdown(ctx))
	drain(c)
	_, err := wstest.Dial(h.url, http.Header{"Authorization": {"Bearer " + tokens[len(tokens)-1]}})
	var he *wstest.HandshakeError
	require.ErrorAs(t, err, &he)
	seen = append(seen, he.Body)

	logs := h.logs.String()
	require.Contains(t, logs, "token refused", "the scenario logged nothing?")
	require.Contains(t, logs, "fetching JWK Set failed")
	t.Logf("%d tokens, %d frames and reasons, %d bytes of logs checked", len(tokens), len(seen), len(logs))
	noSecret(t, tokens, append(seen, logs)...)
}
