package wsauth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// eventLog is an Observer that keeps what it saw.
type eventLog struct {
	mu     sync.Mutex
	events []wsauth.Event
}

func (l *eventLog) Observe(e wsauth.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

// sum adds up f over the events of kind.
func (l *eventLog) sum(kind wsauth.EventKind, f func(wsauth.Event) int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Kind == kind {
			n += f(e)
		}
	}
	return n
}

func (l *eventLog) count(kind wsauth.EventKind, match func(wsauth.Event) bool) int {
	return l.sum(kind, func(e wsauth.Event) int {
		if match == nil || match(e) {
			return 1
		}
		return 0
	})
}

// inState is how many sessions are in st, from the StateChanged events.
func (l *eventLog) inState(st session.State) int {
	return l.sum(wsauth.StateChanged, func(e wsauth.Event) int {
		n := 0
		if e.To == st {
			n++
		}
		if e.From == st && !(e.From == session.Closed) {
			n--
		}
		return n
	})
}

// TestObserver drives real scenarios over real sockets and checks the
// events that follow, and that the gauges built from them come back to zero.
func TestObserver(t *testing.T) {
	t.Parallel()
	obs := &eventLog{}
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.Observer = obs
		o.ReauthGrace = 5 * time.Second
		o.BufferMessages = 4
	}})

	// A refused upgrade and a refused token.
	_, err := wstest.Dial(h.url, http.Header{"Origin": {"http://evil.example"}})
	require.Error(t, err)
	h.authFails(t, h.idp.Token("x", -time.Minute), "token expired")
	assert.Equal(t, 1, obs.count(wsauth.Refused, func(e wsauth.Event) bool { return e.Reason == "origin" && e.Status == 403 }))
	assert.Equal(t, 1, obs.count(wsauth.Verified, func(e wsauth.Event) bool { return e.Stage == "auth" && e.Reason == "token expired" }))

	// A session: messages in and out, a reauth cycle with its lag.
	c, _ := h.loginT(t, h.idp.Token("ann", time.Minute))
	assert.Equal(t, 1, obs.inState(session.Active))
	require.NoError(t, c.WriteText(`{"type":"message","data":1}`))
	h.nextMessageT(t)
	sendTo(t, h, "ann", "1")
	readType(t, c, "message")
	h.clock.Advance(30 * time.Second) // reauth_required
	readType(t, c, "reauth_required")
	h.clock.Advance(3 * time.Second)
	require.NoError(t, c.Auth(h.idp.Token("ann", time.Hour)))
	readType(t, c, "auth_ok")
	assert.Equal(t, 1, obs.count(wsauth.Received, nil))
	assert.Equal(t, 1, obs.sum(wsauth.Sent, func(e wsauth.Event) int { return e.N }))
	lags := obs.sum(wsauth.Reauthenticated, func(e wsauth.Event) int { return int(e.Took / time.Second) })
	assert.Equal(t, 3, lags, "reauth_required to auth_ok")
	assert.Equal(t, 1, obs.count(wsauth.Verified, func(e wsauth.Event) bool { return e.Stage == "reauth" && e.Reason == "" }))

	// Overflow while expired: undelivered messages, a 4413.
	d, _ := h.loginT(t, h.idp.Token("bo", time.Minute))
	h.clock.Advance(time.Minute)
	readType(t, d, "reauth_required")
	for i := range 5 {
		_, _ = h.srv.SendToPrincipals(context.Background(), json.RawMessage(`1`), h.p("bo"))
		_ = i
	}
	h.expectClose(d, protocol.CloseBufferOverflow, "buffer overflow")
	assert.Equal(t, 1, obs.count(wsauth.Overflowed, nil))
	assert.Equal(t, 5, obs.sum(wsauth.Undelivered, func(e wsauth.Event) int { return e.N }))
	assert.Equal(t, 1, obs.count(wsauth.Closed, func(e wsauth.Event) bool { return e.Code == protocol.CloseBufferOverflow }))

	c.Close()
	require.Eventually(t, func() bool {
		return obs.inState(session.Active)+obs.inState(session.Expired)+obs.inState(session.Pending) == 0
	},
		5*time.Second, 5*time.Millisecond, "the state gauges come back to zero")
	assert.Zero(t, obs.sum(wsauth.Queued, func(e wsauth.Event) int { return e.N }), "queued messages come back to zero")
	assert.Zero(t, obs.sum(wsauth.Queued, func(e wsauth.Event) int { return e.Bytes }), "queued bytes come back to zero")
	assert.Equal(t, "refused", wsauth.Refused.String())
}
