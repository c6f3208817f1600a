package wsauth_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// firstFrameReasons are the only outcomes a first frame without a valid
// token may have: the close code and its fixed reasons (protocol.md 7).
var firstFrameReasons = map[int][]string{
	int(protocol.CloseMalformed): {"binary frame", "malformed frame"},
	int(protocol.CloseUnauthorized): {"auth required",
		"malformed token", "missing kid", "algorithm not allowed", "unknown issuer", "unknown key",
		"invalid signature", "token expired", "token not valid yet", "missing exp", "missing sub", "wrong issuer",
		"wrong audience", "invalid token"},
	int(protocol.CloseTryAgainLater): {"keys unavailable"},
	int(protocol.CloseTooLarge):      {"frame too large"},
}

// FuzzServerFirstFrame sends one message, text or binary, whole or in two
// fragments, as the first thing on a fresh socket of a real server on
// loopback. Whatever it holds, the server closes with 4400, 4401 or 1009 and
// a fixed reason, sends nothing else, and runs no application code.
//
// All inputs share one server, started once per fuzzing process (the
// function body runs once per process; f.Fuzz's callback once per input),
// which is what makes this fast enough to fuzz: a server costs an RSA key
// and two HTTP servers, an input costs one TCP connection. The fake clock
// never moves, so the verifier refetches the JWK Set at most once whatever
// the kids the fuzzer invents.
func FuzzServerFirstFrame(f *testing.F) {
	h := newHostileEnv(f, hostileOptions{closeBuffer: 1, server: func(o *wsauth.Options) {
		o.MaxPending, o.MaxPendingPerIP = 1<<14, 1<<14
	}})
	f.Add([]byte(`{"type":"auth","token":"not-a-jwt"}`), false, uint16(0))
	f.Add([]byte(h.idp.SignWith(nil, nil, map[string]any{"kid": "nope"}, h.claimsFor(h.idp, "fuzz"))), false, uint16(0))
	f.Fuzz(func(t *testing.T, payload []byte, binary bool, split uint16) {
		op := byte(wstest.OpText)
		if binary {
			op = wstest.OpBinary
		}
		wire := wstest.Frame(true, op, payload)
		if s := int(split); s > 0 && s < len(payload) {
			wire = join(wstest.Frame(false, op, payload[:s]), wstest.Frame(true, wstest.OpContinuation, payload[s:]))
		}
		c, err := wstest.Dial(h.url, nil)
		require.NoError(t, err)
		defer c.Close()
		_, _ = c.Write(wire) // the server may close before it has read it all
		cl, texts, err := c.ReadClose()
		require.NoError(t, err)
		require.Empty(t, texts, "the server answered a first frame")
		require.Contains(t, firstFrameReasons, cl.Code, "close %d %q", cl.Code, cl.Reason)
		require.True(t, slices.Contains(firstFrameReasons[cl.Code], cl.Reason), "close %d %q", cl.Code, cl.Reason)
		require.Zero(t, h.authn.Load(), "OnAuthenticated ran")
		require.Zero(t, h.handled.Load(), "OnMessage ran")
	})
}

// FuzzAuthenticatedFrames writes arbitrary bytes to an authenticated
// connection of a real server on loopback, then ends the client's side.
// Whatever they hold (red team item 1: a 64-bit frame length with bit 63
// set used to panic gws's reader and kill the process), the process lives,
// the server ends the connection, and every text frame it sent before is
// a valid server frame, and it never closes with 1011 (a panic recovered).
func FuzzAuthenticatedFrames(f *testing.F) {
	h := newHostileEnv(f, hostileOptions{closeBuffer: 1, server: func(o *wsauth.Options) {
		o.MaxPending, o.MaxPendingPerIP = 1<<14, 1<<14
		o.OnMessage = func(_ context.Context, s *wsauth.Session, m wsauth.Message) error { return s.Reply(m.Data) }
	}})
	token := h.idp.Token("fuzz", 24*time.Hour)
	f.Add(wstest.HeaderOnly(true, wstest.OpText, 1<<63))
	f.Add(wstest.HeaderOnly(false, wstest.OpBinary, 1<<64-1))
	f.Add(join(wstest.Frame(false, wstest.OpText, []byte(`{"type":"mes`)), wstest.HeaderOnly(true, wstest.OpContinuation, 1<<63+4096)))
	f.Add(text(`{"type":"message","id":"1","data":{"a":[1,2,3]}}`))
	f.Add(join(wstest.Frame(true, wstest.OpPing, []byte("p")), wstest.Frame(true, wstest.OpClose, []byte{0x03, 0xe8})))
	f.Add(text(`{"type":"auth","token":"x.y.z"}`))
	f.Fuzz(func(t *testing.T, wire []byte) {
		c, err := wstest.Dial(h.url, nil)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.Auth(token))
		m, err := c.ReadJSON()
		require.NoError(t, err)
		require.Equal(t, "auth_ok", m["type"])
		_, _ = c.Write(wire) // the server may close before it has read it all
		_ = c.Conn.(*net.TCPConn).CloseWrite()
		for {
			op, p, err := c.ReadFrame()
			if err != nil {
				var ne net.Error
				require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server kept the connection open")
				return // the server closed the connection
			}
			switch op {
			case wstest.OpText:
				_, err := protocol.DecodeServer(p)
				require.NoError(t, err, "server frame %q", p)
			case wstest.OpClose:
				// 1011 is what a panic on the read goroutine ends in: the
				// recovery kept the process alive, but a frame reached a
				// bug.
				require.False(t, len(p) >= 2 && p[0] == 0x03 && p[1] == 0xf3, "closed 1011: %q", p)
			}
		}
	})
}
