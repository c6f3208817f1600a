package wsauth_test

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/protocol"
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
