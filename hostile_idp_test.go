package wsauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/client"
	"github.com/wsauth/wsauth/internal/flakyjwks"
	"github.com/wsauth/wsauth/internal/testlog"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/wsauthtest"
)

// authFails opens a socket, sends token and expects 4401 with reason.
func (h *hostileEnv) authFails(t *testing.T, token, reason string) {
	t.Helper()
	h.authClosed(t, token, protocol.CloseUnauthorized, reason)
}

// authClosed opens a connection, authenticates with token and requires
// the server to close it with code and reason.
func (h *hostileEnv) authClosed(t *testing.T, token string, code protocol.CloseCode, reason string) {
	t.Helper()
	c := h.open(t, nil)
	require.NoError(t, c.Auth(token))
	h.refused(t, c, code, reason)
}

// TestHostileIdentityProvider: a flaky identity provider, seen from the
// server. The verifier is driven by the server's fake clock (token times and
// the unknown-kid refetch limit); fetches are real HTTP.
func TestHostileIdentityProvider(t *testing.T) {
	t.Parallel()
	const rate = 5 * time.Minute // the default of jwks.Options.UnknownKIDRate

	t.Run("down at start", func(t *testing.T) {
		t.Parallel()
		h := newHostileEnv(t, hostileOptions{idpDown: true})
		idp := h.idp
		tok := idp.Token("ursula", time.Hour)
		fetches := idp.Fetches()
		// No keys is the provider's fault, not the token's: 1013, which
		// clients retry. The first token triggers one refetch, which
		// fails too; the next backs off.
		h.authClosed(t, tok, protocol.CloseTryAgainLater, "keys unavailable")
		assert.Equal(t, 1, idp.Fetches()-fetches)
		fetches = idp.Fetches()
		idp.SetDown(false)
		h.authClosed(t, tok, protocol.CloseTryAgainLater, "keys unavailable")
		assert.Equal(t, fetches, idp.Fetches(), "refetches inside the backoff")
		// Up again: the next login after the backoff (at most 5 s, not
		// UnknownKIDRate) gets in.
		h.clock.Advance(5 * time.Second)
		_, ok := h.loginT(t, idp.Token("ursula", time.Hour))
		assert.Equal(t, "ursula", ok["sub"])
		assert.Equal(t, fetches+1, idp.Fetches())
		assert.EqualValues(t, 1, h.authn.Load())
	})

	t.Run("down later: cached keys keep working", func(t *testing.T) {
		t.Parallel()
		h := newHostileEnv(t, hostileOptions{})
		idp := h.idp
		old := []string{idp.Token("victor", time.Hour), idp.Token("victor", time.Hour)}
		h.loginT(t, old[0])
		idp.SetDown(true)
		fetches := idp.Fetches()
		h.loginT(t, idp.Token("victor", time.Hour))
		assert.Equal(t, fetches, idp.Fetches(), "a known kid needs no fetch")
		// A new key while the IdP is down: the refetch fails, the keys
		// already held stay.
		idp.Rotate()
		fresh := idp.Token("victor", time.Hour)
		h.authFails(t, fresh, "unknown key")
		assert.Equal(t, fetches+1, idp.Fetches())
		h.loginT(t, old[1])
		idp.SetDown(false)
		h.authFails(t, fresh, "unknown key") // same rate window: no refetch
		assert.Equal(t, fetches+1, idp.Fetches())
		h.clock.Advance(rate)
		h.loginT(t, fresh)
	})

	// The verification of a token whose kid is unknown waits on a refetch;
	// a slow JWK Set must not keep the socket past its auth deadline. On the
	// server's clock the scheduler closes it with 4408.
	t.Run("slow JWKS: the deadline passes on the server clock", func(t *testing.T) {
		t.Parallel()
		const timeout = time.Second
		h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) { o.AuthTimeout = timeout }})
		idp := h.idp
		idp.Rotate()
		idp.SetDelay(time.Minute) // ends when the verifier gives up
		fetches := idp.Fetches()
		c := h.open(t, nil)
		require.NoError(t, c.Auth(idp.Token("wendy", time.Hour)))
		require.Eventually(t, func() bool { return idp.Fetches() > fetches }, 5*time.Second, time.Millisecond)
		h.clock.Advance(timeout - time.Millisecond)
		stillOpen(t, c)
		h.clock.Advance(time.Millisecond)
		h.refused(t, c, protocol.CloseAuthTimeout, "auth timeout")
		h.noApplication(t)
	})

	// The same, when real time runs out first: AuthTimeout also bounds the
	// verification itself (a real-time context of the time left). The
	// client did nothing wrong; its token is valid and its kid published.
	// The contract (protocol.md 3) says a connection without a valid auth
	// by the deadline is closed with 4408, and 4401 tells a client to stop
	// after one more refusal.

	t.Run("slow JWKS: the verification outlives AuthTimeout", func(t *testing.T) {
		t.Parallel()
		const timeout = 300 * time.Millisecond
		h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) { o.AuthTimeout = timeout }})
		idp := h.idp
		idp.Rotate()
		idp.SetDelay(time.Minute)
		c := h.open(t, nil)
		start := time.Now()
		require.NoError(t, c.Auth(idp.Token("xavier", time.Hour)))
		h.refused(t, c, protocol.CloseAuthTimeout, "auth timeout")
		assert.Less(t, time.Since(start), timeout+time.Second, "the verification was not bounded")
		h.noApplication(t)
	})

	// Bad answers from the JWKS URL fail that refetch; the keys held stay.
	for _, tc := range []struct {
		name string
		body func(h *hostileEnv) []byte
		opts func(*jwks.Options)
	}{
		{"garbage body", func(*hostileEnv) []byte { return []byte("<html>maintenance</html>") }, nil},
		{"truncated JSON", func(h *hostileEnv) []byte { b := h.idp.JWKS(); return b[:len(b)/2] }, nil},
		{"keys not an array", func(*hostileEnv) []byte { return []byte(`{"keys":"none"}`) }, nil},
		// Valid JSON that is no JWK Set (RFC 7517 5: "keys" is required).
		// These fail today: jwkset decodes them as an empty set and
		// replaces every cached key with it, so that one unknown-kid token
		// from anyone, at a moment the IdP answers this, locks every user
		// out ("keys unavailable") until a later refetch works.
		{"empty object", func(*hostileEnv) []byte { return []byte(`{}`) }, nil},
		{"JSON null", func(*hostileEnv) []byte { return []byte(`null`) }, nil},
		{"keys null", func(*hostileEnv) []byte { return []byte(`{"keys":null}`) }, nil},
		{"body over MaxJWKSBytes", func(h *hostileEnv) []byte {
			// A valid set holding the new key, padded past the cap: if the
			// cap did not hold, the new kid would verify.
			return append(h.idp.JWKS(), bytes.Repeat([]byte(" "), 8<<10)...)
		}, func(o *jwks.Options) { o.MaxJWKSBytes = 8 << 10 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHostileEnv(t, hostileOptions{verifier: tc.opts})
			idp := h.idp
			old := idp.Token("yvonne", time.Hour)
			idp.Rotate()
			fresh := idp.Token("yvonne", time.Hour)
			idp.SetBody(tc.body(h))
			fetches := idp.Fetches()
			h.authFails(t, fresh, "unknown key")
			assert.Equal(t, fetches+1, idp.Fetches())
			h.loginT(t, old)
			idp.SetBody(nil)
			h.clock.Advance(rate)
			h.loginT(t, fresh)
			noSecret(t, []string{old, fresh}, h.logs.String())
		})
	}

	t.Run("rotation: a retired kid stops validating after a refresh", func(t *testing.T) {
		t.Parallel()
		h := newHostileEnv(t, hostileOptions{})
		idp := h.idp
		retired := idp.KID()
		old := []string{idp.Token("zoe", time.Hour), idp.Token("zoe", time.Hour), idp.Token("zoe", time.Hour)}
		idp.Rotate()
		idp.Retire(retired)
		// Until the verifier refreshes, the retired key is still cached.
		session, _ := h.loginT(t, old[0])
		// A token of the new key makes it refetch: the retired key is gone.
		h.loginT(t, idp.Token("zoe", time.Hour))
		h.authFails(t, old[1], "unknown key")
		// The session it authenticated lives on, but cannot reauthenticate
		// with a token of the retired key.
		h.clock.Advance(time.Second) // past the reauth budget
		require.NoError(t, session.Auth(old[2]))
		ef := readType(t, session, "error")
		assert.Equal(t, "unknown key", ef["message"])
		// Even after the rate window, the retired kid stays unknown.
		h.clock.Advance(rate)
		h.authFails(t, idp.SignWith(nil, nil, map[string]any{"kid": retired}, h.claimsFor(idp, "zoe")), "unknown key")
	})
}

// TestIdPDownAtRestart is the whole story of issue 19's first-use item 8: a
// server restarts while its identity provider is unreachable. Its clients,
// reconnecting after the 1001 of the shutdown, are refused with 1013 "keys
// unavailable", which they retry, instead of 4401, which logged them out
// for good; once the provider is back, everyone is in within one backoff
// of the verifier (5 s on its clock) and one of the client's.
func TestIdPDownAtRestart(t *testing.T) {
	t.Parallel()
	const users = 3
	clock := wsauthtest.NewClock(epoch)
	idp := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{})
	idp.SetNow(clock.Now)
	logger, _ := testlog.New()
	var current atomic.Pointer[wsauth.Server]
	closes := make(chan *protocol.CloseError, 1000) // what the servers closed with
	start := func() (*wsauth.Server, *jwks.Verifier) {
		v, err := jwks.New(t.Context(), jwks.Options{Now: clock.Now, Logger: logger, Issuers: []jwks.Issuer{{
			Issuer: idp.Issuer(), JWKSURL: idp.JWKSURL(), Audience: []string{idp.Audience()},
		}}})
		require.NoError(t, err)
		srv, err := wsauth.New(wsauth.Options{Verifier: v, Clock: clock, Logger: logger,
			OnClose: func(_ *wsauth.Session, ce *protocol.CloseError) {
				select {
				case closes <- ce:
				default:
				}
			}})
		require.NoError(t, err)
		current.Store(srv)
		return srv, v
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { current.Load().ServeHTTP(w, r) }))
	defer hs.Close()
	first, firstV := start()

	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	var clients []*client.Client
	for i := range users {
		sub := fmt.Sprintf("user%d", i)
		c, err := client.Dial(t.Context(), url, client.Options{
			Token:   client.TokenFunc(func(context.Context) (string, error) { return idp.Token(sub, time.Hour), nil }),
			Backoff: client.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond},
			Logger:  logger,
		})
		require.NoError(t, err)
		defer c.Close()
		clients = append(clients, c)
	}

	// The provider goes down; the server restarts with a verifier that
	// could fetch no key.
	idp.SetDown(true)
	second, secondV := start()
	defer func() {
		require.NoError(t, second.Shutdown(context.Background()))
		secondV.Close()
	}()
	require.NoError(t, first.Shutdown(context.Background()))
	firstV.Close()

	// The clients are refused with 1013, and keep trying.
	seen := map[protocol.CloseError]int{}
	deadline := time.After(10 * time.Second)
	for seen[protocol.CloseError{Code: protocol.CloseTryAgainLater, Reason: "keys unavailable"}] < 2*users {
		select {
		case ce := <-closes:
			seen[*ce]++
		case <-deadline:
			t.Fatalf("closes seen: %v", seen)
		}
	}
	assert.Equal(t, users, seen[protocol.CloseError{Code: protocol.CloseGoingAway, Reason: "server shutting down"}])
	assert.Len(t, seen, 2, "closes seen: %v", seen)
	for _, c := range clients {
		assert.NoError(t, c.Err(), "a client gave up")
	}

	idp.SetDown(false)
	clock.Advance(5 * time.Second) // the verifier's longest backoff
	require.Eventually(t, func() bool { return second.Len() == users }, 10*time.Second, 10*time.Millisecond,
		"not everyone got back in")
	// The server registers a session before it writes its auth_ok: the
	// clients see it a moment later.
	for _, c := range clients {
		require.Eventually(t, func() bool { return c.State() == client.Active }, 10*time.Second, time.Millisecond,
			"a client stays %v", c.State())
		assert.NoError(t, c.Err())
	}
}

// flappingCycle is every answer flakyjwks gives, one per fetch.
var flappingCycle = []flakyjwks.Answer{flakyjwks.Good, flakyjwks.Down, flakyjwks.Garbage, flakyjwks.Truncated,
	flakyjwks.NoKeys, flakyjwks.NotASet, flakyjwks.Unusable, flakyjwks.Reset, flakyjwks.Hang, flakyjwks.TooLarge}

// hostileFlappingIdP: the JWK Set is refreshed every few milliseconds and
// every fetch gets another answer, good, down, garbage, a hang, a reset
// and more (flakyjwks). Authenticated sessions are never closed and keep
// exchanging messages and reauthenticating; every login with a held key
// gets in; a login with a new key gets 4401 "unknown key" until a good
// answer brings the key in, never 1013 (keys are held) nor anything else.
// Once the server, the verifier and the provider are closed, the process
// has no goroutine or descriptor more than before: a case of
// TestHostileResources.
func hostileFlappingIdP(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // see hostileRefusalPaths
	base := measure(t)
	t.Run("flapping", func(t *testing.T) {
		var f *flakyjwks.Server
		h := newHostileEnv(t, hostileOptions{verifier: func(o *jwks.Options) {
			f = flakyjwks.New(t, o.Issuers[0].JWKSURL, flappingCycle...)
			o.Issuers[0].JWKSURL = f.URL
			o.RefreshInterval = 5 * time.Millisecond
			o.HTTPClient = &http.Client{Timeout: 200 * time.Millisecond}
			o.MaxJWKSBytes = flakyjwks.HugePadding / 2
		}})
		idp := h.idp
		var sessions []*wstest.Conn
		var ids []string
		for i := range 3 {
			c, ok := h.loginT(t, idp.Token(fmt.Sprintf("steady%d", i), time.Hour))
			sessions = append(sessions, c)
			ids = append(ids, ok["session"].(string))
		}
		logins, reauths := 0, 0
		for i := 0; f.Fetches() <= 3*len(flappingCycle); i++ {
			// A login with a held key, then gone with a close frame.
			c, _ := h.loginT(t, idp.Token("visitor", time.Hour))
			require.NoError(t, c.WriteFrame(true, wstest.OpClose, []byte{0x03, 0xe8}))
			_, _, err := c.ReadClose()
			require.NoError(t, err)
			assert.Equal(t, protocol.CloseNormal, h.closeEventT(t).code)
			logins++
			// Messages both ways on a steady session.
			s := sessions[i%len(sessions)]
			require.NoError(t, s.WriteText(fmt.Sprintf(`{"type":"message","data":%d}`, i)))
			assert.Equal(t, fmt.Sprint(i), h.nextMessage().data)
			require.NoError(t, h.srv.Send(context.Background(), ids[i%len(ids)], json.RawMessage(fmt.Sprint(i))))
			assert.Equal(t, float64(i), readType(t, s, "message")["data"])
			// A reauthentication, past the reauth budget.
			h.clock.Advance(time.Second)
			require.NoError(t, s.Auth(idp.Token(fmt.Sprintf("steady%d", i%len(sessions)), time.Hour)))
			readType(t, s, "auth_ok")
			reauths++
		}
		t.Logf("%d logins and %d reauths during %d fetches", logins, reauths, f.Fetches())

		// A new key: refused as unknown until a good answer brings it in.
		idp.Rotate()
		tok := idp.Token("newcomer", time.Hour)
		refusals := 0
		for deadline := time.Now().Add(10 * time.Second); ; {
			require.True(t, time.Now().Before(deadline), "the new key never came in")
			c := h.open(t, nil)
			require.NoError(t, c.Auth(tok))
			m, err := c.ReadJSON()
			var cr *wstest.CloseReceived
			if errors.As(err, &cr) {
				assert.Equal(t, wstest.Close{Code: int(protocol.CloseUnauthorized), Reason: "unknown key"}, cr.Close)
				assert.Equal(t, protocol.CloseUnauthorized, h.closeEventT(t).code)
				refusals++
				h.clock.Advance(5 * time.Minute) // the next unknown-kid refetch
				continue
			}
			require.NoError(t, err)
			require.Equal(t, "auth_ok", m["type"])
			c.Close()
			assert.Equal(t, protocol.CloseAbnormal, h.closeEventT(t).code)
			break
		}
		t.Logf("the new key came in after %d refusals", refusals)

		// The steady sessions were never closed (their tokens now expire
		// an hour after their last reauth).
		for i, s := range sessions {
			require.NoError(t, s.WriteText(`{"type":"message","data":"still here"}`), "session %d", i)
			assert.Equal(t, `"still here"`, h.nextMessage().data)
			s.Close()
			assert.Equal(t, protocol.CloseAbnormal, h.closeEventT(t).code)
		}
		h.settled(t)
		assert.Equal(t, wsauth.Holdings{}, wsauth.HoldingsOf(h.srv))
		assert.NotContains(t, h.logs.String(), tok)
	})
	backToBaseline(t, base, 5)
}
