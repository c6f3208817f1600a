package wsauth_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// TestDroppedClientIsConnectionLost: a client that goes away without a
// close frame, with a FIN or a reset, before or after authenticating, is
// reported to OnClose as 1006 "connection lost", as Options.OnClose
// says. It used to be 1000 "normal closure": gws answers the read error
// with a 1000 close frame of its own, and that code was reported as the
// server's.
func TestDroppedClientIsConnectionLost(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	for _, tc := range []struct {
		name        string
		reset, auth bool
	}{
		{"FIN while pending", false, false},
		{"reset while pending", true, false},
		{"FIN after auth", false, true},
		{"reset after auth", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.open(t, nil)
			if tc.auth {
				require.NoError(t, c.Auth(h.idp.Token("ruth", time.Hour)))
				readType(t, c, "auth_ok")
			}
			if tc.reset {
				require.NoError(t, c.Conn.(*net.TCPConn).SetLinger(0))
			}
			c.Close()
			ev := h.closeEventT(t)
			assert.Equal(t, protocol.CloseAbnormal, ev.code, "reason %q", ev.reason)
			assert.Equal(t, "connection lost", ev.reason)
		})
	}
	h.settled(t)
}

// readUntilClose reads raw frames until the server's close frame, without
// answering it or closing the socket, and returns the text frames before it
// and the close code.
func readUntilClose(t testing.TB, c *wstest.Conn) (texts []string, code int) {
	t.Helper()
	for {
		op, p, err := c.ReadFrame()
		require.NoError(t, err)
		switch op {
		case wstest.OpText:
			texts = append(texts, string(p))
		case wstest.OpClose:
			require.GreaterOrEqual(t, len(p), 2)
			return texts, int(p[0])<<8 | int(p[1])
		}
	}
}

// TestShutdownDuringFirstAuth: a session closed while its first
// authentication completes, between OnAuthenticated and auth_ok (here by
// Shutdown, while OnUndelivered gets a resumed message too large for the
// new session), lingers like any closed socket: a client that neither
// reads nor closes is let go after a second. activate used to clear the
// socket's read deadline after such a close had set the linger deadline,
// so the drain waited for the client for ever, and Shutdown with it.
func TestShutdownDuringFirstAuth(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	var armed atomic.Bool
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.ResumeFor = time.Minute
		o.BufferBytes = 1 << 10
		next := o.OnUndelivered
		o.OnUndelivered = func(p wsauth.Principal, data []json.RawMessage) {
			if armed.CompareAndSwap(true, false) {
				close(entered)
				<-release
			}
			next(p, data)
		}
	}})
	// A message larger than BufferBytes, kept for pat's next session: an
	// empty outbox takes any one message, so it was queued (while the
	// session's token was expired), but the next session's outbox refuses
	// it on resume and it goes to OnUndelivered.
	c1, ok := h.loginT(t, h.idp.Token("pat", 2*time.Minute))
	h.clock.Advance(2 * time.Minute)
	readType(t, c1, "reauth_required")
	require.Eventually(t, func() bool {
		s, found := h.srv.Session(ok["session"].(string))
		return found && s.State() == session.Expired
	}, 5*time.Second, time.Millisecond)
	big := json.RawMessage(`"` + strings.Repeat("x", 2<<10) + `"`)
	n, err := h.srv.SendToPrincipals(context.Background(), big, h.p("pat"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	c1.Close()
	assert.Equal(t, protocol.CloseAbnormal, h.closeEventT(t).code)
	require.Equal(t, 1, wsauth.HoldingsOf(h.srv).Resumed)

	armed.Store(true)
	c2 := h.open(t, nil)
	require.NoError(t, c2.Auth(h.idp.Token("pat", time.Hour)))
	recv(t, entered)
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		shutdown <- h.srv.Shutdown(ctx)
	}()
	texts, code := readUntilClose(t, c2) // and then neither answer nor close
	assert.Empty(t, texts)
	assert.Equal(t, int(protocol.CloseGoingAway), code)
	// The end of the stream: the close has shut the server's write side,
	// and it sets the linger deadline right after that. Only then may
	// activate go on, for this test to be able to fail.
	_, _, err = c2.ReadFrame()
	require.ErrorIs(t, err, io.EOF)
	time.Sleep(20 * time.Millisecond)
	close(release)
	start := time.Now()
	require.NoError(t, recv(t, shutdown), "Shutdown waited for a client that never closes")
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.Equal(t, []string{string(big)}, h.undeliveredFor("pat"))
	assert.Equal(t, wsauth.Holdings{}, wsauth.HoldingsOf(h.srv))
}
