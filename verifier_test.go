package wsauth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/protocol"
)

var _ wsauth.Verifier = (*jwks.Verifier)(nil)

// closing is a custom Verifier's refusal: the close the client is told.
func closing(code protocol.CloseCode, reason string) error {
	return fmt.Errorf("custom verifier: %w", &protocol.CloseError{Code: code, Reason: reason})
}

// TestVerifierCloseReason: the root package knows no verifier, so a custom
// Verifier tells the client why through a *protocol.CloseError anywhere in
// its error's chain; a reason that could not go on the wire, and an error
// without one, give 4401 "invalid token"; a code a Verifier may not choose
// becomes 4401.
func TestVerifierCloseReason(t *testing.T) {
	t.Parallel()
	const unauthorized, later = protocol.CloseUnauthorized, protocol.CloseTryAgainLater
	cases := []struct {
		name string
		err  error
		want wstest.Close
	}{
		{"named", closing(unauthorized, "account locked"), wstest.Close{Code: 4401, Reason: "account locked"}},
		{"wrapped twice", fmt.Errorf("lookup: %w", closing(unauthorized, "unknown tenant")), wstest.Close{Code: 4401, Reason: "unknown tenant"}},
		{"joined", errors.Join(errors.New("first"), closing(unauthorized, "second named")), wstest.Close{Code: 4401, Reason: "second named"}},
		{"try again later", closing(later, "directory down"), wstest.Close{Code: 1013, Reason: "directory down"}},
		{"an application code", closing(4321, "upgrade your app"), wstest.Close{Code: 4321, Reason: "upgrade your app"}},
		{"a code a Verifier may not choose", closing(protocol.CloseGoingAway, "bye"), wstest.Close{Code: 4401, Reason: "bye"}},
		{"plain error", errors.New("db down: user alice"), wstest.Close{Code: 4401, Reason: "invalid token"}},
		{"empty reason", closing(unauthorized, ""), wstest.Close{Code: 4401, Reason: "invalid token"}},
		{"reason too long for a close frame", closing(unauthorized, strings.Repeat("x", protocol.MaxReasonLen+1)), wstest.Close{Code: 4401, Reason: "invalid token"}},
		{"reason longest allowed", closing(unauthorized, strings.Repeat("y", protocol.MaxReasonLen)), wstest.Close{Code: 4401, Reason: strings.Repeat("y", protocol.MaxReasonLen)}},
		{"reason not UTF-8", closing(unauthorized, "bad \xff"), wstest.Close{Code: 4401, Reason: "invalid token"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v := verifierFunc(func(context.Context, string) (wsauth.Identity, error) { return wsauth.Identity{}, c.err })
			cl, texts, ce := firstAuthWith(t, v)
			assert.Empty(t, texts)
			assert.Equal(t, c.want, cl)
			assert.Equal(t, c.want, wstest.Close{Code: int(ce.Code), Reason: ce.Reason}, "OnClose")
		})
	}
}

// firstAuthWith runs a server with Verifier v alone, sends it one auth
// frame and returns the close the client got, the texts before it, and
// what OnClose was told.
func firstAuthWith(t *testing.T, v wsauth.Verifier) (wstest.Close, []string, *protocol.CloseError) {
	t.Helper()
	closed := make(chan *protocol.CloseError, 1)
	srv, err := wsauth.New(wsauth.Options{Verifier: v, OnClose: func(_ *wsauth.Session, ce *protocol.CloseError) { closed <- ce }})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer func() { require.NoError(t, srv.Shutdown(context.Background())) }()
	conn, err := wstest.Dial("ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Auth("some.token.here"))
	cl, texts, err := conn.ReadClose()
	require.NoError(t, err)
	var strs []string
	for _, b := range texts {
		strs = append(strs, string(b))
	}
	assert.Zero(t, srv.Len(), "a refused session is not registered")
	return cl, strs, <-closed
}
