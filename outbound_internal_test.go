package wsauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/wsauthtest"
)

// TestInlineFlushIsBounded checks the read goroutine's share of the writing:
// flushAfterHandler writes what the handler left queued and no more (a
// sender that keeps queueing must not keep the connection from reading);
// the rest goes to a drain job, in order.
func TestInlineFlushIsBounded(t *testing.T) {
	t.Parallel()
	idp := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := jwks.New(ctx, jwks.Options{Issuers: []jwks.Issuer{{
		Issuer: idp.Issuer(), JWKSURL: idp.JWKSURL(), Audience: []string{idp.Audience()},
	}}})
	require.NoError(t, err)
	defer v.Close()
	srv, err := New(Options{Verifier: v})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer func() { require.NoError(t, srv.Shutdown(ctx)) }()

	c, err := wstest.Dial("ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Auth(idp.Token("alice", time.Hour)))
	ok, err := c.ReadJSON()
	require.NoError(t, err)
	s, found := srv.Session(ok["session"].(string))
	require.True(t, found)
	// auth_ok is on the wire before the session stops holding its outbox
	// (the read goroutine lets no message through until then).
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.paused
	}, 5*time.Second, time.Millisecond)

	queued := func() (n int, draining bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.outbox.Len(), s.draining
	}
	next := 0
	expect := func(n int) {
		t.Helper()
		for range n {
			m, err := c.ReadJSON()
			require.NoError(t, err)
			require.Equal(t, float64(next), m["data"])
			next++
		}
	}
	reply := func(n int) {
		t.Helper()
		for i := range n {
			require.NoError(t, s.Reply(json.RawMessage(fmt.Sprint(next+i))))
		}
	}

	// While a handler runs, replies are only queued.
	s.beginHandler()
	reply(3)
	n, draining := queued()
	require.Equal(t, 3, n)
	require.False(t, draining)
	// When it returns, the read goroutine writes them itself.
	assert.Equal(t, 3, s.flushAfterHandler(false))
	n, draining = queued()
	assert.Equal(t, 0, n)
	assert.False(t, draining)
	expect(3)

	// A flush writes at most its limit and hands the rest to a drain job.
	s.beginHandler()
	reply(2*drainBatch + 5)
	s.mu.Lock()
	s.inHandler, s.draining = false, true
	s.mu.Unlock()
	assert.Equal(t, drainBatch+1, s.drainUpTo(drainBatch+1))
	expect(2*drainBatch + 5)

	// With nothing queued, a flush writes nothing.
	s.beginHandler()
	assert.Equal(t, 0, s.flushAfterHandler(false))
}
