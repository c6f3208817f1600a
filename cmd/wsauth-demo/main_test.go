package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	jsclient "github.com/wsauth/wsauth/clients/js"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/wsauthtest"
)

func TestMain(m *testing.M) {
	if os.Getenv(runAsCommand) == "1" {
		// The test holds stdin open: if it dies, the command does too,
		// instead of serving on forever.
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			os.Exit(3)
		}()
		main() // exits by itself on an error
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-token-ttl", "15m")
	cases := []struct {
		name   string
		body   string
		status int
	}{
		{"no sub", `{}`, http.StatusBadRequest},
		{"empty sub", `{"sub":""}`, http.StatusBadRequest},
		{"sub too long", `{"sub":"` + strings.Repeat("a", 129) + `"}`, http.StatusBadRequest},
		{"sub of 128 characters", `{"sub":"` + strings.Repeat("é", 128) + `"}`, http.StatusOK},
		{"sub not a string", `{"sub":1}`, http.StatusBadRequest},
		{"zero ttl", `{"sub":"a","ttl":"0s"}`, http.StatusBadRequest},
		{"negative ttl", `{"sub":"a","ttl":"-5s"}`, http.StatusBadRequest},
		{"ttl over 24h", `{"sub":"a","ttl":"24h0m1s"}`, http.StatusBadRequest},
		{"ttl of 24h", `{"sub":"a","ttl":"24h"}`, http.StatusOK},
		{"ttl not a duration", `{"sub":"a","ttl":"soon"}`, http.StatusBadRequest},
		{"ttl as a number", `{"sub":"a","ttl":5}`, http.StatusBadRequest},
		{"unknown field", `{"sub":"a","admin":true}`, http.StatusBadRequest},
		{"not json", `sub=a`, http.StatusBadRequest},
		{"two objects", `{"sub":"a"}{"sub":"b"}`, http.StatusBadRequest},
		{"empty body", ``, http.StatusBadRequest},
		{"huge body", `{"sub":"a","ttl":"` + strings.Repeat(" ", 8<<10) + `"}`, http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, m := d.post(t, tc.body)
			require.Equal(t, tc.status, status, "answer %v", m)
			if status == http.StatusBadRequest {
				assert.NotEmpty(t, m["error"])
				assert.Len(t, m, 1)
				return
			}
			assert.NotEmpty(t, m["token"])
			assert.NotZero(t, m["exp"])
		})
	}

	t.Run("default and explicit ttl", func(t *testing.T) {
		t.Parallel()
		for body, ttl := range map[string]time.Duration{`{"sub":"a"}`: 15 * time.Minute, `{"sub":"a","ttl":"5s"}`: 5 * time.Second} {
			before := time.Now()
			status, m := d.post(t, body)
			require.Equal(t, http.StatusOK, status)
			exp := int64(m["exp"].(float64))
			assert.GreaterOrEqual(t, exp, before.Add(ttl).Unix(), body)
			assert.LessOrEqual(t, exp, time.Now().Add(ttl).Unix(), body)
			// The token is one the server accepts, with that exp.
			_, ok := d.login(t, m["token"].(string))
			assert.EqualValues(t, exp, ok["exp"])
		}
	})

	// What docs/protocol.md's appendix says of the token.
	t.Run("token claims", func(t *testing.T) {
		t.Parallel()
		status, m := d.post(t, `{"sub":"alice","ttl":"30s"}`)
		require.Equal(t, http.StatusOK, status)
		parts := strings.Split(m["token"].(string), ".")
		require.Len(t, parts, 3, "a compact JWS")
		var header, claims map[string]any
		for i, v := range []*map[string]any{&header, &claims} {
			b, err := base64.RawURLEncoding.DecodeString(parts[i])
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, v))
		}
		assert.Equal(t, "RS256", header["alg"])
		assert.NotEmpty(t, header["kid"])
		assert.Equal(t, d.base, claims["iss"])
		assert.Equal(t, "wsauth-demo", claims["aud"])
		assert.Equal(t, "alice", claims["sub"])
		assert.Equal(t, m["exp"], claims["exp"])
		assert.Equal(t, claims["iat"], claims["nbf"])
		assert.InDelta(t, 30, claims["exp"].(float64)-claims["iat"].(float64), 1)
	})

	t.Run("GET", func(t *testing.T) {
		t.Parallel()
		resp, err := httpClient.Get(d.base + "/token")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		assert.Equal(t, http.MethodPost, resp.Header.Get("Allow"))
		assert.JSONEq(t, `{"error":"use POST"}`, string(body))
	})
}

func TestStaticFiles(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	for _, tc := range []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `id="state"`},
		{"/", "text/html; charset=utf-8", `href="/status"`},
		{"/chat.js", "text/javascript; charset=utf-8", `from '/wsauth.js'`},
		{"/timeline.js", "text/javascript; charset=utf-8", "export class TokenTimeline"},
		{"/status", "text/html; charset=utf-8", `src="/status.js"`},
		{"/status.js", "text/javascript; charset=utf-8", "'/status.json'"},
		{"/status.css", "text/css; charset=utf-8", "#cards"},
		{"/wsauth.js", "text/javascript; charset=utf-8", string(jsclient.Source)},
		{"/.well-known/jwks.json", "application/json", `"keys"`},
	} {
		resp, err := httpClient.Get(d.base + tc.path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode, tc.path)
		assert.Equal(t, tc.contentType, resp.Header.Get("Content-Type"), tc.path)
		assert.Contains(t, string(body), tc.contains, tc.path)
		if tc.path != "/.well-known/jwks.json" {
			assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'", tc.path)
		}
	}
}

func TestBroadcastBetweenClients(t *testing.T) {
	t.Parallel()
	// -tick 0: ticks are on by default, and a tick could come before the
	// broadcast this test reads.
	d := startDemo(t, "-tick", "0")
	alice, ok := d.login(t, d.token(t, "alice", time.Minute))
	assert.Equal(t, "alice", ok["sub"])
	bob, _ := d.login(t, d.token(t, "bob", time.Minute))

	require.NoError(t, alice.WriteText(`{"type":"message","id":"m1","data":{"text":"hi bob"}}`))
	want := map[string]any{"from": "alice", "data": map[string]any{"text": "hi bob"}}
	assert.Equal(t, want, readType(t, alice, "message")["data"])
	assert.Equal(t, want, readType(t, bob, "message")["data"])

	require.NoError(t, bob.WriteText(`{"type":"message","data":"hi alice"}`))
	want = map[string]any{"from": "bob", "data": "hi alice"}
	assert.Equal(t, want, readType(t, alice, "message")["data"])
	assert.Equal(t, want, readType(t, bob, "message")["data"])
}

// TestTicksAreNumberedPerUser: ticks go to the user's stream, numbered by
// the node from 1 on, so every session of a user gets the same ones.
func TestTicksAreNumberedPerUser(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-tick", "20ms")
	alice, ok := d.login(t, d.token(t, "alice", time.Minute))
	node, _, found := strings.Cut(ok["session"].(string), ".")
	require.True(t, found, "session ids start with the node: %v", ok["session"])
	for want := 1; want <= 3; want++ {
		m := readType(t, alice, "message")
		assert.Equal(t, want, tickOf(m))
		assert.Equal(t, node, m["data"].(map[string]any)["node"])
		assert.Equal(t, float64(want), m["seq"], "the user's stream")
	}
	bob, _ := d.login(t, d.token(t, "bob", time.Minute))
	for want := 1; want <= 3; want++ {
		assert.Equal(t, want, tickOf(readType(t, bob, "message")))
	}
	// A second session of alice gets alice's ticks: the same numbers as
	// her first.
	alice2, _ := d.login(t, d.token(t, "alice", time.Minute))
	n2 := tickOf(readType(t, alice2, "message"))
	assert.Greater(t, n2, 3)
	for n := tickOf(readType(t, alice, "message")); n < n2; n = tickOf(readType(t, alice, "message")) {
		require.Positive(t, n)
	}
	assert.Equal(t, n2+1, tickOf(readType(t, alice2, "message")))
	assert.Equal(t, n2+1, tickOf(readType(t, alice, "message")))
}

// TestReauthCycles runs two reauthentications on one socket: one answered at
// once, one answered only after the token expired, when the server buffers
// ticks and refuses messages with error 4401. The tick numbers must run on
// without a gap or a duplicate throughout.
func TestReauthCycles(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-tick", "50ms", "-reauth-lead", "1s", "-reauth-grace", "3s")
	c, ok := d.login(t, d.token(t, "carol", 2*time.Second))
	session := ok["session"]
	next := 1
	expectTick := func(m map[string]any) {
		t.Helper()
		require.Equal(t, next, tickOf(m), "frame %v", m)
		next++
	}
	// untilReauth reads ticks until reauth_required and returns it.
	untilReauth := func() map[string]any {
		t.Helper()
		for {
			m, err := c.ReadJSON()
			require.NoError(t, err)
			if m["type"] == "reauth_required" {
				return m
			}
			expectTick(m)
		}
	}

	// Cycle 1: answer reauth_required at once.
	rr := untilReauth()
	exp := int64(rr["exp"].(float64))
	assert.EqualValues(t, exp+3, rr["deadline"])
	assert.EqualValues(t, exp, ok["exp"])
	require.NoError(t, c.Auth(d.token(t, "carol", 2*time.Second)))
	var ok2 map[string]any
	for ok2 == nil {
		m, err := c.ReadJSON()
		require.NoError(t, err)
		if m["type"] == "auth_ok" {
			ok2 = m
		} else {
			expectTick(m)
		}
	}
	assert.Equal(t, session, ok2["session"])
	assert.Greater(t, ok2["exp"], ok["exp"])

	// Cycle 2: let the token expire first.
	rr = untilReauth()
	exp = int64(rr["exp"].(float64))
	time.Sleep(time.Until(time.Unix(exp, 0).Add(300 * time.Millisecond)))
	require.NoError(t, c.WriteText(`{"type":"message","id":"late-1","data":"sent while expired"}`))
	for {
		m, err := c.ReadJSON()
		require.NoError(t, err)
		if m["type"] == "error" {
			assert.Equal(t, map[string]any{"type": "error", "code": float64(4401), "message": "reauth required", "ref": "late-1"}, m)
			break
		}
		expectTick(m) // sent before exp
	}
	// Expired: ticks are held by the server now.
	c.Timeout = 300 * time.Millisecond
	m, err := c.ReadJSON()
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "want no frame while expired, got %v, %v", m, err)
	c.Timeout = 5 * time.Second
	require.NoError(t, c.Auth(d.token(t, "carol", 2*time.Second)))
	ok3 := readType(t, c, "auth_ok") // before any buffered tick
	assert.Equal(t, session, ok3["session"])
	buffered := next
	for next < buffered+10 {
		expectTick(readType(t, c, "message"))
	}
	// The refused message, sent again, goes through.
	require.NoError(t, c.WriteText(`{"type":"message","id":"late-1","data":"sent while expired"}`))
	for {
		m := readType(t, c, "message")
		if tickOf(m) == 0 {
			assert.Equal(t, map[string]any{"from": "carol", "data": "sent while expired"}, m["data"])
			break
		}
		expectTick(m)
	}
}

func TestExternalIdP(t *testing.T) {
	t.Parallel()
	idp := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Audience: "chat"})
	d := startDemo(t, "-jwks", idp.JWKSURL(), "-issuer", idp.Issuer(), "-audience", "chat")
	resp, err := httpClient.Post(d.base+"/token", "application/json", strings.NewReader(`{"sub":"zoe"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, err = httpClient.Get(d.base + wsauthtest.JWKSPath)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	_, ok := d.login(t, idp.Token("zoe", time.Hour))
	assert.Equal(t, "zoe", ok["sub"])
}

func TestShutdownClosesSessionsWith1001(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-tick", "10ms")
	c, _ := d.login(t, d.token(t, "dan", time.Minute))
	pending, err := wstest.Dial(d.ws, nil)
	require.NoError(t, err)
	defer pending.Close()
	_, err = pending.Sync()
	require.NoError(t, err)

	require.NoError(t, d.stop())
	for _, conn := range []*wstest.Conn{c, pending} {
		cl, _, err := conn.ReadClose()
		require.NoError(t, err)
		assert.Equal(t, 1001, cl.Code)
		assert.Equal(t, "server shutting down", cl.Reason)
	}
	_, err = httpClient.Get(d.base + "/")
	require.Error(t, err, "still serving after run returned")
}

// TestDefaultsShowTheWholeCycle holds the demo to what README promises a
// first-time user who runs it without flags: ticks arrive, and the page's
// preselected token TTL brings a reauthentication within the first minute
// (the server asks at exp - min(30s, TTL/2)).
func TestDefaultsShowTheWholeCycle(t *testing.T) {
	t.Parallel()
	cfg, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, time.Second, cfg.tick, "default -tick")
	cfg, err = parseFlags([]string{"-tick", "0"}, io.Discard)
	require.NoError(t, err)
	assert.Zero(t, cfg.tick, "-tick 0 turns ticks off")

	var help bytes.Buffer
	_, err = parseFlags([]string{"-h"}, &help)
	require.ErrorIs(t, err, flag.ErrHelp)
	assert.Contains(t, help.String(), "e.g. 1s", "-tick help gives an example")
	assert.Contains(t, help.String(), "(0: off) (default 1s)")

	page, err := static.ReadFile("static/index.html")
	require.NoError(t, err)
	m := regexp.MustCompile(`<option value="([^"]+)" selected>`).FindAllSubmatch(page, -1)
	require.Len(t, m, 1, "one preselected token TTL")
	ttl, err := time.ParseDuration(string(m[0][1]))
	require.NoError(t, err)
	assert.LessOrEqual(t, ttl/2, 30*time.Second, "the first reauth_required comes within 30s")
	assert.GreaterOrEqual(t, ttl, 10*time.Second, "long enough to watch a token live")

	// No flag: ticks arrive.
	d := startDemo(t)
	c, _ := d.login(t, d.token(t, "erin", time.Minute))
	c.Timeout = 3 * time.Second
	assert.Equal(t, 1, tickOf(readType(t, c, "message")))
}

// TestTokenPerMessage: -token-per-message sets wsauth's
// Options.TokenPerMessage, so that the JS client's tokenPerMessage can be
// tested against the demo: a message without a token is refused with
// 4401 and not broadcast, one with the sender's token is. Without the
// flag (the default, the page's mode) no token is needed.
func TestTokenPerMessage(t *testing.T) {
	t.Parallel()
	cfg, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.False(t, cfg.opts.TokenPerMessage, "off by default")
	var help bytes.Buffer
	_, err = parseFlags([]string{"-h"}, &help)
	require.ErrorIs(t, err, flag.ErrHelp)
	assert.Contains(t, help.String(), "-token-per-message")

	d := startDemo(t, "-tick", "0", "-token-per-message")
	tok := d.token(t, "alice", time.Minute)
	alice, _ := d.login(t, tok)
	alice.Timeout = 3 * time.Second
	require.NoError(t, alice.WriteText(`{"type":"message","id":"m1","data":"bare"}`))
	refused := readType(t, alice, "error")
	assert.EqualValues(t, 4401, refused["code"])
	assert.Equal(t, "m1", refused["ref"])
	require.NoError(t, alice.WriteText(`{"type":"message","id":"m2","token":"`+tok+`","data":"signed"}`))
	m := readType(t, alice, "message")
	assert.Equal(t, map[string]any{"from": "alice", "data": "signed"}, m["data"], "only the signed message is broadcast")
}

func TestCommandLineErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want error
	}{
		{[]string{"-expiry", "never"}, errUsage},
		{[]string{"-dev-key", "key.pem", "-jwks", "https://id.example/jwks.json", "-issuer", "https://id.example", "-audience", "a"}, errUsage},
		{[]string{"-nats", "nats://127.0.0.1:4222", "-keep-for", "0"}, errUsage},
		{[]string{"-keep-for", "-1s"}, errUsage},
		{[]string{"-jwks", "https://id.example/jwks.json"}, errUsage},
		{[]string{"-jwks", "https://id.example/jwks.json", "-issuer", "https://id.example"}, errUsage},
		{[]string{"-token-ttl", "0s"}, errUsage},
		{[]string{"-token-ttl", "25h"}, errUsage},
		{[]string{"-tick", "-1s"}, errUsage},
		{[]string{"-log-level", "loud"}, errUsage},
		{[]string{"-buffer-messages", "many"}, errUsage},
		{[]string{"extra"}, errUsage},
		{[]string{"-h"}, flag.ErrHelp},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), tc.args, &stdout, &stderr)
		assert.ErrorIs(t, err, tc.want, "%q", tc.args)
		assert.Empty(t, stdout.String(), "%q", tc.args)
		assert.NotEmpty(t, stderr.String(), "%q", tc.args)
	}
	// Values only wsauth.New can judge fail after the listener was bound;
	// run must still clean up after itself (goleak checks).
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-reauth-lead", "-1s", "-log-level", "error"}, &stdout, io.Discard)
	require.ErrorContains(t, err, "ReauthLead")
	assert.Empty(t, stdout.String())
	err = run(context.Background(), []string{"-addr", "127.0.0.1:-1"}, &stdout, io.Discard)
	require.Error(t, err)
}

// TestHTTPLimits checks the demo's http.Server limits (red team items 11
// and 12): an idle keep-alive connection is closed after -idle-timeout
// (it used to be held forever, outside every wsauth cap), and a request
// with more than 16 KiB of headers is refused with 431 (the default let
// each socket hold 1 MiB).
func TestHTTPLimits(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-idle-timeout", "200ms")
	host := strings.TrimPrefix(d.base, "http://")

	t.Run("idle keep-alive", func(t *testing.T) {
		t.Parallel()
		nc, err := net.DialTimeout("tcp", host, 5*time.Second)
		require.NoError(t, err)
		defer nc.Close()
		_, err = io.WriteString(nc, "GET /wsauth.js HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
		require.NoError(t, err)
		require.NoError(t, nc.SetReadDeadline(time.Now().Add(5*time.Second)))
		start := time.Now()
		_, err = io.Copy(io.Discard, nc) // the response, then EOF when the server closes
		require.NoError(t, err)
		assert.Less(t, time.Since(start), 3*time.Second)
	})
	t.Run("huge headers", func(t *testing.T) {
		t.Parallel()
		nc, err := net.DialTimeout("tcp", host, 5*time.Second)
		require.NoError(t, err)
		defer nc.Close()
		req := "GET /ws HTTP/1.1\r\nHost: " + host + "\r\nX-Pad: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"
		_, _ = io.WriteString(nc, req) // the server may answer before reading it all
		require.NoError(t, nc.SetReadDeadline(time.Now().Add(5*time.Second)))
		b, _ := io.ReadAll(nc)
		assert.True(t, strings.HasPrefix(string(b), "HTTP/1.1 431"), "answer %.60q", b)
	})
}

// TestDirectMessages: a message whose data has a string "to" goes to that
// user's sessions (and the sender's), not to everyone.
func TestDirectMessages(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-tick", "0")
	alice, _ := d.login(t, d.token(t, "alice", time.Minute))
	bob, _ := d.login(t, d.token(t, "bob", time.Minute))
	carol, _ := d.login(t, d.token(t, "carol", time.Minute))

	require.NoError(t, alice.WriteText(`{"type":"message","data":{"to":"bob","text":"psst"}}`))
	want := map[string]any{"from": "alice", "data": map[string]any{"to": "bob", "text": "psst"}}
	for _, c := range []*wstest.Conn{bob, alice} {
		m := readType(t, c, "message")
		assert.Equal(t, want, m["data"])
		assert.Contains(t, m, "seq", "a direct message is part of the user's stream")
	}
	texts, err := carol.Sync()
	require.NoError(t, err)
	assert.Empty(t, texts, "carol got a direct message to bob")

	require.NoError(t, alice.WriteText(`{"type":"message","id":"e","data":{"to":""}}`))
	assert.Equal(t, map[string]any{"type": "error", "code": float64(4004), "message": `empty "to"`, "ref": "e"}, readType(t, alice, "error"))
}

// TestRevokeSelf: {"revoke":true} closes every session of the sender
// with 4403, and no one else's.
func TestRevokeSelf(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-tick", "0")
	alice, _ := d.login(t, d.token(t, "alice", time.Minute))
	alice2, _ := d.login(t, d.token(t, "alice", time.Minute))
	bob, _ := d.login(t, d.token(t, "bob", time.Minute))
	require.NoError(t, alice.WriteText(`{"type":"message","data":{"revoke":true}}`))
	for _, c := range []*wstest.Conn{alice, alice2} {
		cl, _, err := c.ReadClose()
		require.NoError(t, err)
		assert.Equal(t, wstest.Close{Code: 4403, Reason: "session revoked"}, cl)
	}
	texts, err := bob.Sync()
	require.NoError(t, err)
	assert.Empty(t, texts, "bob is not signed out")
}

// TestChatLimits: a session that sends too much, or too fast, gets error
// frames and stays connected.
func TestChatLimits(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-tick", "0")
	c, _ := d.login(t, d.token(t, "dan", time.Minute))
	big := `"` + strings.Repeat("x", 5000) + `"`
	require.NoError(t, c.WriteText(`{"type":"message","id":"big","data":`+big+`}`))
	assert.Equal(t, float64(4013), readType(t, c, "error")["code"])

	var frames []byte
	for i := range 30 {
		frames = append(frames, wstest.Frame(true, wstest.OpText, []byte(fmt.Sprintf(`{"type":"message","id":"%d","data":%d}`, i, i)))...)
	}
	_, err := c.Write(frames)
	require.NoError(t, err)
	messages, refused := 0, 0
	for messages+refused < 30 {
		m, err := c.ReadJSON()
		require.NoError(t, err)
		switch m["type"] {
		case "message":
			messages++
		case "error":
			assert.Equal(t, float64(4029), m["code"])
			refused++
		}
	}
	assert.GreaterOrEqual(t, messages, 20, "the burst is allowed")
	assert.Positive(t, refused, "past the burst, messages are refused")
}
