package wsauth_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
)

// TestHostileCrossSiteHijacking: a page from a foreign origin cannot open a
// socket that the browser would authenticate. The server answers 403 before
// the upgrade: no 101, no session, no OnClose, nothing pending.
func TestHostileCrossSiteHijacking(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.OriginPatterns = []string{"app.example.com", "*.trusted.example"}
	}})
	host := h.host()
	for _, origin := range []string{
		"https://evil.example",
		"null",
		"http://127.0.0.1:1", // the server's host, another port
		"http://localhost:" + host[len("127.0.0.1:"):], // another name of the same server
		"http://" + host + ".evil.example",
		"http://evil.example@" + host,
		"http://" + host + "/",
		"https://app.example.com.evil.example",
		"https://evil-app.example.com",
		"https://trusted.example", // the pattern needs a subdomain
		"https://a.trusted.example.evil",
		"file://",
		host, // no scheme
	} {
		t.Run(origin, func(t *testing.T) {
			c, err := wstest.Dial(h.url, http.Header{"Origin": {origin}})
			if err == nil {
				c.Close()
				t.Fatalf("origin %q was upgraded", origin)
			}
			var he *wstest.HandshakeError
			require.ErrorAs(t, err, &he)
			assert.Equal(t, http.StatusForbidden, he.Status)
			assert.Empty(t, he.Header.Get("Upgrade"))
			assert.Empty(t, he.Header.Get("Sec-WebSocket-Accept"))
			assert.Equal(t, "origin not allowed\n", he.Body)
		})
	}
	// A foreign page that sends its frames with the request anyway: they
	// are never read as WebSocket frames.
	t.Run("frames pipelined after a refused upgrade", func(t *testing.T) {
		req := "GET /ws HTTP/1.1\r\nHost: " + host + "\r\nOrigin: https://evil.example\r\nUpgrade: websocket\r\n" +
			"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
		nc, br := dialRaw(t, host, append([]byte(req), text(`{"type":"auth","token":"x"}`)...))
		resp := readUpgradeResponse(t, br)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		_ = nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		rest, _ := io.ReadAll(br)
		assert.NotContains(t, string(rest), "101 Switching Protocols")
	})
	assert.Zero(t, h.closed.Load(), "OnClose ran: a session existed")
	assert.Zero(t, h.srv.Pending())
	assert.Zero(t, h.srv.Len())
	h.noApplication(t)

	// The same-origin page, and a listed one, still get in.
	for _, origin := range []string{"http://" + host, "https://app.example.com", "https://chat.trusted.example"} {
		c := h.open(t, http.Header{"Origin": {origin}})
		c.Close()
	}
}
