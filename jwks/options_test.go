package jwks_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/wsauthtest"
)

// TestNewRefusesOptions: invalid options fail New before any fetch.
func TestNewRefusesOptions(t *testing.T) {
	t.Parallel()
	ok := jwks.Issuer{Issuer: "https://a.example/", JWKSURL: "https://a.example/jwks.json"}
	tests := []struct {
		name string
		opts jwks.Options
		want string
	}{
		{"no issuers", jwks.Options{}, "Issuers is empty"},
		{"no JWKS URL", jwks.Options{Issuers: []jwks.Issuer{{Issuer: "https://a.example/"}}}, "JWKSURL is required"},
		{"file URL", jwks.Options{Issuers: []jwks.Issuer{{Issuer: "x", JWKSURL: "file:///etc/jwks.json"}}}, "scheme must be http or https"},
		{"URL without host", jwks.Options{Issuers: []jwks.Issuer{{Issuer: "x", JWKSURL: "https:///jwks.json"}}}, "no host"},
		{"bad URL", jwks.Options{Issuers: []jwks.Issuer{{Issuer: "x", JWKSURL: "http://a b/%zz"}}}, "JWKSURL"},
		{"empty issuer among several", jwks.Options{Issuers: []jwks.Issuer{ok, {JWKSURL: "https://b.example/jwks"}}}, "only issuer"},
		{"issuer twice", jwks.Options{Issuers: []jwks.Issuer{ok, ok}}, "listed twice"},
		{"alg none", jwks.Options{Issuers: []jwks.Issuer{ok}, Algorithms: []string{"RS256", "none"}}, `"none" refused`},
		{"HS256", jwks.Options{Issuers: []jwks.Issuer{ok}, Algorithms: []string{"HS256"}}, `"HS256" refused`},
		{"HS512", jwks.Options{Issuers: []jwks.Issuer{ok}, Algorithms: []string{"HS512"}}, `"HS512" refused`},
		{"unknown alg", jwks.Options{Issuers: []jwks.Issuer{ok}, Algorithms: []string{"RS257"}}, "unknown algorithm"},
		{"negative leeway", jwks.Options{Issuers: []jwks.Issuer{ok}, Leeway: -time.Second}, "negative Leeway"},
		{"negative refresh", jwks.Options{Issuers: []jwks.Issuer{ok}, RefreshInterval: -1}, "negative RefreshInterval"},
		{"negative kid rate", jwks.Options{Issuers: []jwks.Issuer{ok}, UnknownKIDRate: -1}, "negative UnknownKIDRate"},
		{"negative body cap", jwks.Options{Issuers: []jwks.Issuer{ok}, MaxJWKSBytes: -1}, "negative MaxJWKSBytes"},
		{"negative token cache", jwks.Options{Issuers: []jwks.Issuer{ok}, TokenCacheSize: -1}, "negative TokenCacheSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := jwks.New(t.Context(), tt.opts)
			require.ErrorContains(t, err, tt.want)
			assert.Nil(t, v)
		})
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := jwks.New(ctx, jwks.Options{Issuers: []jwks.Issuer{ok}})
	require.ErrorIs(t, err, context.Canceled)
}

func TestNewCopiesOptions(t *testing.T) {
	t.Parallel()
	p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Algorithm: "EdDSA"})
	opts := jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Algorithms: []string{"EdDSA"}}
	v := newVerifier(t, opts)
	opts.Issuers[0].Audience[0] = "changed"
	opts.Issuers[0].Issuer = "changed"
	opts.Algorithms[0] = "RS256"

	_, err := v.Verify(t.Context(), p.Token("alice", time.Hour))
	require.NoError(t, err)
}
