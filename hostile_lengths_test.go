package wsauth_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// TestHostileLengthsAfterAuth sends, on an authenticated connection, frame
// headers whose 64-bit length gws v1.9.1 would turn into a negative int and
// panic on (red team item 1): the read loop's gate refuses every length
// over MaxFrame from the header alone, for the life of the connection, and
// the process lives on to serve the next client.
func TestHostileLengthsAfterAuth(t *testing.T) {
	t.Parallel()
	const maxFrame = 64 << 10
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) { o.MaxFrame = maxFrame }})
	cases := []struct {
		name string
		wire []byte
	}{
		{"text, 2^63", wstest.HeaderOnly(true, wstest.OpText, 1<<63)},
		{"text, 2^64-1", wstest.HeaderOnly(true, wstest.OpText, 1<<64-1)},
		{"text, 2^63+4096", wstest.HeaderOnly(true, wstest.OpText, 1<<63+4096)},
		{"binary, 2^63", wstest.HeaderOnly(true, wstest.OpBinary, 1<<63)},
		{"continuation, 2^63", join(
			wstest.Frame(false, wstest.OpText, []byte(`{"type":"message",`)),
			wstest.HeaderOnly(true, wstest.OpContinuation, 1<<63))},
		{"unfinished text, 2^64-1", wstest.HeaderOnly(false, wstest.OpText, 1<<64-1)},
		{"text, MaxFrame+1", wstest.HeaderOnly(true, wstest.OpText, maxFrame+1)},
		{"fragments growing past MaxFrame", join(
			wstest.Frame(false, wstest.OpText, bytes.Repeat([]byte("a"), maxFrame/2)),
			wstest.Frame(false, wstest.OpContinuation, bytes.Repeat([]byte("b"), maxFrame/2)),
			wstest.HeaderOnly(true, wstest.OpContinuation, 1))},
		{"after a valid message", join(
			text(`{"type":"message","data":1}`),
			wstest.HeaderOnly(true, wstest.OpText, 1<<63))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := h.loginT(t, h.idp.Token("alice", time.Hour))
			_, err := c.Write(tc.wire)
			require.NoError(t, err)
			ev := h.closeEventOf(t, ok["session"].(string))
			cl, _, err := c.ReadClose()
			require.NoError(t, err)
			assert.Equal(t, int(protocol.CloseTooLarge), cl.Code, "reason %q", cl.Reason)
			assert.Equal(t, "frame too large", cl.Reason)
			assert.Equal(t, protocol.CloseTooLarge, ev.code)
			// The server is alive and still serves the next client.
			c2, _ := h.loginT(t, h.idp.Token("bob", time.Hour))
			require.NoError(t, c2.WriteText(`{"type":"message","data":"still here"}`))
			for m := h.nextMessageT(t); m.data != `"still here"`; m = h.nextMessageT(t) {
			}
		})
	}
}

// closeEventOf waits for the OnClose event of session id, skipping others.
func (h *hostileEnv) closeEventOf(t testing.TB, id string) closeEvent {
	t.Helper()
	for {
		if ev := h.closeEventT(t); ev.session == id {
			return ev
		}
	}
}

// nextMessageT waits for the next message that reached OnMessage.
func (h *hostileEnv) nextMessageT(t testing.TB) received {
	t.Helper()
	select {
	case m := <-h.rec.messages:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message reached OnMessage within 5s")
		return received{}
	}
}
