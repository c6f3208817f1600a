package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/wstest"
)

// ticket POSTs to the demo's /ticket with header and returns the status,
// the headers and the decoded JSON answer.
func (d *demo) ticket(t *testing.T, method string, header http.Header) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, d.base+"/ticket", nil)
	require.NoError(t, err)
	req.Header = header
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m), "status %d, body %q", resp.StatusCode, raw)
	return resp.StatusCode, resp.Header, m
}

func bearerHeader(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}

// dialRefused requires the upgrade of url to be refused and returns the
// status and body of the answer.
func dialRefused(t *testing.T, url string, header http.Header) (int, string) {
	t.Helper()
	c, err := wstest.Dial(url, header)
	if err == nil {
		c.Close()
	}
	var he *wstest.HandshakeError
	require.True(t, errors.As(err, &he), "the upgrade was not refused: %v", err)
	return he.Status, he.Body
}

// TestTicketEndpoint: the demo serves Server.TicketHandler at /ticket, as
// its page's ticket mode needs. A ticket opens a session that starts
// authenticated (auth_ok first) and reauthenticates in-band, once: used
// again it gets 401.
func TestTicketEndpoint(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-tick", "0")
	tok := d.token(t, "tia", time.Minute)

	before := time.Now()
	status, hdr, m := d.ticket(t, http.MethodPost, bearerHeader(tok))
	require.Equal(t, http.StatusOK, status, "answer %v", m)
	assert.Equal(t, "no-store", hdr.Get("Cache-Control"))
	ticket, _ := m["ticket"].(string)
	require.NotEmpty(t, ticket)
	assert.NotContains(t, ticket, ".", "a ticket, not the token")
	exp, _ := m["expires"].(float64)
	assert.InDelta(t, before.Add(30*time.Second).Unix(), exp, 2, "30 s by default")

	c, err := wstest.Dial(d.ws+"?ticket="+ticket, http.Header{"Sec-WebSocket-Protocol": {"wsauth.v1"}})
	require.NoError(t, err)
	defer c.Close()
	ok := readType(t, c, "auth_ok") // the first frame: no auth frame sent
	assert.Equal(t, "tia", ok["sub"])
	require.NoError(t, c.WriteText(`{"type":"message","id":"m1","data":"via a ticket"}`))
	assert.Equal(t, map[string]any{"from": "tia", "data": "via a ticket"}, readType(t, c, "message")["data"])
	// Reauthentication goes on in-band, on the same session.
	require.NoError(t, c.Auth(d.token(t, "tia", 2*time.Minute)))
	ok2 := readType(t, c, "auth_ok")
	assert.Equal(t, ok["session"], ok2["session"])
	assert.Greater(t, ok2["exp"], ok["exp"])

	status, body := dialRefused(t, d.ws+"?ticket="+ticket, nil)
	assert.Equal(t, http.StatusUnauthorized, status, "a used ticket")
	assert.Contains(t, body, "invalid ticket")
	assert.NotContains(t, body, ticket)
	status, _ = dialRefused(t, d.ws+"?ticket=not-a-ticket", nil)
	assert.Equal(t, http.StatusUnauthorized, status)

	// A page's ticket: bound to the exchange's Origin, the page's own.
	page := http.Header{"Origin": {d.base}}
	exchange := bearerHeader(tok)
	exchange.Set("Origin", d.base)
	_, _, m = d.ticket(t, http.MethodPost, exchange)
	status, _ = dialRefused(t, d.ws+"?ticket="+m["ticket"].(string), http.Header{"Origin": {"http://127.0.0.1:1"}})
	assert.Equal(t, http.StatusForbidden, status, "another origin is not allowed at all")
	_, _, m = d.ticket(t, http.MethodPost, exchange)
	status, _ = dialRefused(t, d.ws+"?ticket="+m["ticket"].(string), nil)
	assert.Equal(t, http.StatusUnauthorized, status, "a page's ticket, from no page")
	_, _, m = d.ticket(t, http.MethodPost, exchange)
	pc, err := wstest.Dial(d.ws+"?ticket="+m["ticket"].(string), page)
	require.NoError(t, err)
	defer pc.Close()
	assert.Equal(t, "tia", readType(t, pc, "auth_ok")["sub"])
}

// TestPageSignsInWithTheAuthFrameByDefault: the page's "Sign in with"
// control offers the auth frame first, so that it is the default, and
// tickets second.
func TestPageSignsInWithTheAuthFrameByDefault(t *testing.T) {
	t.Parallel()
	page, err := static.ReadFile("static/index.html")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?s)<select id="credential"[^>]*>(.*?)</select>`).FindSubmatch(page)
	require.NotNil(t, m, "the page has the control")
	options := regexp.MustCompile(`<option value="([^"]+)"( selected)?>`).FindAllSubmatch(m[1], -1)
	require.Len(t, options, 2)
	assert.Equal(t, "auth", string(options[0][1]))
	assert.Equal(t, "ticket", string(options[1][1]))
	assert.Empty(t, options[1][2], "tickets are not preselected")
}

// TestTicketEndpointRefusals: what /ticket answers a request it will not
// serve.
func TestTicketEndpointRefusals(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-tick", "0")
	good := d.token(t, "tia", time.Minute)
	for _, tc := range []struct {
		name   string
		method string
		header http.Header
		status int
		error  string
	}{
		{"GET", http.MethodGet, bearerHeader(good), http.StatusMethodNotAllowed, "use POST"},
		{"no token", http.MethodPost, nil, http.StatusUnauthorized, "missing bearer token"},
		{"not a bearer", http.MethodPost, http.Header{"Authorization": {"Basic " + good}}, http.StatusUnauthorized, "missing bearer token"},
		{"malformed token", http.MethodPost, bearerHeader("not.a.jwt"), http.StatusUnauthorized, "malformed token"},
		{"another origin", http.MethodPost, http.Header{"Authorization": {"Bearer " + good}, "Origin": {"http://evil.example"}}, http.StatusForbidden, "origin not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, hdr, m := d.ticket(t, tc.method, tc.header)
			assert.Equal(t, tc.status, status)
			assert.Equal(t, map[string]any{"error": tc.error}, m)
			assert.Equal(t, "no-store", hdr.Get("Cache-Control"))
			if status == http.StatusUnauthorized {
				assert.True(t, strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer"), hdr.Get("WWW-Authenticate"))
			}
			if status == http.StatusMethodNotAllowed {
				assert.Equal(t, http.MethodPost, hdr.Get("Allow"))
			}
		})
	}
}
