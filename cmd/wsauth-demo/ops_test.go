package main

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/natstest"
	"github.com/wsauth/wsauth/internal/wstest"
)

// get GETs path of the demo and returns the status, the Content-Type and
// the body.
func (d *demo) get(t *testing.T, path string) (int, string, string) {
	t.Helper()
	resp, err := httpClient.Get(d.base + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

// status reads /status.json.
func (d *demo) status(t *testing.T) statusAnswer {
	t.Helper()
	code, ctype, body := d.get(t, "/status.json")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "application/json", ctype)
	var s statusAnswer
	require.NoError(t, json.Unmarshal([]byte(body), &s), body)
	return s
}

// awaitStatus polls /status.json until ok holds, and returns that answer:
// a session's close is counted just after its close frame goes out.
func (d *demo) awaitStatus(t *testing.T, what string, ok func(statusAnswer) bool) statusAnswer {
	t.Helper()
	var s statusAnswer
	require.Eventually(t, func() bool {
		s = d.status(t)
		return ok(s)
	}, 5*time.Second, 10*time.Millisecond, "%s; last status: %+v", what, s)
	return s
}

// metric returns the value of the sample of /metrics's text exposition
// whose name and labels are series (e.g. `wsauth_sessions{state="active"}`),
// and whether there is one.
func metric(scrape, series string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(scrape)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// TestMetricsEndpoint: /metrics serves wsauth's metrics (and the Go
// runtime's and the process's) from the demo's own registry, and they
// follow a real session; the scrape names no user, token, session or
// client address.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-tick", "20ms")
	code, ctype, scrape := d.get(t, "/metrics")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, ctype, "text/plain")
	for _, series := range []string{`wsauth_sessions{state="active"}`, `wsauth_sessions_opened_total`, `wsauth_messages_sent_total`} {
		v, ok := metric(scrape, series)
		assert.True(t, ok && v == 0, "%s: %v, %v", series, v, ok)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		assert.Contains(t, scrape, "\n"+name+" ", "the Go runtime's and the process's metrics")
	}

	const sub = "metrics-subject-q7z"
	tok := d.token(t, sub, time.Minute)
	c, ok := d.login(t, tok)
	for range 3 {
		require.Positive(t, tickOf(readType(t, c, "message")))
	}
	_, _, scrape = d.get(t, "/metrics")
	for series, want := range map[string]float64{
		`wsauth_sessions{state="active"}`:                                            1,
		`wsauth_sessions{state="pending"}`:                                           0,
		`wsauth_sessions_opened_total`:                                               1,
		`wsauth_token_verifications_total{reason="",result="accepted",stage="auth"}`: 1,
	} {
		v, found := metric(scrape, series)
		assert.True(t, found && v == want, "%s: %v (found %v), want %v", series, v, found, want)
	}
	// A write is counted once it returns: the client may read a tick
	// before the server counts it.
	require.Eventually(t, func() bool {
		_, _, s := d.get(t, "/metrics")
		sent, _ := metric(s, "wsauth_messages_sent_total")
		return sent >= 3
	}, 5*time.Second, 10*time.Millisecond, "the ticks read, counted")
	for what, secret := range map[string]string{
		"token": tok, "subject": sub, "session id": ok["session"].(string), "client address": c.LocalAddr().String(),
	} {
		assert.NotContains(t, scrape, secret, "the scrape has the %s", what)
	}

	require.NoError(t, c.WriteFrame(true, wstest.OpClose, []byte{0x03, 0xe8})) // 1000
	require.Eventually(t, func() bool {
		_, _, scrape = d.get(t, "/metrics")
		v, _ := metric(scrape, `wsauth_sessions_closed_total{code="1000"}`)
		return v == 1
	}, 5*time.Second, 10*time.Millisecond, "the close counted")
	v, _ := metric(scrape, `wsauth_sessions{state="active"}`)
	assert.Zero(t, v)
}

// TestStatusJSON: /status.json says, in numbers a page can show, what
// real sessions did: a login, a reauthentication, a bad token, refused
// upgrades, with the verifier's keys; and names no user, token, session or
// client address.
func TestStatusJSON(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-tick", "0", "-reauth-lead", "1s")
	s := d.status(t)
	assert.Equal(t, map[string]int64{"pending": 0, "active": 0, "expired": 0}, s.Sessions)
	assert.Equal(t, "memory", s.Broker)
	assert.NotEmpty(t, s.Node)
	assert.Zero(t, s.ReauthLag.Count)
	assert.Nil(t, s.ReauthLag.Mean)
	require.Len(t, s.Verifier, 1)
	assert.Equal(t, d.base, s.Verifier[0].Issuer)
	assert.Equal(t, 1, s.Verifier[0].Keys)
	assert.NotEmpty(t, s.Verifier[0].Fetched)
	assert.Empty(t, s.Verifier[0].Error)

	// A login whose 2 s token the server asks to refresh 1 s before exp.
	const sub = "status-subject-k3v"
	tok := d.token(t, sub, 2*time.Second)
	c, ok := d.login(t, tok)
	s = d.awaitStatus(t, "one active session", func(s statusAnswer) bool { return s.Sessions["active"] == 1 })
	assert.Equal(t, map[string]int64{"auth": 1}, s.Accepted)
	assert.EqualValues(t, 1, s.Opened)
	readType(t, c, "reauth_required")
	time.Sleep(200 * time.Millisecond) // a lag to measure
	tok2 := d.token(t, sub, time.Minute)
	require.NoError(t, c.Auth(tok2))
	readType(t, c, "auth_ok")
	s = d.awaitStatus(t, "a reauthentication", func(s statusAnswer) bool { return s.ReauthLag.Count == 1 })
	require.NotNil(t, s.ReauthLag.Mean)
	assert.InDelta(t, 0.2, *s.ReauthLag.Mean, 0.75)
	require.NotNil(t, s.ReauthLag.P99)
	assert.Greater(t, *s.ReauthLag.P99, 0.0)
	assert.LessOrEqual(t, *s.ReauthLag.P99, 1.0, "the lag's bucket")
	assert.Equal(t, map[string]int64{"auth": 1, "reauth": 1}, s.Accepted)

	// A bad token: closed with 4401, counted by its reason.
	bad, err := wstest.Dial(d.ws, http.Header{"Sec-WebSocket-Protocol": {"wsauth.v1"}})
	require.NoError(t, err)
	defer bad.Close()
	require.NoError(t, bad.Auth("not-a-token"))
	cl, _, err := bad.ReadClose()
	require.NoError(t, err)
	require.Equal(t, 4401, cl.Code)
	s = d.awaitStatus(t, "the bad token's close", func(s statusAnswer) bool { return s.Closes["4401"] == 1 })
	assert.Equal(t, map[string]int64{cl.Reason: 1}, s.Refused)

	// Upgrades refused before any socket: a foreign Origin, a POST.
	status, _ := dialRefused(t, d.ws, http.Header{"Origin": {"https://evil.example"}})
	require.Equal(t, http.StatusForbidden, status)
	resp, err := httpClient.Post(d.base+"/ws", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	s = d.status(t)
	assert.ElementsMatch(t, []refusalCount{{"origin", "403", 1}, {"method", "405", 1}}, s.Upgrades)
	assert.Equal(t, map[string]int64{"pending": 0, "active": 1, "expired": 0}, s.Sessions)

	// The numbers are the metrics' values.
	_, _, scrape := d.get(t, "/metrics")
	v, _ := metric(scrape, `wsauth_upgrades_refused_total{reason="origin",status="403"}`)
	assert.EqualValues(t, 1, v)

	_, _, raw := d.get(t, "/status.json")
	for what, secret := range map[string]string{
		"token": tok, "fresh token": tok2, "subject": sub, "session id": ok["session"].(string),
		"client address": c.LocalAddr().String(),
	} {
		assert.NotContains(t, raw, secret, "/status.json has the %s", what)
	}
}

// TestHealthEndpoints: /readyz and /livez are the Server's probes; without
// a cluster there is no broker to check.
func TestHealthEndpoints(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-tick", "0")
	for path, want := range map[string]string{
		"/readyz": `{"status":"ok","checks":{"server":"ok","verifier":"ok"}}`,
		"/livez":  `{"status":"ok"}`,
	} {
		code, ctype, body := d.get(t, path)
		assert.Equal(t, http.StatusOK, code, path)
		assert.Equal(t, "application/json", ctype, path)
		assert.JSONEq(t, want, body, path)
		resp, err := httpClient.Post(d.base+path, "text/plain", nil)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, path)
	}
}

// TestReadyzWithNATS: in a cluster, /readyz checks the node's NATS
// connection (natsbroker's Health): not ready while NATS is away, ready
// again once it is back.
func TestReadyzWithNATS(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	d := startDemo(t, "-nats", ns.URL(), "-tick", "0")
	ready := func() (int, map[string]any) {
		code, _, body := d.get(t, "/readyz")
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &m), body)
		return code, m
	}
	code, m := ready()
	require.Equal(t, http.StatusOK, code, m)
	assert.Equal(t, map[string]any{"server": "ok", "verifier": "ok", "broker": "ok"}, m["checks"])
	assert.Equal(t, "nats", d.status(t).Broker)

	ns.Stop()
	require.Eventually(t, func() bool {
		code, m = ready()
		return code == http.StatusServiceUnavailable
	}, 5*time.Second, 20*time.Millisecond, "not ready without NATS")
	checks := m["checks"].(map[string]any)
	assert.Equal(t, "ok", checks["verifier"])
	assert.Contains(t, checks["broker"], "not connected to NATS")

	ns.Start()
	require.Eventually(t, func() bool {
		code, _ = ready()
		return code == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "ready again with NATS back")
}

// TestHelpListsTheEndpoints: -h says what the demo serves, the operator's
// endpoints included.
func TestHelpListsTheEndpoints(t *testing.T) {
	t.Parallel()
	var help strings.Builder
	_, err := parseFlags([]string{"-h"}, &help)
	require.Error(t, err)
	for _, path := range []string{"/status", "/status.json", "/metrics", "/readyz", "/livez", "/ticket", "/token"} {
		assert.Contains(t, help.String(), " "+path+" ", path)
	}
}
