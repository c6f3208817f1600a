package wsauth_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// closeProtocolError is RFC 6455's 1002, which wsauth itself never sends.
const closeProtocolError protocol.CloseCode = 1002

func text(s string) []byte { return wstest.Frame(true, wstest.OpText, []byte(s)) }

// join concatenates frames so that they go out in one write.
func join(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

func repeatFrame(n int, f func(i int) []byte) []byte {
	var b []byte
	for i := range n {
		b = append(b, f(i)...)
	}
	return b
}

// unmasked builds a client frame without a mask, which RFC 6455 forbids.
func unmasked(opcode byte, payload []byte) []byte {
	return append([]byte{0x80 | opcode, byte(len(payload))}, payload...)
}

// TestHostileFramesBeforeAuth sends what no client should before auth_ok.
// Every case closes the socket with an exact code and reason, and nothing
// reaches the application: no OnAuthenticated, no OnMessage.
func TestHostileFramesBeforeAuth(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	const capBytes = wsauth.DefaultMaxPreAuthFrame
	type frameCase struct {
		name   string
		wire   []byte // written in one write
		code   protocol.CloseCode
		reason string
	}
	malformed := func(name, payload string) frameCase {
		return frameCase{name, text(payload), protocol.CloseMalformed, "malformed frame"}
	}
	cases := []frameCase{
		{"binary frame", wstest.Frame(true, wstest.OpBinary, []byte(`{"type":"auth","token":"x"}`)), protocol.CloseMalformed, "binary frame"},
		{"invalid UTF-8", text("{\"type\":\"auth\",\"token\":\"\xff\"}"), protocol.CloseMalformed, "malformed frame"},
		{"UTF-16 surrogate in UTF-8", text("{\"type\":\"auth\",\"token\":\"\xed\xa0\x80\"}"), protocol.CloseMalformed, "malformed frame"},
		{"overlong UTF-8", text("{\"type\":\"auth\",\"token\":\"\xc0\xaf\"}"), protocol.CloseMalformed, "malformed frame"},
		malformed("not JSON", `hello`),
		malformed("empty payload", ``),
		malformed("JSON array", `[{"type":"auth","token":"x"}]`),
		malformed("JSON number", `42`),
		malformed("JSON null", `null`),
		malformed("JSON string", `"auth"`),
		malformed("two objects", `{"type":"auth","token":"x"}{"type":"auth","token":"y"}`),
		malformed("truncated object", `{"type":"auth","token":"x"`),
		malformed("missing type", `{"token":"x"}`),
		malformed("type is a number", `{"type":1,"token":"x"}`),
		malformed("type is null", `{"type":null,"token":"x"}`),
		malformed("type is an array", `{"type":["auth"],"token":"x"}`),
		malformed("unknown type", `{"type":"hello"}`),
		malformed("a server frame type", `{"type":"auth_ok","session":"s","sub":"admin","exp":0}`),
		malformed("duplicate type", `{"type":"auth","type":"message","data":1}`),
		malformed("duplicate token", `{"type":"auth","token":"x","token":"y"}`),
		malformed("duplicate key, escaped", `{"type":"auth","tok\u0065n":"x","token":"y"}`),
		malformed(`key "Type"`, `{"Type":"auth","token":"x"}`),
		malformed(`type "AUTH"`, `{"type":"AUTH","token":"x"}`),
		malformed(`type "Auth"`, `{"type":"Auth","token":"x"}`),
		malformed("auth without token", `{"type":"auth"}`),
		malformed("empty token", `{"type":"auth","token":""}`),
		malformed("token is a number", `{"type":"auth","token":123}`),
		malformed("token is null", `{"type":"auth","token":null}`),
		malformed("token is an object", `{"type":"auth","token":{"jwt":"x"}}`),
		malformed("token is an array", `{"type":"auth","token":["x"]}`),
		malformed("nesting past the frame", `{"type":"auth","token":"x","n":`+strings.Repeat("[", 8000)+`}`),
		{"message before auth", text(`{"type":"message","id":"1","data":"sneaky"}`), protocol.CloseUnauthorized, "auth required"},
		{"fragmented message before auth", join(
			wstest.Frame(false, wstest.OpText, []byte(`{"type":"mes`)),
			wstest.Frame(true, wstest.OpContinuation, []byte(`sage","data":"sneaky"}`)),
		), protocol.CloseUnauthorized, "auth required"},
		{"frame one byte over the cap", text(`{"type":"auth","token":"` + strings.Repeat("x", capBytes-25) + `"}`), protocol.CloseTooLarge, "frame too large"},
		{"header announcing 2^63-1 bytes", wstest.HeaderOnly(true, wstest.OpText, 1<<63-1), protocol.CloseTooLarge, "frame too large"},
		{"fragments growing past the cap", join(
			wstest.Frame(false, wstest.OpText, bytes.Repeat([]byte("a"), capBytes/2)),
			wstest.Frame(false, wstest.OpContinuation, bytes.Repeat([]byte("b"), capBytes/2)),
			wstest.Frame(true, wstest.OpContinuation, []byte("c")),
		), protocol.CloseTooLarge, "frame too large"},
		{"a thousand message frames in one write", repeatFrame(1000, func(i int) []byte {
			return text(fmt.Sprintf(`{"type":"message","id":"%d","data":%d}`, i, i))
		}), protocol.CloseUnauthorized, "auth required"},
		// The server closes with the rest of the flood unread: without the
		// lingering close (gateConn.Close, drainAndClose) the kernel would
		// reset the connection and drop the close frame.
		{"a thousand pings in one write", repeatFrame(1000, func(int) []byte {
			return wstest.Frame(true, wstest.OpPing, bytes.Repeat([]byte("p"), 20))
		}), protocol.CloseTooManyRequests, "too many bytes before auth"},
		{"bad token and a message in one write", join(
			text(`{"type":"auth","token":"not-a-jwt"}`),
			text(`{"type":"message","data":"sneaky"}`),
		), protocol.CloseUnauthorized, "malformed token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := h.open(t, nil)
			_, err := c.Write(tc.wire)
			require.NoError(t, err)
			h.refused(t, c, tc.code, tc.reason)
		})
	}

	// Frames that break RFC 6455 itself are gws's to refuse: it closes with
	// 1002 before wsauth sees them, and OnClose must report the 1002 it sent.
	// gws keeps only the inner error of its *internal.Error, so the code
	// comes from the close frame gateConn.Write saw go out.
	protocolErrors := []struct {
		name string
		wire []byte
	}{
		{"unmasked frame", unmasked(wstest.OpText, []byte(`{"type":"auth","token":"x"}`))},
		{"reserved opcode", wstest.Frame(true, 0x3, []byte(`{}`))},
		{"RSV1 without compression", func() []byte {
			f := text(`{"type":"auth","token":"x"}`)
			f[0] |= 0x40
			return f
		}()},
		{"continuation without a start", wstest.Frame(true, wstest.OpContinuation, []byte(`{}`))},
		{"fragmented ping", wstest.Frame(false, wstest.OpPing, []byte("p"))},
		{"ping over 125 bytes", wstest.Frame(true, wstest.OpPing, bytes.Repeat([]byte("p"), 126))},
	}
	for _, tc := range protocolErrors {
		t.Run(tc.name, func(t *testing.T) {
			c := h.open(t, nil)
			_, err := c.Write(tc.wire)
			require.NoError(t, err)
			ev := h.closeEventT(t)
			cl, texts, err := c.ReadClose()
			require.NoError(t, err)
			assert.Empty(t, texts)
			assert.Equal(t, int(closeProtocolError), cl.Code, "reason %q", cl.Reason)
			assert.Equal(t, closeProtocolError, ev.code, "OnClose reason %q", ev.reason)
		})
	}

	// The auth frame may arrive in the same segment as the upgrade request:
	// those bytes, buffered by net/http, go through the same gate.
	prefixed := []struct {
		name   string
		frames []byte
		code   protocol.CloseCode
		reason string
	}{
		{"message with the upgrade request", text(`{"type":"message","data":"sneaky"}`), protocol.CloseUnauthorized, "auth required"},
		{"oversized header with the upgrade request", wstest.HeaderOnly(true, wstest.OpText, capBytes+1), protocol.CloseTooLarge, "frame too large"},
		{"bad token with the upgrade request", text(`{"type":"auth","token":"not-a-jwt"}`), protocol.CloseUnauthorized, "malformed token"},
	}
	for _, tc := range prefixed {
		t.Run(tc.name, func(t *testing.T) {
			_, br := dialRaw(t, h.host(), append([]byte(rawUpgrade(h.host())), tc.frames...))
			ev := h.closeEventT(t)
			resp := readUpgradeResponse(t, br)
			require.Equal(t, 101, resp.StatusCode)
			code, reason, err := readRawClose(br)
			require.NoError(t, err)
			assert.Equal(t, int(tc.code), code)
			assert.Equal(t, tc.reason, reason)
			assert.Equal(t, tc.code, ev.code)
			assert.Equal(t, tc.reason, ev.reason)
		})
	}
	h.noApplication(t)
	h.settled(t)
}
