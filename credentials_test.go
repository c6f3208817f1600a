package wsauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// ticketEnv serves the env's server's TicketHandler on a server of its own.
func ticketEnv(t *testing.T, h *hostileEnv) string {
	t.Helper()
	hs := httptest.NewServer(h.srv.TicketHandler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// exchange posts token (if not empty) to the ticket endpoint and returns
// the status and the decoded answer.
func exchange(t *testing.T, url, token string, header http.Header) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.StatusCode, body
}

// upgradeRefused dials url and requires the upgrade to be refused with
// status, no socket opened and no pending slot taken.
func upgradeRefused(t *testing.T, h *hostileEnv, url string, header http.Header, status int) string {
	t.Helper()
	_, err := wstest.Dial(url, header)
	var he *wstest.HandshakeError
	require.True(t, errors.As(err, &he), "the upgrade was not refused: %v", err)
	assert.Equal(t, status, he.Status, "body %s", he.Body)
	assert.Zero(t, h.srv.Pending(), "a refused upgrade holds no pending slot")
	return he.Body
}

// TestTickets: a token is exchanged for a ticket; the ticket opens an
// authenticated session (auth_ok is the first frame) once; a reused,
// unknown, expired or cross-origin ticket gets 401 before the upgrade.
func TestTickets(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) { o.OriginPatterns = []string{"127.0.0.1:*"} }})
	url := ticketEnv(t, h)
	tok := h.idp.Token("tia", time.Hour)

	status, body := exchange(t, url, tok, nil)
	require.Equal(t, http.StatusOK, status, "%v", body)
	ticket := body["ticket"].(string)
	assert.Len(t, ticket, 43, "256 random bits")
	assert.Equal(t, float64(h.clock.Now().Add(30*time.Second).Unix()), body["expires"])

	c, err := wstest.Dial(h.url+"?ticket="+ticket, nil)
	require.NoError(t, err)
	defer c.Close()
	ok := readType(t, c, "auth_ok")
	assert.Equal(t, "tia", ok["sub"], "auth_ok is the first frame")
	require.NoError(t, c.WriteText(`{"type":"message","data":"via ticket"}`))
	assert.Equal(t, `"via ticket"`, h.nextMessageT(t).data)
	// Reauthentication goes on in-band.
	h.clock.Advance(2 * time.Second)
	require.NoError(t, c.Auth(h.idp.Token("tia", 2*time.Hour)))
	readType(t, c, "auth_ok")

	body2 := upgradeRefused(t, h, h.url+"?ticket="+ticket, nil, http.StatusUnauthorized)
	assert.Contains(t, body2, "invalid ticket", "reused")
	assert.NotContains(t, body2, ticket)
	upgradeRefused(t, h, h.url+"?ticket=nope", nil, http.StatusUnauthorized)

	_, body = exchange(t, url, tok, nil)
	h.clock.Advance(30 * time.Second)
	upgradeRefused(t, h, h.url+"?ticket="+body["ticket"].(string), nil, http.StatusUnauthorized)

	// Bound to the Origin of the exchange (both origins are allowed).
	origin := http.Header{"Origin": {"http://127.0.0.1:1"}}
	_, body = exchange(t, url, tok, origin)
	upgradeRefused(t, h, h.url+"?ticket="+body["ticket"].(string), http.Header{"Origin": {"http://127.0.0.1:2"}}, http.StatusUnauthorized)
	_, body = exchange(t, url, tok, origin)
	c2, err := wstest.Dial(h.url+"?ticket="+body["ticket"].(string), origin)
	require.NoError(t, err)
	defer c2.Close()
	readType(t, c2, "auth_ok")
}

// TestTicketExchangeRefusals: what the exchange endpoint answers a request
// it will not serve.
func TestTicketExchangeRefusals(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	url := ticketEnv(t, h)
	status, body := exchange(t, url, "", nil)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, "missing bearer token", body["error"])
	status, body = exchange(t, url, h.idp.Token("x", -time.Minute), nil)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, "token expired", body["error"])
	status, _ = exchange(t, url, h.idp.Token("x", time.Hour), http.Header{"Origin": {"http://evil.example"}})
	assert.Equal(t, http.StatusForbidden, status)
	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, http.MethodPost, resp.Header.Get("Allow"))
	assert.NotContains(t, h.logs.String(), h.idp.Token("x", time.Hour)[:40])
}

// TestTicketOnceAcrossTheCluster: a ticket issued by one node works once on
// any node, and two upgrades racing with one ticket: exactly one wins.
func TestTicketOnceAcrossTheCluster(t *testing.T) {
	t.Parallel()
	nodes, _ := newCluster(t, 3, memory(broker.MemoryOptions{}))
	url := ticketEnv(t, nodes[0])
	_, body := exchange(t, url, nodes[0].idp.Token("ted", time.Hour), nil)
	ticket := body["ticket"].(string)
	var wg sync.WaitGroup
	results := make(chan error, 2)
	for _, n := range nodes[1:] {
		wg.Go(func() {
			c, err := wstest.Dial(n.url+"?ticket="+ticket, nil)
			if err == nil {
				defer c.Close()
				_, err = c.ReadJSON()
			}
			results <- err
		})
	}
	wg.Wait()
	close(results)
	won := 0
	for err := range results {
		var he *wstest.HandshakeError
		if err == nil {
			won++
		} else {
			require.True(t, errors.As(err, &he), "%v", err)
			assert.Equal(t, http.StatusUnauthorized, he.Status)
		}
	}
	assert.Equal(t, 1, won)
}

// TestTicketBindIP: with TicketBindIP a ticket works only from the address
// that asked for it.
func TestTicketBindIP(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.TicketBindIP = true
		o.ClientIP = func(r *http.Request) string { return r.Header.Get("X-Test-IP") }
	}})
	url := ticketEnv(t, h)
	from := func(ip string) http.Header { return http.Header{"X-Test-Ip": {ip}} }
	_, body := exchange(t, url, h.idp.Token("ip", time.Hour), from("10.0.0.1"))
	upgradeRefused(t, h, h.url+"?ticket="+body["ticket"].(string), from("10.0.0.2"), http.StatusUnauthorized)
	_, body = exchange(t, url, h.idp.Token("ip", time.Hour), from("10.0.0.1"))
	c, err := wstest.Dial(h.url+"?ticket="+body["ticket"].(string), from("10.0.0.1"))
	require.NoError(t, err)
	defer c.Close()
	readType(t, c, "auth_ok")
}

// TestTokenInHeader: with TokenInHeader, "Authorization: Bearer" on the
// upgrade authenticates; a bad token gets 401 before the upgrade. Without
// it the header is ignored.
func TestTokenInHeader(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) { o.TokenInHeader = true }})
	c, err := wstest.Dial(h.url, http.Header{"Authorization": {"Bearer " + h.idp.Token("hank", time.Hour)}})
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, "hank", readType(t, c, "auth_ok")["sub"])
	body := upgradeRefused(t, h, h.url, http.Header{"Authorization": {"Bearer " + h.idp.Token("hank", -time.Minute)}}, http.StatusUnauthorized)
	assert.Contains(t, body, "token expired")
	upgradeRefused(t, h, h.url, http.Header{"Authorization": {"Basic aGk6aGk="}}, http.StatusUnauthorized)

	off := newHostileEnv(t, hostileOptions{})
	c2, err := wstest.Dial(off.url, http.Header{"Authorization": {"Bearer " + off.idp.Token("hank", time.Hour)}})
	require.NoError(t, err, "ignored when off")
	defer c2.Close()
	texts, err := c2.Sync()
	require.NoError(t, err)
	assert.Empty(t, texts, "no auth_ok: the session waits for an auth frame")
}

// TestTokenInSubprotocol: with TokenInSubprotocol, the token offered beside
// wsauth.v1 authenticates; the answer names wsauth.v1 only, never the
// token; a token without wsauth.v1 is refused; a bad one gets 401.
func TestTokenInSubprotocol(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) { o.TokenInSubprotocol = true }})
	tok := h.idp.Token("sue", time.Hour)
	c, err := wstest.Dial(h.url, http.Header{"Sec-WebSocket-Protocol": {protocol.Subprotocol + ", " + tok}})
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, protocol.Subprotocol, c.Subprotocol, "exactly one protocol, ours")
	assert.Equal(t, "sue", readType(t, c, "auth_ok")["sub"])

	upgradeRefused(t, h, h.url, http.Header{"Sec-WebSocket-Protocol": {tok}}, http.StatusBadRequest)
	upgradeRefused(t, h, h.url, http.Header{"Sec-WebSocket-Protocol": {protocol.Subprotocol + ", " + h.idp.Token("sue", -time.Minute)}}, http.StatusUnauthorized)
	// Offering only wsauth.v1 is the in-band way.
	c2, err := wstest.Dial(h.url, http.Header{"Sec-WebSocket-Protocol": {protocol.Subprotocol}})
	require.NoError(t, err)
	defer c2.Close()
	require.NoError(t, c2.Auth(tok))
	readType(t, c2, "auth_ok")
	assert.False(t, strings.Contains(h.logs.String(), tok), "the token was logged")
}

// TestTokenPerMessage: with TokenPerMessage every message carries its own
// token, verified, and the handler sees whose it is; a message without one,
// with a refused one or with another user's is answered with an error frame
// and never reaches the handler. Without the mode, Message.Identity is the
// session's.
func TestTokenPerMessage(t *testing.T) {
	t.Parallel()
	got := make(chan wsauth.Message, 10)
	handler := func(_ context.Context, _ *wsauth.Session, m wsauth.Message) error {
		m.Data = append(json.RawMessage(nil), m.Data...)
		got <- m
		return nil
	}
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.TokenPerMessage = true
		o.OnMessage = handler
	}})
	now := h.clock.Now()
	c, _ := h.loginT(t, h.idp.Token("pam", time.Hour))
	send := func(id, token string) {
		require.NoError(t, c.WriteText(string(protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeMessage, ID: id, Token: token, Data: json.RawMessage(`1`)}))))
	}
	refused := func(id string, code float64, reason string) {
		t.Helper()
		assert.Equal(t, map[string]any{"type": "error", "code": code, "message": reason, "ref": id}, readType(t, c, "error"))
	}
	send("m1", tokenWithID(h.idp, now, "pam", "job-1", time.Hour))
	m := <-got
	assert.Equal(t, "pam", m.Identity.Subject)
	assert.Equal(t, "job-1", m.Identity.Claims["jti"])

	send("m2", "")
	refused("m2", 4401, "token required")
	send("m3", h.idp.Token("pam", -time.Minute))
	refused("m3", 4401, "token expired")
	send("m4", h.idp.Token("someone-else", time.Hour))
	refused("m4", 4403, "subject changed")
	_, err := h.srv.RevokeToken(context.Background(), h.p("pam"), "job-2")
	require.NoError(t, err)
	send("m5", tokenWithID(h.idp, now, "pam", "job-2", time.Hour))
	refused("m5", 4403, "token revoked")
	assert.Empty(t, got, "a refused message reached the handler")

	off := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) { o.OnMessage = handler }})
	c2, _ := off.loginT(t, off.idp.Token("pat", time.Hour))
	require.NoError(t, c2.WriteText(`{"type":"message","token":"ignored","data":2}`))
	assert.Equal(t, "pat", (<-got).Identity.Subject, "the session's identity")
}

// TestTokenPerMessageDeadline: a message's token is verified with a
// context that ends AuthTimeout after the message arrived, or when the
// session ends, and is canceled once Verify returned; a verification that
// outlives it refuses the message (4401 "auth timeout", not logged) and
// leaves the session open. A refused token's log line names the session,
// the stage, the code and the reason.
func TestTokenPerMessageDeadline(t *testing.T) {
	t.Parallel()
	const authTimeout = 300 * time.Millisecond
	ctxs := make(chan context.Context, 1)
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.TokenPerMessage = true
		o.AuthTimeout = authTimeout
		v := o.Verifier
		o.Verifier = verifierFunc(func(ctx context.Context, token string) (wsauth.Identity, error) {
			if token != "slow" {
				return v.Verify(ctx, token)
			}
			ctxs <- ctx
			<-ctx.Done()
			return wsauth.Identity{}, ctx.Err()
		})
	}})
	c, ok := h.loginT(t, h.idp.Token("pam", time.Hour))
	send := func(id, token string) {
		require.NoError(t, c.WriteText(string(protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeMessage, ID: id, Token: token, Data: json.RawMessage(`1`)}))))
	}

	start := time.Now()
	send("m1", "slow")
	ctx := <-ctxs
	deadline, hasDeadline := ctx.Deadline()
	require.True(t, hasDeadline)
	assert.WithinRange(t, deadline, start, time.Now().Add(authTimeout))
	assert.NoError(t, ctx.Err(), "ended before its deadline")
	assert.Equal(t, map[string]any{"type": "error", "code": float64(4401), "message": "auth timeout", "ref": "m1"}, readType(t, c, "error"))
	assert.GreaterOrEqual(t, time.Since(start), authTimeout-10*time.Millisecond)
	assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)

	send("m2", h.idp.Token("pam", time.Hour))
	assert.Equal(t, "m2", h.nextMessage().id, "the session is still open")
	assert.NotContains(t, h.logs.String(), "auth timeout", "a timeout is logged as a refusal")

	send("m3", h.idp.Token("pam", -time.Minute))
	readType(t, c, "error")
	assert.Contains(t, h.logs.String(), `msg="wsauth: token refused" session=`+ok["session"].(string)+` stage=message code=4401 reason="token expired"`)

	// The session's end ends a verification in flight.
	send("m4", "slow")
	ctx = <-ctxs
	sess, found := h.srv.Session(ok["session"].(string))
	require.True(t, found)
	sess.Close(protocol.CloseNormal, "bye")
	select {
	case <-ctx.Done():
		assert.ErrorIs(t, ctx.Err(), context.Canceled)
	case <-time.After(authTimeout / 2):
		t.Fatal("the session ended, its message's verification did not")
	}
}
