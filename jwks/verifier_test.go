package jwks_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/wsauthtest"
)

func TestVerifyValid(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{"RS256", "ES256", "EdDSA", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			now := wsauthtest.NewClock(t0)
			p := idpAt(t, alg, now)
			v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now})

			id, err := v.Verify(t.Context(), p.Token("alice", time.Hour))
			require.NoError(t, err)
			assert.Equal(t, "alice", id.Subject)
			assert.Equal(t, p.Issuer(), id.Issuer)
			assert.Equal(t, []string{p.Audience()}, id.Audience)
			assert.True(t, id.ExpiresAt.Equal(t0.Add(time.Hour)), "ExpiresAt %v", id.ExpiresAt)
			assert.True(t, id.IssuedAt.Equal(t0), "IssuedAt %v", id.IssuedAt)
			assert.Equal(t, "alice", id.Claims["sub"])
			assert.Contains(t, id.Claims, "nbf")
		})
	}
}

// TestVerifyRejects runs hostile and broken tokens against one verifier
// whose allowlist is RS256 and PS256.
func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "RS256", now)
	v := newVerifier(t, jwks.Options{
		Issuers:    []jwks.Issuer{issuerOf(p)},
		Algorithms: []string{"RS256", "PS256"},
		Now:        now.Now,
	})
	with := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := claimsAt(p, t0)
		change(c)
		return c
	}
	valid := p.Sign(claimsAt(p, t0))
	parts := strings.Split(valid, ".")
	forged := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"` + p.Issuer() + `","aud":"` + p.Audience() +
		`","sub":"mallory","exp":` + jsonNum(t0.Add(time.Hour).Unix()) + `}`))

	tests := []struct {
		name   string
		token  string
		want   []error
		reason string
	}{
		{"alg none", p.SignWith(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, claimsAt(p, t0)),
			[]error{jwks.ErrAlgorithm}, "algorithm not allowed"},
		{"HS256 keyed with the public key PEM", p.SignWith(jwt.SigningMethodHS256, p.PublicKeyPEM(), nil, claimsAt(p, t0)),
			[]error{jwks.ErrAlgorithm}, "algorithm not allowed"},
		{"alg outside the allowlist", p.SignWith(jwt.SigningMethodRS512, nil, nil, claimsAt(p, t0)),
			[]error{jwks.ErrAlgorithm}, "algorithm not allowed"},
		{"alg unknown to jwt", p.SignWith(nil, nil, map[string]any{"alg": "XX999"}, claimsAt(p, t0)),
			[]error{jwks.ErrAlgorithm, jwt.ErrTokenUnverifiable}, "algorithm not allowed"},
		{"alg allowed but not the key's", p.SignWith(jwt.SigningMethodPS256, nil, nil, claimsAt(p, t0)),
			[]error{jwks.ErrAlgorithm}, "algorithm not allowed"},
		{"missing kid", p.SignWith(nil, nil, map[string]any{"kid": nil}, claimsAt(p, t0)),
			[]error{jwks.ErrMissingKID}, "missing kid"},
		{"empty kid", p.SignWith(nil, nil, map[string]any{"kid": ""}, claimsAt(p, t0)),
			[]error{jwks.ErrMissingKID}, "missing kid"},
		{"numeric kid", p.SignWith(nil, nil, map[string]any{"kid": 7}, claimsAt(p, t0)),
			[]error{jwks.ErrMissingKID}, "missing kid"},
		{"unknown kid", p.SignWith(nil, nil, map[string]any{"kid": "kid-nobody-published"}, claimsAt(p, t0)),
			[]error{jwks.ErrUnknownKID}, "unknown key"},
		{"expired", p.Sign(with(func(c jwt.MapClaims) { c["exp"] = t0.Unix() - 1 })),
			[]error{jwt.ErrTokenExpired, jwt.ErrTokenInvalidClaims}, "token expired"},
		{"nbf in the future", p.Sign(with(func(c jwt.MapClaims) { c["nbf"] = t0.Unix() + 60 })),
			[]error{jwt.ErrTokenNotValidYet, jwt.ErrTokenInvalidClaims}, "token not valid yet"},
		{"no exp", p.Sign(with(func(c jwt.MapClaims) { delete(c, "exp") })),
			[]error{jwks.ErrMissingExp, jwt.ErrTokenRequiredClaimMissing}, "missing exp"},
		{"exp not a number", p.Sign(with(func(c jwt.MapClaims) { c["exp"] = "tomorrow" })),
			[]error{jwt.ErrTokenMalformed, jwt.ErrInvalidType}, "malformed token"},
		// jwt reads exp 0 as no exp at all; it names 1970-01-01.
		{"exp 0", p.Sign(with(func(c jwt.MapClaims) { c["exp"] = 0 })),
			[]error{jwt.ErrTokenExpired, jwt.ErrTokenInvalidClaims}, "token expired"},
		{"exp 0, no aud", p.Sign(with(func(c jwt.MapClaims) { c["exp"] = 0; delete(c, "aud") })),
			[]error{jwt.ErrTokenExpired, jwt.ErrTokenInvalidClaims}, "token expired"},
		{"exp 0.5", p.Sign(with(func(c jwt.MapClaims) { c["exp"] = 0.5 })),
			[]error{jwt.ErrTokenExpired, jwt.ErrTokenInvalidClaims}, "token expired"},
		// NumericDates outside [0, 9999-12-31T23:59:59Z]: jwt converts
		// those past int64 seconds wrongly (nbf 1e19 became "valid since
		// forever").
		{"nbf 1e19", p.Sign(with(func(c jwt.MapClaims) { c["nbf"] = 1e19 })),
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"nbf 2^63", p.Sign(with(func(c jwt.MapClaims) { c["nbf"] = 9223372036854775808.0 })),
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"nbf 9.2e18: within int64, past time.Time's reach", p.Sign(with(func(c jwt.MapClaims) { c["nbf"] = 9.2e18 })),
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"nbf in year 10000", p.Sign(with(func(c jwt.MapClaims) { c["nbf"] = 253402300800 })),
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"nbf -1e19", p.Sign(with(func(c jwt.MapClaims) { c["nbf"] = -1e19 })),
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"nbf negative", p.Sign(with(func(c jwt.MapClaims) { c["nbf"] = -1 })),
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"exp 1e19", p.Sign(with(func(c jwt.MapClaims) { c["exp"] = 1e19 })),
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"exp 1e300", p.Sign(with(func(c jwt.MapClaims) { c["exp"] = 1e300 })),
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"exp negative", p.Sign(with(func(c jwt.MapClaims) { c["exp"] = -1.5 })),
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"iat 1e19", p.Sign(with(func(c jwt.MapClaims) { c["iat"] = 1e19 })),
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"iat negative", p.Sign(with(func(c jwt.MapClaims) { c["iat"] = -86400 })),
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"no sub", p.Sign(with(func(c jwt.MapClaims) { delete(c, "sub") })),
			[]error{jwks.ErrMissingSubject, jwt.ErrTokenRequiredClaimMissing}, "missing sub"},
		{"empty sub", p.Sign(with(func(c jwt.MapClaims) { c["sub"] = "" })),
			[]error{jwks.ErrMissingSubject, jwt.ErrTokenRequiredClaimMissing}, "missing sub"},
		{"null sub", p.Sign(with(func(c jwt.MapClaims) { c["sub"] = nil })),
			[]error{jwt.ErrTokenMalformed, jwt.ErrInvalidType}, "malformed token"},
		{"sub not a string", p.Sign(with(func(c jwt.MapClaims) { c["sub"] = 42 })),
			[]error{jwt.ErrTokenMalformed, jwt.ErrInvalidType}, "malformed token"},
		{"wrong iss", p.Sign(with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" })),
			[]error{jwks.ErrUnknownIssuer, jwt.ErrTokenInvalidIssuer}, "unknown issuer"},
		{"no iss", p.Sign(with(func(c jwt.MapClaims) { delete(c, "iss") })),
			[]error{jwks.ErrUnknownIssuer}, "unknown issuer"},
		{"wrong aud", p.Sign(with(func(c jwt.MapClaims) { c["aud"] = "someone-else" })),
			[]error{jwt.ErrTokenInvalidAudience, jwt.ErrTokenInvalidClaims}, "wrong audience"},
		{"no aud", p.Sign(with(func(c jwt.MapClaims) { delete(c, "aud") })),
			[]error{jwt.ErrTokenInvalidAudience, jwt.ErrTokenRequiredClaimMissing}, "wrong audience"},
		{"tampered payload", parts[0] + "." + forged + "." + parts[2],
			[]error{jwt.ErrTokenSignatureInvalid}, "invalid signature"},
		{"signature cut off", parts[0] + "." + parts[1] + ".",
			[]error{jwt.ErrTokenSignatureInvalid}, "invalid signature"},
		{"two segments", parts[0] + "." + parts[1],
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"truncated in the payload", valid[:len(parts[0])+12],
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"huge", p.Sign(with(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 100<<10) })),
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
		{"not a JWT", "hello, world", []error{jwt.ErrTokenMalformed}, "malformed token"},
		{"empty", "", []error{jwt.ErrTokenMalformed}, "malformed token"},
		{"critical extension", p.SignWith(nil, nil, map[string]any{"crit": []string{"exp"}}, claimsAt(p, t0)),
			[]error{jwt.ErrTokenMalformed}, "malformed token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(t.Context(), tt.token)
			require.Error(t, err)
			for _, want := range tt.want {
				assert.ErrorIs(t, err, want)
			}
			assert.Equal(t, tt.reason, jwks.Reason(err))
			assertNoToken(t, err, tt.token)
			assert.NotContains(t, err.Error(), "kid-nobody-published")
		})
	}
}

func jsonNum(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	iss := issuerOf(p)
	iss.Audience = []string{"api-a", "api-b"}
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{iss}, Now: now.Now})
	with := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := claimsAt(p, t0)
		c["aud"] = "api-a"
		change(c)
		return c
	}

	tests := []struct {
		name  string
		token string
	}{
		{"aud is one of ours", p.Sign(with(func(jwt.MapClaims) {}))},
		{"aud is the other of ours", p.Sign(with(func(c jwt.MapClaims) { c["aud"] = "api-b" }))},
		{"aud list holding one of ours", p.Sign(with(func(c jwt.MapClaims) { c["aud"] = []string{"x", "api-b", "y"} }))},
		// iat is not checked: a provider clock running ahead must not
		// break logins (nbf is the claim meant for it).
		{"iat in the future", p.Sign(with(func(c jwt.MapClaims) { c["iat"] = t0.Unix() + 3600 }))},
		{"no iat, no nbf", p.Sign(with(func(c jwt.MapClaims) { delete(c, "iat") }))},
		{"nbf 0, iat 0", p.Sign(with(func(c jwt.MapClaims) { c["nbf"] = 0; c["iat"] = 0 }))},
		{"fractional times", p.Sign(with(func(c jwt.MapClaims) { c["nbf"] = float64(t0.Unix()) - 0.5; c["exp"] = float64(t0.Unix()) + 3600.5 }))},
		{"exp on the last second of year 9999", p.Sign(with(func(c jwt.MapClaims) { c["exp"] = 253402300799 }))},
		{"typ header absent", p.SignWith(nil, nil, map[string]any{"typ": nil}, with(func(jwt.MapClaims) {}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(t.Context(), tt.token)
			require.NoError(t, err)
		})
	}

	_, err := v.Verify(t.Context(), p.Sign(with(func(c jwt.MapClaims) { c["aud"] = []string{"x", "y"} })))
	require.ErrorIs(t, err, jwt.ErrTokenInvalidAudience)
}

// TestVerifyTimeBoundaries pins the exp/nbf semantics documented in the
// package doc: expired when now >= exp+leeway, not yet valid when
// now < nbf-leeway.
func TestVerifyTimeBoundaries(t *testing.T) {
	t.Parallel()
	p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Algorithm: "EdDSA"})
	exp := t0.Add(time.Hour)
	expToken := p.Sign(jwt.MapClaims{"iss": p.Issuer(), "aud": p.Audience(), "sub": "alice", "exp": exp.Unix()})
	nbf := t0
	nbfToken := p.Sign(jwt.MapClaims{"iss": p.Issuer(), "aud": p.Audience(), "sub": "alice", "nbf": nbf.Unix(), "exp": exp.Unix()})

	tests := []struct {
		name   string
		token  string
		leeway time.Duration
		now    time.Time
		want   error // nil: valid
	}{
		{"1ns before exp", expToken, 0, exp.Add(-time.Nanosecond), nil},
		{"at exp", expToken, 0, exp, jwt.ErrTokenExpired},
		{"leeway 1s: 1ns before exp+1s", expToken, time.Second, exp.Add(time.Second - time.Nanosecond), nil},
		{"leeway 1s: at exp+1s", expToken, time.Second, exp.Add(time.Second), jwt.ErrTokenExpired},
		{"at nbf", nbfToken, 0, nbf, nil},
		{"1ns before nbf", nbfToken, 0, nbf.Add(-time.Nanosecond), jwt.ErrTokenNotValidYet},
		{"leeway 1s: at nbf-1s", nbfToken, time.Second, nbf.Add(-time.Second), nil},
		{"leeway 1s: 1ns before nbf-1s", nbfToken, time.Second, nbf.Add(-time.Second - time.Nanosecond), jwt.ErrTokenNotValidYet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, jwks.Options{
				Issuers: []jwks.Issuer{issuerOf(p)},
				Leeway:  tt.leeway,
				Now:     func() time.Time { return tt.now },
			})
			_, err := v.Verify(t.Context(), tt.token)
			if tt.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.want)
			}
		})
	}
}

// TestVerifyIgnoresKeyURLHeaders: jku, x5u and jwk point at an attacker's
// key material; none of it is ever fetched or used.
func TestVerifyIgnoresKeyURLHeaders(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	victim := idpAt(t, "RS256", now)
	attacker := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Issuer: victim.Issuer(), Audience: victim.Audience()})
	attacker.SetNow(now.Now)
	var hits atomic.Int64
	counter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write(attacker.JWKS())
	}))
	t.Cleanup(counter.Close)

	var set struct{ Keys []map[string]any }
	require.NoError(t, json.Unmarshal(attacker.JWKS(), &set))
	hostile := map[string]any{"jku": counter.URL + "/jwks.json", "x5u": counter.URL + "/cert.pem", "jwk": set.Keys[0]}
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(victim)}, Now: now.Now})

	_, err := v.Verify(t.Context(), attacker.SignWith(nil, nil, hostile, claimsAt(victim, t0)))
	require.ErrorIs(t, err, jwks.ErrUnknownKID)
	hostile["kid"] = victim.KID()
	_, err = v.Verify(t.Context(), attacker.SignWith(nil, nil, hostile, claimsAt(victim, t0)))
	require.ErrorIs(t, err, jwt.ErrTokenSignatureInvalid)
	delete(hostile, "kid")
	_, err = v.Verify(t.Context(), victim.SignWith(nil, nil, hostile, claimsAt(victim, t0)))
	require.NoError(t, err, "the headers are ignored, not refused")

	assert.Zero(t, hits.Load(), "requests to the jku/x5u server")
	assert.Zero(t, attacker.Fetches(), "requests to the attacker's JWKS")
}

// TestVerifyIssuerIsolation: each issuer's token is verified with its own
// key set only, even when a kid names a key of the other set.
func TestVerifyIssuerIsolation(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	a := idpAt(t, "RS256", now)
	b := idpAt(t, "RS256", now)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(a), issuerOf(b)}, Now: now.Now})

	_, err := v.Verify(t.Context(), a.Token("alice", time.Hour))
	require.NoError(t, err)
	_, err = v.Verify(t.Context(), b.Token("bob", time.Hour))
	require.NoError(t, err)

	aFetches, bFetches := a.Fetches(), b.Fetches()
	_, err = v.Verify(t.Context(), b.Sign(claimsAt(a, t0)))
	require.ErrorIs(t, err, jwks.ErrUnknownKID, "b's kid on a token claiming a")
	assert.Equal(t, aFetches+1, a.Fetches(), "the unknown kid refetches a's set")
	assert.Equal(t, bFetches, b.Fetches(), "and never b's")

	_, err = v.Verify(t.Context(), b.SignWith(nil, nil, map[string]any{"kid": a.KID()}, claimsAt(a, t0)))
	require.ErrorIs(t, err, jwt.ErrTokenSignatureInvalid, "b's key under a's kid")
	assert.Equal(t, "invalid signature", jwks.Reason(err))
}

func TestVerifySingleIssuerWithoutIss(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	iss := issuerOf(p)
	iss.Issuer = ""
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{iss}, Now: now.Now})

	for _, issClaim := range []any{"https://anything.example/", nil} {
		c := claimsAt(p, t0)
		if issClaim == nil {
			delete(c, "iss")
		} else {
			c["iss"] = issClaim
		}
		_, err := v.Verify(context.Background(), p.Sign(c))
		require.NoError(t, err, "iss %v", issClaim)
	}
}

// TestClaimChecksNeedNoNetwork: the claim checks that need no key refuse a
// token before its kid is looked up, so such a token never triggers an
// unknown-kid refetch, whatever its kid.
func TestClaimChecksNeedNoNetwork(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now})
	tests := []struct {
		name   string
		change func(jwt.MapClaims)
		want   error
		reason string
	}{
		{"no sub", func(c jwt.MapClaims) { delete(c, "sub") }, jwks.ErrMissingSubject, "missing sub"},
		{"empty sub", func(c jwt.MapClaims) { c["sub"] = "" }, jwks.ErrMissingSubject, "missing sub"},
		{"no exp", func(c jwt.MapClaims) { delete(c, "exp") }, jwks.ErrMissingExp, "missing exp"},
		{"nbf 1e19", func(c jwt.MapClaims) { c["nbf"] = 1e19 }, jwt.ErrTokenMalformed, "malformed token"},
		{"exp negative", func(c jwt.MapClaims) { c["exp"] = -1 }, jwt.ErrTokenMalformed, "malformed token"},
		{"wrong iss", func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" }, jwks.ErrUnknownIssuer, "unknown issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := claimsAt(p, t0)
			tt.change(c)
			token := p.SignWith(nil, nil, map[string]any{"kid": "kid-nobody-published"}, c)
			fetches := p.Fetches()
			_, err := v.Verify(t.Context(), token)
			require.ErrorIs(t, err, tt.want)
			assert.Equal(t, tt.reason, jwks.Reason(err))
			assert.Equal(t, fetches, p.Fetches(), "no refetch")
		})
	}
}
