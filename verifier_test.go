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

// namedError is a custom Verifier's error that names its close reason.
type namedError struct{ reason string }

func (e namedError) Error() string       { return "custom verifier: " + e.reason }
func (e namedError) CloseReason() string { return e.reason }

// TestVerifierCloseReason: the root package knows no verifier, so a custom
// Verifier names the failed check for the client through a CloseReason
// method anywhere in its error's chain; a reason that could not go on the
// wire, and an error without one, give "invalid token".
func TestVerifierCloseReason(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"named", namedError{"account locked"}, "account locked"},
		{"wrapped", fmt.Errorf("lookup: %w", namedError{"unknown tenant"}), "unknown tenant"},
		{"joined", errors.Join(errors.New("first"), namedError{"second named"}), "second named"},
		{"plain error", errors.New("db down: user alice"), "invalid token"},
		{"empty reason", namedError{""}, "invalid token"},
		{"reason too long for a close frame", namedError{strings.Repeat("x", protocol.MaxReasonLen+1)}, "invalid token"},
		{"reason longest allowed", namedError{strings.Repeat("y", protocol.MaxReasonLen)}, strings.Repeat("y", protocol.MaxReasonLen)},
		{"reason not UTF-8", namedError{"bad \xff"}, "invalid token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v := verifierFunc(func(context.Context, string) (wsauth.Identity, error) { return wsauth.Identity{}, c.err })
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
			cl, _, err := conn.ReadClose()
			require.NoError(t, err)
			assert.Equal(t, wstest.Close{Code: int(protocol.CloseUnauthorized), Reason: c.want}, cl)
			assert.Equal(t, c.want, (<-closed).Reason)
		})
	}
}
