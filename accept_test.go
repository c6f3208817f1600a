package wsauth_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// upgradeShape is an upgrade request with some headers changed.
type upgradeShape struct {
	name   string
	header string // replaces the default header lines that it names
	status int
	proto  string // Sec-WebSocket-Protocol of a 101
}

// upgradeRequest builds an upgrade request whose headers are the defaults
// with extra's lines in place of those of the same names. A name with an
// empty value ("Sec-WebSocket-Key:") drops the header; a name listed twice
// is sent twice.
func upgradeRequest(host, extra string) string {
	lines := map[string][]string{
		"Host":                  {host},
		"Upgrade":               {"websocket"},
		"Connection":            {"Upgrade"},
		"Sec-WebSocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Sec-WebSocket-Version": {"13"},
	}
	order := []string{"Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version"}
	replaced := map[string]bool{}
	for _, l := range strings.Split(extra, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !replaced[k] {
			if _, known := lines[k]; !known {
				order = append(order, k)
			}
			lines[k], replaced[k] = nil, true
		}
		if v != "" {
			lines[k] = append(lines[k], v)
		}
	}
	var b strings.Builder
	b.WriteString("GET /ws HTTP/1.1\r\n")
	for _, k := range order {
		for _, v := range lines[k] {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

var upgradeShapes = []upgradeShape{
	{"plain", "", 101, ""},
	{"no Sec-WebSocket-Key", "Sec-WebSocket-Key:", http.StatusBadRequest, ""},
	{"Sec-WebSocket-Key not base64", "Sec-WebSocket-Key: not base64!", http.StatusBadRequest, ""},
	{"Sec-WebSocket-Key of 15 bytes", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j", http.StatusBadRequest, ""},
	{"two Sec-WebSocket-Keys", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", http.StatusBadRequest, ""},
	{"Sec-WebSocket-Version 8", "Sec-WebSocket-Version: 8", http.StatusUpgradeRequired, ""},
	{"no Sec-WebSocket-Version", "Sec-WebSocket-Version:", http.StatusUpgradeRequired, ""},
	{"two Sec-WebSocket-Versions", "Sec-WebSocket-Version: 13\nSec-WebSocket-Version: 8", http.StatusUpgradeRequired, ""},
	// Shapes gws reads differently from net/http: it looks at the first
	// value of a header only. They are valid upgrades and get a session.
	{"two Connection headers", "Connection: keep-alive\nConnection: Upgrade", 101, ""},
	{"Upgrade with two tokens", "Upgrade: h2c, websocket", 101, ""},
	{"wsauth.v1 in a second Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: chat\nSec-WebSocket-Protocol: wsauth.v1", 101, "wsauth.v1"},
	{"only unknown subprotocols", "Sec-WebSocket-Protocol: chat, superchat", 101, ""},
	// Subprotocol names match exactly, as browsers compare them: a case
	// variant is an unknown subprotocol, not a refusal after the hijack.
	{"WSAUTH.V1", "Sec-WebSocket-Protocol: WSAUTH.V1", 101, ""},
	{"Wsauth.v1 among others", "Sec-WebSocket-Protocol: chat, Wsauth.v1", 101, ""},
}

// TestUpgradeShapes sends upgrade requests that browsers and proxies may
// produce, or that only a hostile client would: each gets its documented
// HTTP answer before any socket is upgraded, or a working session.
func TestUpgradeShapes(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	for _, tc := range upgradeShapes {
		t.Run(tc.name, func(t *testing.T) {
			_, br := dialRaw(t, h.host(), []byte(upgradeRequest(h.host(), tc.header)))
			resp := readUpgradeResponse(t, br)
			require.Equal(t, tc.status, resp.StatusCode)
			if tc.status != 101 {
				if tc.status == http.StatusUpgradeRequired {
					assert.Equal(t, "13", resp.Header.Get("Sec-WebSocket-Version"))
				}
				return
			}
			assert.Equal(t, tc.proto, resp.Header.Get("Sec-WebSocket-Protocol"))
			assert.Equal(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp.Header.Get("Sec-WebSocket-Accept"))
		})
	}
	h.settledOrPending(t)
}

// settledOrPending waits until no connection is pending: the upgraded ones
// of TestUpgradeShapes end by the auth deadline or when their client goes.
func (h *hostileEnv) settledOrPending(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return h.srv.Len() == 0 }, 5*time.Second, 5*time.Millisecond)
}

// TestUpgradeRefusalsLeakNothing repeats every refused upgrade shape many
// times: afterwards the server holds no pending slot and no file
// descriptor more than before (red team: a refusal after the hijack left
// one socket open per request until a GC finalizer found it). It counts the
// process's descriptors, so it does not run in parallel.
func TestUpgradeRefusalsLeakNothing(t *testing.T) {
	h := newHostileEnv(t, hostileOptions{})
	base := measure(t)
	const rounds = 100
	for range rounds {
		for _, tc := range upgradeShapes {
			if tc.status == 101 {
				continue
			}
			nc, br := dialRaw(t, h.host(), []byte(upgradeRequest(h.host(), tc.header)))
			resp := readUpgradeResponse(t, br)
			require.Equal(t, tc.status, resp.StatusCode, tc.name)
			nc.Close()
		}
	}
	require.Zero(t, h.srv.Pending())
	// Close-on-refusal is immediate; 2 s covers the server's goroutines
	// noticing the clients' close, not a GC cycle.
	deadline := time.Now().Add(2 * time.Second)
	for {
		now := measure(t)
		if now.fds <= base.fds+4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d file descriptors open after %d refused upgrades (baseline %d)", now.fds, rounds*8, base.fds)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
