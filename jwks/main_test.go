package jwks_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/wsauthtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the fake "now" of most tests, a whole second.
var t0 = time.Unix(1_700_000_000, 0)

// logBuffer collects a Verifier's log output.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var quiet = slog.New(slog.DiscardHandler)

// newVerifier is jwks.New bound to the test: a quiet logger unless opts
// has one, closed at the end of the test.
func newVerifier(t *testing.T, opts jwks.Options) *jwks.Verifier {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	v, err := jwks.New(t.Context(), opts)
	require.NoError(t, err)
	t.Cleanup(v.Close)
	return v
}

// idpAt starts an IdP whose clock is now.
func idpAt(t *testing.T, alg string, now *wsauthtest.Clock) *wsauthtest.IdP {
	t.Helper()
	p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Algorithm: alg})
	p.SetNow(now.Now)
	return p
}

func issuerOf(p *wsauthtest.IdP) jwks.Issuer {
	return jwks.Issuer{Issuer: p.Issuer(), JWKSURL: p.JWKSURL(), Audience: []string{p.Audience()}}
}

// claimsAt are valid claims of p's for a token minted at now.
func claimsAt(p *wsauthtest.IdP, now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": p.Issuer(),
		"aud": p.Audience(),
		"sub": "alice",
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

// assertNoToken checks that err's message holds no part of token.
func assertNoToken(t *testing.T, err error, token string) {
	t.Helper()
	msg := err.Error()
	if token != "" {
		assert.NotContains(t, msg, token)
	}
	for seg := range strings.SplitSeq(token, ".") {
		if len(seg) >= 8 {
			assert.NotContains(t, msg, seg)
		}
	}
}
