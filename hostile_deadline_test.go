package wsauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// TestNonReadingClientRightAfterUpgrade is red team item 2: gws clears the
// connection's deadlines after writing the 101, and gateConn used to think
// its own write deadline was still set, so for the first WriteTimeout/8
// every write ran without any deadline. A client that authenticates and
// then never reads, while the server pushes to it at once, must still be
// dropped by WriteTimeout, with 4413 reported to OnClose, what it did not
// get handed to OnUndelivered, and without a second WriteTimeout spent on
// a close frame that cannot be written (item 20).
//
// WriteTimeout is a real socket deadline, so this test takes about one
// WriteTimeout of real time.
func TestNonReadingClientRightAfterUpgrade(t *testing.T) {
	t.Parallel()
	const writeTimeout = 2 * time.Second // long enough that scheduling delays on a loaded machine stay far below the second timeout this test rules out
	chunk := json.RawMessage(`"` + string(bytes.Repeat([]byte("x"), 64<<10)) + `"`)
	authed := make(chan *wsauth.Session, 1)
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.WriteTimeout = writeTimeout
		o.BufferBytes = 16 << 20
		o.OnAuthenticated = func(_ context.Context, s *wsauth.Session) error {
			authed <- s
			return nil
		}
	}})

	nc, err := net.DialTimeout("tcp", h.host(), 5*time.Second)
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, nc.(*net.TCPConn).SetReadBuffer(4096))
	token := h.idp.Token("mallory", time.Hour)
	auth := wstest.Frame(true, wstest.OpText, []byte(`{"type":"auth","token":"`+token+`"}`))
	_, err = nc.Write(append([]byte(rawUpgrade(h.host())), auth...))
	require.NoError(t, err)

	var s *wsauth.Session
	select {
	case s = <-authed:
	case <-time.After(5 * time.Second):
		t.Fatal("not authenticated")
	}
	start := time.Now()
	// Push at once, from another goroutine, until the session is gone.
	sent := 0
	for range 400 {
		err := s.Send(chunk)
		if err == nil {
			sent++
			continue
		}
		if errors.Is(err, wsauth.ErrSessionClosed) {
			break
		}
		require.ErrorIs(t, err, wsauth.ErrBufferFull)
	}
	ev := h.closeEventT(t)
	elapsed := time.Since(start)
	assert.Equal(t, protocol.CloseBufferOverflow, ev.code, "reason %q", ev.reason)
	assert.Equal(t, "client not reading", ev.reason)
	assert.Less(t, elapsed, writeTimeout*19/10, "dropped after %v: more than one WriteTimeout", elapsed)
	got := len(h.undeliveredFor("mallory"))
	assert.Positive(t, got, "nothing was handed to OnUndelivered")
	assert.LessOrEqual(t, got, sent)
}
