package wsauth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// quiet asserts the server sent nothing (a ping round trip sees no text).
func quiet(t *testing.T, c *wstest.Conn) {
	t.Helper()
	texts, err := c.Sync()
	require.NoError(t, err)
	require.Empty(t, texts, "unexpected frames: %q", texts)
}

func send(t *testing.T, e *env, sub string, data string) {
	t.Helper()
	n, err := e.srv.SendToPrincipals(context.Background(), json.RawMessage(data), e.p(sub))
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

func TestReauthRequiredTiming(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		ttl      time.Duration
		lead     time.Duration // expected time from auth to reauth_required
		optLead  time.Duration
		optGrace time.Duration
	}{
		{"lead from options", time.Hour, time.Hour - 30*time.Second, 0, 0},
		{"short token: half its life", 20 * time.Second, 10 * time.Second, 0, 0},
		{"custom lead and grace", time.Minute, 50 * time.Second, 10 * time.Second, 3 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(o *wsauth.Options) { o.ReauthLead, o.ReauthGrace = tc.optLead, tc.optGrace })
			c, ok := e.login("ann", tc.ttl)
			exp := int64(ok["exp"].(float64))
			e.clock.Advance(tc.lead - time.Millisecond)
			quiet(t, c)
			e.clock.Advance(time.Millisecond)
			rr := readType(t, c, "reauth_required")
			grace := tc.optGrace
			if grace == 0 {
				grace = wsauth.DefaultReauthGrace
			}
			assert.Equal(t, float64(exp), rr["exp"])
			assert.Equal(t, float64(exp+int64(grace/time.Second)), rr["deadline"])
		})
	}
}

func TestReauthOnTheSameSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.ReauthLead = 10 * time.Second })
	c, ok := e.login("bea", time.Minute)
	id := ok["session"]
	e.clock.Advance(50 * time.Second)
	readType(t, c, "reauth_required")

	require.NoError(t, c.Auth(e.idp.Token("bea", time.Minute)))
	ok2 := readType(t, c, "auth_ok")
	assert.Equal(t, id, ok2["session"], "same session")
	assert.Equal(t, float64(epoch.Add(110*time.Second).Unix()), ok2["exp"])

	// The old expiry no longer applies: the next reauth_required is 10s
	// before the new exp.
	e.clock.Advance(49 * time.Second)
	quiet(t, c)
	e.clock.Advance(time.Second)
	rr := readType(t, c, "reauth_required")
	assert.Equal(t, float64(epoch.Add(110*time.Second).Unix()), rr["exp"])
	s, _ := e.srv.Session(id.(string))
	assert.Equal(t, session.Active, s.State())
}

func TestEarlyRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c, _ := e.login("cid", time.Hour)
	e.clock.Advance(10 * time.Minute)
	require.NoError(t, c.Auth(e.idp.Token("cid", time.Hour)))
	ok := readType(t, c, "auth_ok")
	assert.Equal(t, float64(epoch.Add(70*time.Minute).Unix()), ok["exp"])
	e.clock.Advance(59*time.Minute + 29*time.Second) // the old token expired long ago
	quiet(t, c)
}

func TestExpiredSessionBuffersAndDeliversInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.ReauthLead = 10 * time.Second })
	c, ok := e.login("dan", time.Minute)
	send(t, e, "dan", `{"n":1}`)
	assert.Equal(t, map[string]any{"n": float64(1)}, readType(t, c, "message")["data"])

	e.clock.Advance(time.Minute) // past exp
	readType(t, c, "reauth_required")
	s, _ := e.srv.Session(ok["session"].(string))
	require.Equal(t, session.Expired, s.State())
	for n := 2; n <= 6; n++ {
		send(t, e, "dan", fmt.Sprintf(`{"n":%d}`, n))
	}
	quiet(t, c)

	// A message from the client is refused, not processed, while expired.
	require.NoError(t, c.WriteText(`{"type":"message","id":"late","data":"x"}`))
	er := readType(t, c, "error")
	assert.Equal(t, float64(4401), er["code"])
	assert.Equal(t, "late", er["ref"])
	e.noMessage()

	require.NoError(t, c.Auth(e.idp.Token("dan", time.Minute)))
	readType(t, c, "auth_ok")
	for n := 2; n <= 6; n++ {
		assert.Equal(t, map[string]any{"n": float64(n)}, readType(t, c, "message")["data"])
	}
	send(t, e, "dan", `{"n":7}`)
	assert.Equal(t, map[string]any{"n": float64(7)}, readType(t, c, "message")["data"])
	assert.Empty(t, e.undeliveredFor("dan"))
}

func TestGraceDeadlineCloses4440AndHandsOverUndelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.ReauthLead, o.ReauthGrace = 10*time.Second, 5*time.Second })
	c, _ := e.login("eve", time.Minute)
	e.clock.Advance(time.Minute)
	readType(t, c, "reauth_required")
	send(t, e, "eve", `"a"`)
	send(t, e, "eve", `"b"`)
	e.clock.Advance(5*time.Second - time.Millisecond)
	quiet(t, c)
	e.clock.Advance(time.Millisecond)
	e.expectClose(c, protocol.CloseSessionExpired, "session expired")
	assert.Equal(t, []string{`"a"`, `"b"`}, e.undeliveredFor("eve"))

	// A reauth after the deadline is impossible: the socket is gone.
	_ = c.Auth(e.idp.Token("eve", time.Minute))
	_, _, err := c.ReadFrame()
	assert.Error(t, err)
	assert.Equal(t, 0, e.srv.Len())
	_, err = e.srv.SendToPrincipals(context.Background(), json.RawMessage(`"c"`), e.p("eve"))
	require.NoError(t, err)
}

func TestBufferOverflowCloses4413(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.BufferMessages = 3 })
	c, ok := e.login("fay", time.Minute)
	e.clock.Advance(time.Minute)
	readType(t, c, "reauth_required")
	s, _ := e.srv.Session(ok["session"].(string))
	for i := 1; i <= 4; i++ {
		require.NoError(t, s.Send(json.RawMessage(fmt.Sprint(i))))
	}
	assert.ErrorIs(t, s.Send(json.RawMessage(`5`)), wsauth.ErrSessionClosed)
	e.expectClose(c, protocol.CloseBufferOverflow, "buffer overflow")
	assert.Equal(t, []string{"1", "2", "3", "4"}, e.undeliveredFor("fay"))
}

// TestReauthFailures: a reauthentication whose token fails verification is
// refused with an error frame and changes nothing (the session keeps its
// current token until exp + grace, red team item 17); one as another user
// closes the session.
func TestReauthFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	cases := []struct {
		name   string
		token  func() string
		code   protocol.CloseCode // 0: not closed
		reason string
	}{
		{"other subject", func() string { return e.idp.Token("someone-else", time.Hour) }, protocol.CloseForbidden, "subject changed"},
		{"expired token", func() string { return e.idp.Token("gus", -time.Second) }, 0, "token expired"},
		{"invalid token", func() string { return "x.y.z" }, 0, "malformed token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := e.login("gus", time.Hour)
			e.clock.Advance(time.Second) // past the reauth budget
			require.NoError(t, c.Auth(tc.token()))
			if tc.code != 0 {
				cl, texts, err := c.ReadClose()
				require.NoError(t, err)
				assert.Empty(t, texts)
				assert.Equal(t, int(tc.code), cl.Code)
				assert.Equal(t, tc.reason, cl.Reason)
				return
			}
			ef := readType(t, c, "error")
			assert.Equal(t, float64(protocol.ErrorReauthRequired), ef["code"])
			assert.Equal(t, tc.reason, ef["message"])
			assert.NotContains(t, ef, "ref")
			// Still the same session, still active.
			require.NoError(t, e.srv.Send(context.Background(), ok["session"].(string), json.RawMessage(`"still on"`)))
			assert.Equal(t, "still on", readType(t, c, "message")["data"])
		})
	}
}

// TestReauthInsideGrace: a token that arrives already expired while the
// session is in its grace window is refused with an error frame; a good one
// after it still saves the session (red team item 17).
func TestReauthInsideGrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c, _ := e.login("gwen", 20*time.Second)
	e.clock.Advance(10 * time.Second) // exp - lead, the lead capped at ttl/2
	readType(t, c, "reauth_required")
	e.clock.Advance(11 * time.Second) // expired, inside the 10 s grace
	require.NoError(t, c.Auth(e.idp.Token("gwen", -time.Second)))
	ef := readType(t, c, "error")
	assert.Equal(t, "token expired", ef["message"])
	e.clock.Advance(time.Second)
	require.NoError(t, c.Auth(e.idp.Token("gwen", time.Hour)))
	readType(t, c, "auth_ok")
}

// TestReauthBudget: auth frames are verified at most once a second, besides
// the answer to each reauth_required; others get error 4429 unverified
// (red team item 9).
func TestReauthBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c, _ := e.login("hugo", time.Hour)
	tok := e.idp.Token("hugo", 2*time.Hour)
	for range 3 {
		require.NoError(t, c.Auth(tok))
		ef := readType(t, c, "error")
		assert.Equal(t, float64(protocol.ErrorTooManyRequests), ef["code"])
		assert.Equal(t, "too many auth frames", ef["message"])
	}
	e.clock.Advance(time.Second)
	require.NoError(t, c.Auth(tok))
	readType(t, c, "auth_ok")
	require.NoError(t, c.Auth(tok))
	assert.Equal(t, float64(protocol.ErrorTooManyRequests), readType(t, c, "error")["code"])

	// The answer to reauth_required is always verified, however soon.
	e.clock.Advance(2*time.Hour - 31*time.Second) // past exp - lead
	readType(t, c, "reauth_required")
	require.NoError(t, c.Auth(e.idp.Token("hugo", 3*time.Hour)))
	readType(t, c, "auth_ok")
	// And only the answer: the next frame within the second is refused.
	require.NoError(t, c.Auth(e.idp.Token("hugo", 3*time.Hour)))
	assert.Equal(t, float64(protocol.ErrorTooManyRequests), readType(t, c, "error")["code"])
}

// TestReauthSameExpKeepsSchedule: a reauthentication whose token expires no
// later than the current one does not re-arm reauth_required (it used to,
// at half the time left, again and again: red team item 17).
func TestReauthSameExpKeepsSchedule(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c, _ := e.login("ivy", 100*time.Second) // reauth_required at exp - 30 s
	tok := e.idp.Token("ivy", 100*time.Second)
	e.clock.Advance(70 * time.Second)
	readType(t, c, "reauth_required")
	require.NoError(t, c.Auth(tok)) // the same exp
	readType(t, c, "auth_ok")
	e.clock.Advance(30*time.Second - time.Millisecond) // up to exp
	quiet(t, c)
	e.clock.Advance(10*time.Second + time.Millisecond) // exp + grace
	texts := e.expectClose(c, protocol.CloseSessionExpired, "session expired")
	assert.Empty(t, texts, "frames after the answer to reauth_required")
}

func TestExpiryPolicies(t *testing.T) {
	t.Parallel()
	t.Run("close", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *wsauth.Options) { o.Expiry = wsauth.ExpiryClose })
		c, _ := e.login("hal", time.Minute)
		send(t, e, "hal", `"before"`)
		assert.Equal(t, "before", readType(t, c, "message")["data"])
		e.clock.Advance(time.Minute - time.Millisecond)
		quiet(t, c) // no reauth_required with ExpiryClose
		e.clock.Advance(time.Millisecond)
		e.expectClose(c, protocol.CloseSessionExpired, "session expired")
	})
	t.Run("ignore", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *wsauth.Options) { o.Expiry = wsauth.ExpiryIgnore })
		c, _ := e.login("ida", time.Minute)
		e.clock.Advance(24 * time.Hour)
		quiet(t, c)
		send(t, e, "ida", `"still"`)
		assert.Equal(t, "still", readType(t, c, "message")["data"])
	})
}

// Many goroutines Send while the session expires and reauthenticates: every
// message arrives once, and each sender's messages arrive in its order.
func TestConcurrentSendsDuringReauthKeepPerSenderOrder(t *testing.T) {
	t.Parallel()
	const senders, each = 8, 60
	e := newEnv(t, func(o *wsauth.Options) { o.BufferMessages = senders * each })
	c, ok := e.login("ivy", time.Minute)
	s, _ := e.srv.Session(ok["session"].(string))

	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < each; i++ {
				assert.NoError(t, s.Send(json.RawMessage(fmt.Sprintf(`{"g":%d,"i":%d}`, g, i))))
			}
		}()
	}
	close(start)
	e.clock.Advance(time.Minute) // expires while the senders run
	fresh := e.idp.Token("ivy", time.Hour)
	wg.Wait()
	require.NoError(t, c.Auth(fresh))

	next := make([]int, senders)
	sawAuthOK := false
	// auth_ok may come before, among or after the messages: after all of
	// them when every Send landed before the expiry took effect.
	for got := 0; got < senders*each || !sawAuthOK; {
		m, err := c.ReadJSON()
		require.NoError(t, err)
		switch m["type"] {
		case "reauth_required":
		case "auth_ok":
			sawAuthOK = true
		case "message":
			d := m["data"].(map[string]any)
			g, i := int(d["g"].(float64)), int(d["i"].(float64))
			require.Equal(t, next[g], i, "sender %d out of order", g)
			next[g]++
			got++
		default:
			t.Fatalf("unexpected frame %v", m)
		}
	}
	assert.True(t, sawAuthOK)
	quiet(t, c)
}

// TestTokenExpiringDuringAuthOK: a token that expires while its auth_ok is
// being written (a client slow to read, a token with little life left)
// leaves the session expired when the write ends: nothing is delivered to
// it until a fresh token comes, as for any expired session. activate used
// to resume the outbox after writing auth_ok whatever had happened
// meanwhile, so such a session got its messages with an expired token.
func TestTokenExpiringDuringAuthOK(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	link := newSlowLink(t, h.srv, time.Minute)
	link.holdWrites(`"type":"auth_ok"`)
	c, err := wstest.Dial(link.url, nil)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Auth(h.idp.Token("tess", time.Minute)))
	link.waitWriting(t)
	h.clock.Advance(time.Minute) // reauth_required, then expiry, while auth_ok is on its way
	close(link.release)
	readType(t, c, "auth_ok")
	readType(t, c, "reauth_required")

	n, err := h.srv.SendToPrincipals(context.Background(), json.RawMessage(`"m1"`), h.p("tess"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	stillOpen(t, c) // buffered, not delivered
	require.NoError(t, c.Auth(h.idp.Token("tess", time.Hour)))
	readType(t, c, "auth_ok")
	assert.Equal(t, "m1", readType(t, c, "message")["data"])
}
