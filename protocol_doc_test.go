package wsauth_test

import (
	"errors"
	"net"
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

// Wire behaviour that docs/protocol.md states and no other test pins down.
// The close codes of frames sent before auth_ok are pinned by
// TestHostileFramesBeforeAuth (hostile_frames_test.go).

// TestMalformedFramesAfterAuthClose4400 holds the server to protocol.md
// section 2 on an authenticated socket: a frame that breaks the decoding
// rules (the id and data rules among them) closes the connection with 4400,
// after auth_ok as before it, and never reaches OnMessage. Frames at the
// edge of the rules go through.
func TestMalformedFramesAfterAuthClose4400(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	id64 := strings.Repeat("i", 64)
	cases := []struct {
		name   string
		wire   []byte
		reason string
	}{
		{"id of 65 bytes", text(`{"type":"message","id":"` + id64 + `x","data":1}`), "malformed frame"},
		{"id of 65 bytes after unescaping", text(`{"type":"message","id":"` + strings.Repeat(`\u00e9`, 32) + `x","data":1}`), "malformed frame"},
		{"id is a number", text(`{"type":"message","id":42,"data":1}`), "malformed frame"},
		{"id is null", text(`{"type":"message","id":null,"data":1}`), "malformed frame"},
		{"missing data", text(`{"type":"message","id":"1"}`), "malformed frame"},
		{"data is two values", text(`{"type":"message","data":1 2}`), "malformed frame"},
		{"data is not JSON", text(`{"type":"message","data":hello}`), "malformed frame"},
		{"data with a leading zero", text(`{"type":"message","data":01}`), "malformed frame"},
		{"data nested past 10,000 levels", text(`{"type":"message","data":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`), "malformed frame"},
		{"duplicate id", text(`{"type":"message","id":"1","id":"2","data":1}`), "malformed frame"},
		{"trailing data", text(`{"type":"message","data":1} x`), "malformed frame"},
		{"unknown type", text(`{"type":"hello","data":1}`), "malformed frame"},
		{"a server frame type", text(`{"type":"error","code":4401,"message":"x"}`), "malformed frame"},
		{"missing type", text(`{"data":1}`), "malformed frame"},
		{"reauth with an empty token", text(`{"type":"auth","token":""}`), "malformed frame"},
		{"binary frame", wstest.Frame(true, wstest.OpBinary, []byte(`{"type":"message","data":1}`)), "binary frame"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := h.loginT(t, h.idp.Token("alice", time.Hour))
			_, err := c.Write(tc.wire)
			require.NoError(t, err)
			h.refused(t, c, protocol.CloseMalformed, tc.reason)
		})
	}
	require.Zero(t, h.handled.Load(), "a malformed frame reached OnMessage")

	// The edges of the same rules are accepted.
	c, _ := h.loginT(t, h.idp.Token("bob", time.Hour))
	for _, tc := range []struct{ wire, id, data string }{
		{`{"type":"message","id":"` + id64 + `","data":1}`, id64, `1`},
		{`{"type":"message","id":"` + strings.Repeat(`\u00e9`, 32) + `","data":{}}`, strings.Repeat("é", 32), `{}`},
		{`{"type":"message","data":null}`, "", `null`},
		{`{"type":"message","data":{"a":1,"a":2}}`, "", `{"a":1,"a":2}`},
	} {
		require.NoError(t, c.WriteText(tc.wire))
		m := h.nextMessageT(t)
		assert.Equal(t, tc.id, m.id, tc.wire)
		assert.Equal(t, tc.data, m.data, tc.wire)
	}
}

// TestMalformedMessageBeforeAuthIs4400: before auth_ok the decoding rules
// are checked before the auth rule, so a message with a 65-byte id closes
// with 4400, where the same message with a short id closes with 4401
// (TestHostileFramesBeforeAuth).
func TestMalformedMessageBeforeAuthIs4400(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	c := h.open(t, nil)
	require.NoError(t, c.WriteText(`{"type":"message","id":"`+strings.Repeat("i", 65)+`","data":1}`))
	h.refused(t, c, protocol.CloseMalformed, "malformed frame")
	h.noApplication(t)
}

// TestMalformedFrameWhileExpiredCloses4400: an expired session answers a
// well-formed message with error 4401 and stays open, but a malformed frame
// still closes it with 4400.
func TestMalformedFrameWhileExpiredCloses4400(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	c, ok := h.loginT(t, h.idp.Token("carol", time.Minute))
	h.clock.Advance(time.Minute) // past exp, inside the grace window
	readType(t, c, "reauth_required")
	s, found := h.srv.Session(ok["session"].(string))
	require.True(t, found)
	require.Equal(t, session.Expired, s.State())

	require.NoError(t, c.WriteText(`{"type":"message","id":"1","data":1}`))
	assert.Equal(t, map[string]any{"type": "error", "code": float64(4401), "message": "reauth required", "ref": "1"},
		readType(t, c, "error"))
	require.NoError(t, c.WriteText(`{"type":"message","id":"`+strings.Repeat("i", 65)+`","data":1}`))
	h.refused(t, c, protocol.CloseMalformed, "malformed frame")
	require.Zero(t, h.handled.Load())
}

// TestUnknownSubprotocolsOnly: a client that offers only subprotocols the
// server does not speak is upgraded anyway, without a
// Sec-WebSocket-Protocol answer, and then speaks wsauth.v1 like any other.
func TestUnknownSubprotocolsOnly(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	c, err := wstest.Dial(h.url, http.Header{"Sec-WebSocket-Protocol": {"chat, wsauth.v2"}})
	require.NoError(t, err, "the upgrade was refused")
	defer c.Close()
	assert.Empty(t, c.Subprotocol, "the server selected a subprotocol the client did not offer")

	require.NoError(t, c.Auth(h.idp.Token("dave", time.Hour)))
	readType(t, c, "auth_ok")
	require.NoError(t, c.WriteText(`{"type":"message","id":"m","data":"hi"}`))
	m := h.nextMessageT(t)
	assert.Equal(t, "m", m.id)
	assert.Equal(t, `"hi"`, m.data)
}

// TestKeepaliveAfterAuth: an authenticated socket has no idle timeout and
// the server sends no pings of its own; it answers the client's pings. The
// pre-auth read deadline (AuthTimeout + WriteTimeout, in real time: 1 s
// here) is gone once the session is authenticated.
func TestKeepaliveAfterAuth(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.AuthTimeout, o.WriteTimeout = 500*time.Millisecond, 500*time.Millisecond
	}})
	c, _ := h.loginT(t, h.idp.Token("erin", time.Hour))

	// Idle past the pre-auth read deadline: not a frame, not a ping, not a
	// close arrives.
	c.Timeout = 1500 * time.Millisecond
	op, p, err := c.ReadFrame()
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "want silence, got opcode %d %q, err %v", op, p, err)

	c.Timeout = 5 * time.Second
	require.NoError(t, c.WriteFrame(true, wstest.OpPing, []byte("are you there")))
	op, p, err = c.ReadFrame()
	require.NoError(t, err)
	assert.Equal(t, byte(wstest.OpPong), op)
	assert.Equal(t, "are you there", string(p))

	require.NoError(t, c.WriteText(`{"type":"message","data":"still here"}`))
	assert.Equal(t, `"still here"`, h.nextMessageT(t).data)
}
