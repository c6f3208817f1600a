package jwks_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/session"
	"github.com/wsauth/wsauth/wsauthtest"
)

// setClock is a fake clock that, unlike wsauthtest.Clock, may be set
// backwards, as a system clock stepped back by NTP is.
type setClock struct{ ns atomic.Int64 }

func newSetClock(t time.Time) *setClock {
	c := &setClock{}
	c.Set(t)
	return c
}

func (c *setClock) Now() time.Time  { return time.Unix(0, c.ns.Load()) }
func (c *setClock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// cachedVerifier is a Verifier of p's tokens with a token cache of size.
func cachedVerifier(t *testing.T, p *wsauthtest.IdP, size int, now func() time.Time, leeway time.Duration) *jwks.Verifier {
	t.Helper()
	return newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now, Leeway: leeway, TokenCacheSize: size})
}

// verifyCounting verifies token and reports whether v checked a signature
// to do it (false: the cache answered).
func verifyCounting(t *testing.T, v *jwks.Verifier, token string) (session.Identity, bool, error) {
	t.Helper()
	before := jwks.SignatureChecks(v)
	id, err := v.Verify(t.Context(), token)
	checked := jwks.SignatureChecks(v) - before
	require.LessOrEqual(t, checked, int64(1))
	return id, checked == 1, err
}

// TestTokenCacheHit: a token verified before is answered from the cache,
// with the same identity and no signature check; without a cache, or for
// another token, the signature is checked again.
func TestTokenCacheHit(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{"RS256", "ES256", "EdDSA", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			now := wsauthtest.NewClock(t0)
			p := idpAt(t, alg, now)
			token := p.Token("alice", time.Hour)
			for _, size := range []int{0, 8} {
				t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
					v := cachedVerifier(t, p, size, now.Now, 0)
					first, checked, err := verifyCounting(t, v, token)
					require.NoError(t, err)
					require.True(t, checked, "first verification")
					fetches := p.Fetches()

					for range 3 {
						again, checked, err := verifyCounting(t, v, token)
						require.NoError(t, err)
						assert.Equal(t, first, again)
						assert.Equal(t, size == 0, checked, "checked the signature again")
					}
					assert.Equal(t, fetches, p.Fetches(), "no JWKS fetch")

					_, checked, err = verifyCounting(t, v, p.Token("bob", time.Hour))
					require.NoError(t, err)
					assert.True(t, checked, "another token")
				})
			}
		})
	}
}

// TestTokenCacheTimes: a hit enforces exp and nbf on Options.Now with
// Leeway exactly as a fresh verification does (see TestVerifyTimeBoundaries),
// including after the clock was stepped back. A hit that fails is
// verified afresh and gets the fresh error, and is not cached; a later
// valid time caches the token again.
func TestTokenCacheTimes(t *testing.T) {
	t.Parallel()
	p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Algorithm: "ES256"})
	exp := t0.Add(time.Hour)
	nbf := t0.Add(time.Minute)
	token := p.Sign(jwt.MapClaims{"iss": p.Issuer(), "aud": p.Audience(), "sub": "alice", "nbf": nbf.Unix(), "exp": exp.Unix()})

	tests := []struct {
		name   string
		leeway time.Duration
		at     time.Time // verified fresh, and cached, at
		then   time.Time // presented again at
		want   error     // nil: valid
	}{
		{"1ns before exp", 0, nbf, exp.Add(-time.Nanosecond), nil},
		{"at exp", 0, nbf, exp, jwt.ErrTokenExpired},
		{"long after exp", 0, nbf, exp.Add(24 * time.Hour), jwt.ErrTokenExpired},
		{"leeway 1s: 1ns before exp+1s", time.Second, nbf, exp.Add(time.Second - time.Nanosecond), nil},
		{"leeway 1s: at exp+1s", time.Second, nbf, exp.Add(time.Second), jwt.ErrTokenExpired},
		{"clock back to nbf", 0, nbf.Add(time.Minute), nbf, nil},
		{"clock back to 1ns before nbf", 0, nbf.Add(time.Minute), nbf.Add(-time.Nanosecond), jwt.ErrTokenNotValidYet},
		{"leeway 1s: clock back to nbf-1s", time.Second, nbf, nbf.Add(-time.Second), nil},
		{"leeway 1s: clock back to 1ns before nbf-1s", time.Second, nbf, nbf.Add(-time.Second - time.Nanosecond), jwt.ErrTokenNotValidYet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newSetClock(tt.at)
			v := cachedVerifier(t, p, 8, clock.Now, tt.leeway)
			_, checked, err := verifyCounting(t, v, token)
			require.NoError(t, err)
			require.True(t, checked)
			require.Equal(t, 1, jwks.CacheLen(v))

			clock.Set(tt.then)
			for i := range 2 {
				_, checked, err = verifyCounting(t, v, token)
				if tt.want == nil {
					require.NoError(t, err)
					assert.False(t, checked, "call %d: a hit", i)
					continue
				}
				require.ErrorIs(t, err, tt.want, "call %d", i)
				assert.True(t, checked, "call %d: verified afresh", i)
				assert.Zero(t, jwks.CacheLen(v), "call %d: the failing token left the cache", i)
			}
			if tt.want == nil {
				return
			}
			// The same error as a Verifier without a cache gives.
			fresh := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: clock.Now, Leeway: tt.leeway})
			_, freshErr := fresh.Verify(t.Context(), token)
			assert.Equal(t, freshErr.Error(), err.Error())
			assert.Equal(t, jwks.Reason(freshErr), jwks.Reason(err))

			clock.Set(tt.at)
			_, checked, err = verifyCounting(t, v, token)
			require.NoError(t, err)
			assert.True(t, checked, "back in range: verified afresh")
			_, checked, err = verifyCounting(t, v, token)
			require.NoError(t, err)
			assert.False(t, checked, "and cached again")
		})
	}
}

// TestTokenCacheKeyChanges: a hit holds only while the key that verified
// the token is published under its kid; a refetch that keeps the key
// keeps the hits.
func TestTokenCacheKeyChanges(t *testing.T) {
	t.Parallel()
	// other publishes a key of its own under the kid of p's first key.
	impostorSet := func(p, other *wsauthtest.IdP, kid string) []byte {
		return []byte(strings.ReplaceAll(string(other.JWKS()), other.KID(), kid))
	}
	tests := []struct {
		name string
		// change changes p's published set, then makes v refetch it.
		change func(t *testing.T, p *wsauthtest.IdP, now *wsauthtest.Clock, v *jwks.Verifier, kid string)
		want   error // nil: the cached token still passes, without a check
	}{
		{"refetch keeps the key", func(t *testing.T, p *wsauthtest.IdP, now *wsauthtest.Clock, v *jwks.Verifier, kid string) {
			p.Rotate()
			refetch(t, p, now, v, p.Token("carol", time.Hour), nil)
		}, nil},
		{"key retired", func(t *testing.T, p *wsauthtest.IdP, now *wsauthtest.Clock, v *jwks.Verifier, kid string) {
			p.Rotate()
			p.Retire(kid)
			refetch(t, p, now, v, p.Token("carol", time.Hour), nil)
		}, jwks.ErrUnknownKID},
		{"another key under the same kid", func(t *testing.T, p *wsauthtest.IdP, now *wsauthtest.Clock, v *jwks.Verifier, kid string) {
			other := idpAt(t, "RS256", now)
			p.SetBody(impostorSet(p, other, kid))
			refetch(t, p, now, v, p.SignWith(nil, nil, map[string]any{"kid": "nobody"}, claimsAt(p, now.Now())), jwks.ErrUnknownKID)
		}, jwt.ErrTokenSignatureInvalid},
		{"same key, its alg changed", func(t *testing.T, p *wsauthtest.IdP, now *wsauthtest.Clock, v *jwks.Verifier, kid string) {
			p.SetBody([]byte(strings.ReplaceAll(string(p.JWKS()), `"RS256"`, `"PS256"`)))
			refetch(t, p, now, v, p.SignWith(nil, nil, map[string]any{"kid": "nobody"}, claimsAt(p, now.Now())), jwks.ErrUnknownKID)
		}, jwks.ErrAlgorithm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := wsauthtest.NewClock(t0)
			p := idpAt(t, "RS256", now)
			v := cachedVerifier(t, p, 8, now.Now, 0)
			kid := p.KID()
			token := p.Token("alice", time.Hour)
			_, checked, err := verifyCounting(t, v, token)
			require.NoError(t, err)
			require.True(t, checked)

			tt.change(t, p, now, v, kid)
			_, checked, err = verifyCounting(t, v, token)
			if tt.want == nil {
				require.NoError(t, err)
				assert.False(t, checked, "a hit")
				return
			}
			require.ErrorIs(t, err, tt.want)
			_, checked, err = verifyCounting(t, v, token)
			require.ErrorIs(t, err, tt.want, "again")
			// An unknown kid or a wrong alg is refused before the signature
			// is checked.
			assert.Equal(t, tt.want == jwt.ErrTokenSignatureInvalid, checked, "verified afresh, not cached")
		})
	}
}

// refetch makes v fetch p's set again with a token of an unknown kid,
// which Verify then accepts (want nil) or refuses with want.
func refetch(t *testing.T, p *wsauthtest.IdP, now *wsauthtest.Clock, v *jwks.Verifier, token string, want error) {
	t.Helper()
	now.Advance(jwks.DefaultUnknownKIDRate)
	fetches := p.Fetches()
	_, err := v.Verify(t.Context(), token)
	if want == nil {
		require.NoError(t, err)
	} else {
		require.ErrorIs(t, err, want)
	}
	require.Equal(t, fetches+1, p.Fetches(), "refetched")
}

// TestTokenCachePeriodicRefresh: the background refresh rebuilds the index
// of keys; hits survive it while the key stays, and end when it goes.
func TestTokenCachePeriodicRefresh(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "EdDSA", now)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now,
		RefreshInterval: 5 * time.Millisecond, TokenCacheSize: 4})
	token := p.Token("alice", time.Hour)
	_, err := v.Verify(t.Context(), token)
	require.NoError(t, err)
	fetches := p.Fetches()
	require.Eventually(t, func() bool { return p.Fetches() >= fetches+3 }, 5*time.Second, time.Millisecond)
	_, checked, err := verifyCounting(t, v, token)
	require.NoError(t, err)
	assert.False(t, checked, "a hit after refreshes of the same set")

	kid := p.KID()
	p.Rotate()
	p.Retire(kid)
	require.Eventually(t, func() bool {
		_, err := v.Verify(t.Context(), token)
		return err != nil
	}, 5*time.Second, time.Millisecond, "the refresh goroutine drops the key, and the hit")
	_, err = v.Verify(t.Context(), token)
	require.ErrorIs(t, err, jwks.ErrUnknownKID)
}

// TestTokenCacheOnlySuccesses: refused tokens are never cached, whatever
// the reason: each presentation is checked again.
func TestTokenCacheOnlySuccesses(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	v := cachedVerifier(t, p, 8, now.Now, 0)
	with := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := claimsAt(p, t0)
		change(c)
		return c
	}
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"expired", p.Sign(with(func(c jwt.MapClaims) { c["exp"] = t0.Unix() })), jwt.ErrTokenExpired},
		{"not valid yet", p.Sign(with(func(c jwt.MapClaims) { c["nbf"] = t0.Unix() + 1 })), jwt.ErrTokenNotValidYet},
		{"wrong aud", p.Sign(with(func(c jwt.MapClaims) { c["aud"] = "other" })), jwt.ErrTokenInvalidAudience},
		{"bad signature", p.Sign(claimsAt(p, t0)) + "A", jwt.ErrTokenSignatureInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 3 {
				_, checked, err := verifyCounting(t, v, tt.token)
				require.ErrorIs(t, err, tt.want)
				assert.True(t, checked)
			}
		})
	}
	assert.Zero(t, jwks.CacheLen(v))
}

// TestTokenCacheEviction: the cache never holds more than TokenCacheSize
// tokens; a full cache evicts an expired token first, then one not
// presented again since the eviction hand last passed it.
func TestTokenCacheEviction(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)

	tokens := make([]string, 12)
	for i := range tokens {
		tokens[i] = p.Token(fmt.Sprint("user-", i), time.Hour)
	}
	// hits reports which tokens the cache answers, checking the others
	// afresh (which caches them in turn: a later token can evict an
	// earlier one). The answer is one letter per token: h for a hit.
	hits := func(t *testing.T, v *jwks.Verifier, idx ...int) string {
		var b strings.Builder
		for _, i := range idx {
			_, checked, err := verifyCounting(t, v, tokens[i])
			require.NoError(t, err)
			if checked {
				b.WriteByte('-')
			} else {
				b.WriteByte('h')
			}
		}
		return b.String()
	}

	t.Run("bounded", func(t *testing.T) {
		v := cachedVerifier(t, p, 3, now.Now, 0)
		for i := range tokens {
			hits(t, v, i)
			assert.LessOrEqual(t, jwks.CacheLen(v), 3)
		}
		assert.Equal(t, 3, jwks.CacheLen(v))
		assert.Equal(t, "hhh", hits(t, v, 9, 10, 11), "the last three stayed")
	})
	t.Run("second chance", func(t *testing.T) {
		v := cachedVerifier(t, p, 3, now.Now, 0)
		assert.Equal(t, "---", hits(t, v, 0, 1, 2))
		assert.Equal(t, "h", hits(t, v, 0), "0 presented again")
		assert.Equal(t, "-", hits(t, v, 3), "evicts 1, the oldest not presented again")
		assert.Equal(t, "hhh", hits(t, v, 0, 2, 3))
		assert.Equal(t, "-", hits(t, v, 1), "1 was evicted")
	})
	t.Run("expired first", func(t *testing.T) {
		now := wsauthtest.NewClock(t0)
		v := cachedVerifier(t, p, 2, now.Now, 0)
		short := p.Sign(jwt.MapClaims{"iss": p.Issuer(), "aud": p.Audience(), "sub": "bob", "exp": t0.Add(time.Minute).Unix()})
		_, err := v.Verify(t.Context(), short)
		require.NoError(t, err)
		_, err = v.Verify(t.Context(), short) // presented again: second chance
		require.NoError(t, err)
		assert.Equal(t, "-", hits(t, v, 0))
		now.Advance(time.Minute)
		assert.Equal(t, "-", hits(t, v, 1), "evicts the expired token, not 0")
		assert.Equal(t, "hh", hits(t, v, 0, 1))
		assert.Equal(t, 2, jwks.CacheLen(v))
	})
}

// TestTokenCacheDistinctTokens: tokens differing in a claim, in one
// character of the signature or only in their encoding are told apart.
func TestTokenCacheDistinctTokens(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "RS256", now)
	v := cachedVerifier(t, p, 256, now.Now, 0)

	const n = 50
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = p.Token(fmt.Sprint("user-", i), time.Hour)
	}
	for round := range 2 {
		for i, tok := range tokens {
			id, checked, err := verifyCounting(t, v, tok)
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprint("user-", i), id.Subject)
			assert.Equal(t, round == 0, checked, "round %d, token %d", round, i)
		}
	}
	assert.Equal(t, n, jwks.CacheLen(v))

	// A cached token with one character of its signature changed is
	// another token.
	tampered := []byte(tokens[0])
	if i := len(tampered) - 5; tampered[i] == 'A' {
		tampered[i] = 'B'
	} else {
		tampered[i] = 'A'
	}
	for range 2 {
		_, checked, err := verifyCounting(t, v, string(tampered))
		require.ErrorIs(t, err, jwt.ErrTokenSignatureInvalid)
		assert.True(t, checked)
	}
	// So is one with a changed claim, keeping the signature.
	parts := strings.Split(tokens[1], ".")
	forged := tamperClaims(t, parts[1], func(c map[string]any) { c["sub"] = "admin" })
	_, err := v.Verify(t.Context(), parts[0]+"."+forged+"."+parts[2])
	require.ErrorIs(t, err, jwt.ErrTokenSignatureInvalid)
}

// tamperClaims decodes a token's payload segment, changes it and encodes
// it again.
func tamperClaims(t *testing.T, seg string, change func(map[string]any)) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	require.NoError(t, err)
	var c map[string]any
	require.NoError(t, json.Unmarshal(raw, &c))
	change(c)
	raw, err = json.Marshal(c)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// TestTokenCacheIdentityCopy: the identity a hit returns is the caller's:
// changing it, nested claims included, changes neither the cache nor the
// identity of another call. The identity of the first, fresh verification
// is the caller's too.
func TestTokenCacheIdentityCopy(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	v := cachedVerifier(t, p, 8, now.Now, 0)
	claims := claimsAt(p, t0)
	claims["aud"] = []string{p.Audience(), "other"}
	claims["groups"] = []any{"admins", map[string]any{"team": "blue", "ids": []any{1, 2}}}
	claims["org"] = map[string]any{"name": "acme", "roles": []any{"owner"}}
	token := p.Sign(claims)

	scribble := func(id session.Identity) {
		id.Audience[0] = "scribbled"
		id.Claims["sub"] = "mallory"
		id.Claims["extra"] = true
		groups := id.Claims["groups"].([]any)
		groups[0] = "scribbled"
		nested := groups[1].(map[string]any)
		nested["team"] = "red"
		nested["ids"].([]any)[0] = 99.0
		org := id.Claims["org"].(map[string]any)
		org["name"] = "evil"
		org["roles"].([]any)[0] = "nobody"
		delete(org, "roles")
	}
	first, err := v.Verify(t.Context(), token)
	require.NoError(t, err)
	want, err := json.Marshal(first.Claims)
	require.NoError(t, err)
	wantAud := append([]string(nil), first.Audience...)
	scribble(first)

	for range 3 {
		id, checked, err := verifyCounting(t, v, token)
		require.NoError(t, err)
		require.False(t, checked)
		got, err := json.Marshal(id.Claims)
		require.NoError(t, err)
		assert.JSONEq(t, string(want), string(got))
		assert.Equal(t, wantAud, id.Audience)
		assert.Equal(t, "alice", id.Subject)
		scribble(id)
	}
}

// TestTokenCacheClose: after Close, a cached token fails like any other.
func TestTokenCacheClose(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	v := cachedVerifier(t, p, 8, now.Now, 0)
	token := p.Token("alice", time.Hour)
	_, err := v.Verify(t.Context(), token)
	require.NoError(t, err)
	v.Close()
	_, err = v.Verify(t.Context(), token)
	require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
	assert.Zero(t, jwks.CacheLen(v))
}

// TestTokenCacheIssuers: two issuers, tokens of both cached; a key retired
// by one ends only that issuer's hits.
func TestTokenCacheIssuers(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	a := idpAt(t, "RS256", now)
	b := idpAt(t, "ES256", now)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(a), issuerOf(b)}, Now: now.Now, TokenCacheSize: 8})
	ta, tb := a.Token("alice", time.Hour), b.Token("bob", time.Hour)
	for _, tok := range []string{ta, tb} {
		_, err := v.Verify(t.Context(), tok)
		require.NoError(t, err)
	}
	kid := a.KID()
	a.Rotate()
	a.Retire(kid)
	refetch(t, a, now, v, a.Token("carol", time.Hour), nil)

	_, err := v.Verify(t.Context(), ta)
	require.ErrorIs(t, err, jwks.ErrUnknownKID)
	id, checked, err := verifyCounting(t, v, tb)
	require.NoError(t, err)
	assert.False(t, checked)
	assert.Equal(t, "bob", id.Subject)
}

// TestTokenCacheConcurrent runs Verify from many goroutines over more
// tokens than the cache holds, valid and refused ones, while the callers
// scribble on what they get and the set is refetched (run with -race).
func TestTokenCacheConcurrent(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now,
		RefreshInterval: time.Millisecond, TokenCacheSize: 8})
	const n = 24
	tokens := make([]string, n)
	for i := range tokens {
		ttl := time.Hour
		if i%4 == 3 {
			ttl = -time.Second // expired
		}
		tokens[i] = p.Token(fmt.Sprint("user-", i), ttl)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for j := range 300 {
				i := (g*7 + j) % n
				if j%2 == 0 {
					i = j / 2 % 4 // a few hot tokens, one of them expired
				}
				id, err := v.Verify(context.Background(), tokens[i])
				if i%4 == 3 {
					assert.ErrorIs(t, err, jwt.ErrTokenExpired)
					continue
				}
				if !assert.NoError(t, err) {
					return
				}
				assert.Equal(t, fmt.Sprint("user-", i), id.Subject)
				assert.Equal(t, fmt.Sprint("user-", i), id.Claims["sub"])
				id.Claims["sub"] = "scribbled"
				id.Audience[0] = "scribbled"
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, jwks.CacheLen(v), 8)
	assert.Less(t, jwks.SignatureChecks(v), int64(8*300), "some hits")
}
