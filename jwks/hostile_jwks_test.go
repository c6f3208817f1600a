package jwks_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/flakyjwks"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/wsauthtest"
)

// TestHostileJWKSNotASet: an answer of status 200 whose body is valid JSON
// but no JWK Set (RFC 7517 section 5: "keys" is required and is an array)
// must fail the fetch like garbage does, keeping the keys held.
//
// jwkset alone would decode such a body into a set with no keys and replace
// the held keys with it; capTransport refuses it first. Without that, any
// client could trigger the refetch with one token carrying an unknown kid,
// and a moment of such answers from the identity provider (or a proxy in
// front of it) would lock every user out until a later refetch succeeded.
func TestHostileJWKSNotASet(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{}`, `null`, `{"keys":null}`, `{"kid":"x"}`, `{"keys":[]}`} {
		t.Run(body, func(t *testing.T) {
			t.Parallel()
			now := wsauthtest.NewClock(t0)
			p := idpAt(t, "ES256", now)
			v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now})
			held := p.Token("alice", time.Hour)
			_, err := v.Verify(t.Context(), held)
			require.NoError(t, err)

			p.Rotate()
			p.SetBody([]byte(body))
			fetches := p.Fetches()
			_, err = v.Verify(t.Context(), p.Token("alice", time.Hour))
			assert.Equal(t, fetches+1, p.Fetches(), "the unknown kid made the verifier refetch")
			assert.ErrorIs(t, err, jwks.ErrUnknownKID)
			assert.NotErrorIs(t, err, jwks.ErrKeysUnavailable, "the held keys were dropped")
			_, err = v.Verify(t.Context(), held)
			assert.NoError(t, err, "a body that is no JWK Set replaced the held keys")
		})
	}
}

// jwksWith returns the JWK Set p publishes with change applied to each of
// its keys (as decoded JSON objects).
func jwksWith(t *testing.T, p *wsauthtest.IdP, change func(kid string, key map[string]any)) []byte {
	t.Helper()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(p.JWKS(), &set))
	for _, k := range set.Keys {
		change(k["kid"].(string), k)
	}
	raw, err := json.Marshal(set)
	require.NoError(t, err)
	return raw
}

// TestHostileJWKSNoUsableKey: a JWK Set that holds keys, but none that
// jwkset decodes into a signature verification key, fails the fetch like
// garbage does: the held keys stay, and the failure is logged.
//
// jwkset skips the keys it does not support (an empty object, an unknown
// kty or curve) and would replace the held keys with what is left: an
// empty set, refusing every token with "keys unavailable" until a later
// good fetch, without a word in the log.
func TestHostileJWKSNoUsableKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
	}{
		{"empty key object", `{"keys":[{}]}`},
		{"unknown kty", `{"keys":[{"kty":"XYZ","kid":"x"}]}`},
		{"kty missing", `{"keys":[{"kid":"x","n":"AQAB","e":"AQAB"}]}`},
		{"unsupported EC curve", `{"keys":[{"kty":"EC","crv":"P-192","kid":"x","x":"AQAB","y":"AQAB"}]}`},
		{"Ed448", `{"keys":[{"kty":"OKP","crv":"Ed448","kid":"x","x":"AQAB"}]}`},
		{"X25519: a key agreement key", `{"keys":[{"kty":"OKP","crv":"X25519","kid":"x","x":"` +
			base64.RawURLEncoding.EncodeToString(make([]byte, 32)) + `"}]}`},
		{"oct: a shared secret", `{"keys":[{"kty":"oct","kid":"x","k":"c2VjcmV0"}]}`},
		{"several unusable keys", `{"keys":[{},{"kty":"XYZ"},{"kty":"oct","k":"c2VjcmV0"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := wsauthtest.NewClock(t0)
			p := idpAt(t, "ES256", now)
			var logs logBuffer
			v := newVerifier(t, jwks.Options{
				Issuers: []jwks.Issuer{issuerOf(p)},
				Now:     now.Now,
				Logger:  slog.New(slog.NewJSONHandler(&logs, nil)),
			})
			held := p.Token("alice", time.Hour)
			_, err := v.Verify(t.Context(), held)
			require.NoError(t, err)

			p.Rotate()
			p.SetBody([]byte(tt.body))
			fetches := p.Fetches()
			fresh := p.Token("alice", time.Hour)
			_, err = v.Verify(t.Context(), fresh)
			assert.Equal(t, fetches+1, p.Fetches(), "the unknown kid made the verifier refetch")
			require.ErrorIs(t, err, jwks.ErrUnknownKID)
			assert.NotErrorIs(t, err, jwks.ErrKeysUnavailable, "the held keys were dropped")
			assert.Equal(t, "unknown key", jwks.Reason(err))
			_, err = v.Verify(t.Context(), held)
			require.NoError(t, err, "a set without a usable key replaced the held keys")

			out := logs.String()
			assert.Contains(t, out, `"level":"ERROR"`)
			assert.Contains(t, out, `"issuer":"`+p.Issuer()+`"`)
			assert.Contains(t, out, `"url":"`+p.JWKSURL()+`"`)
			assert.Contains(t, out, "no usable key")
			assert.NotContains(t, out, held)
			assert.NotContains(t, out, fresh)

			// The next good answer is taken as usual.
			p.SetBody(nil)
			now.Advance(jwks.DefaultUnknownKIDRate)
			_, err = v.Verify(t.Context(), fresh)
			require.NoError(t, err)
		})
	}
}

// TestHostileJWKSNoUsableKeyAtStart: when New's fetch brings no usable
// key, the set stays empty (ErrKeysUnavailable) and the failure is logged.
func TestHostileJWKSNoUsableKeyAtStart(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	p.SetBody([]byte(`{"keys":[{}]}`))
	var logs logBuffer
	v := newVerifier(t, jwks.Options{
		Issuers: []jwks.Issuer{issuerOf(p)},
		Now:     now.Now,
		Logger:  slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	assert.Contains(t, logs.String(), "no usable key", "New's fetch is logged")
	_, err := v.Verify(t.Context(), p.Token("alice", time.Hour))
	require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
	assert.Equal(t, "keys unavailable", jwks.Reason(err))
}

// TestHostileJWKSKeyUse: a key published for encryption ("use": "enc"),
// or whose "key_ops" do not include "verify", never verifies a signature
// (RFC 7517 sections 4.2 and 4.3), whether New's fetch or an unknown-kid
// refetch brought it in. Keys marked for signatures, or not marked, do.
func TestHostileJWKSKeyUse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(key map[string]any)
		usable bool
	}{
		{"use sig", func(k map[string]any) { k["use"] = "sig" }, true},
		{"no use", func(k map[string]any) { delete(k, "use") }, true},
		{"key_ops verify", func(k map[string]any) { k["key_ops"] = []string{"verify"} }, true},
		{"key_ops sign and verify", func(k map[string]any) { k["key_ops"] = []string{"sign", "verify"} }, true},
		{"use sig, key_ops verify", func(k map[string]any) { k["use"] = "sig"; k["key_ops"] = []string{"verify"} }, true},
		{"use enc", func(k map[string]any) { k["use"] = "enc" }, false},
		{"use enc, key_ops verify", func(k map[string]any) { k["use"] = "enc"; k["key_ops"] = []string{"verify"} }, false},
		{"key_ops encrypt", func(k map[string]any) { delete(k, "use"); k["key_ops"] = []string{"encrypt"} }, false},
		{"key_ops sign only", func(k map[string]any) { k["key_ops"] = []string{"sign"} }, false},
		{"key_ops empty", func(k map[string]any) { k["key_ops"] = []string{} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			// Brought in by New's fetch: the only key of the set.
			now := wsauthtest.NewClock(t0)
			p := idpAt(t, "RS256", now)
			p.SetBody(jwksWith(t, p, func(_ string, k map[string]any) { tt.change(k) }))
			var logs logBuffer
			v := newVerifier(t, jwks.Options{
				Issuers: []jwks.Issuer{issuerOf(p)},
				Now:     now.Now,
				Logger:  slog.New(slog.NewJSONHandler(&logs, nil)),
			})
			_, err := v.Verify(t.Context(), p.Token("alice", time.Hour))
			if tt.usable {
				require.NoError(t, err, "at New")
			} else {
				require.ErrorIs(t, err, jwks.ErrKeysUnavailable, "at New: a set of unusable keys is no set")
				assert.Contains(t, logs.String(), "no usable key")
			}

			// Brought in by an unknown-kid refetch, next to a usable key.
			p.SetBody(nil)
			now.Advance(jwks.DefaultUnknownKIDRate)
			held := p.Token("alice", time.Hour)
			if !tt.usable {
				_, err = v.Verify(t.Context(), held)
				require.NoError(t, err)
			}
			newKID := p.Rotate()
			p.SetBody(jwksWith(t, p, func(kid string, k map[string]any) {
				if kid == newKID {
					tt.change(k)
				}
			}))
			now.Advance(jwks.DefaultUnknownKIDRate)
			fetches := p.Fetches()
			_, err = v.Verify(t.Context(), p.Token("alice", time.Hour))
			assert.Equal(t, fetches+1, p.Fetches(), "the unknown kid made the verifier refetch")
			if tt.usable {
				require.NoError(t, err, "on refetch")
			} else {
				require.ErrorIs(t, err, jwks.ErrUnknownKID, "on refetch")
				assert.Equal(t, "unknown key", jwks.Reason(err))
			}
			_, err = v.Verify(t.Context(), held)
			require.NoError(t, err, "the usable key next to it")
		})
	}
}

// TestHostileJWKSRedirect: a JWK Set URL that redirects to another origin
// (scheme, host and port), an https one that redirects to http included,
// is refused, so an attacker who can plant a redirect at the provider (an
// open redirect, a compromised proxy) cannot substitute their own keys. A
// redirect within the origin is followed, and a CheckRedirect of the
// caller's HTTPClient still has its say.
func TestHostileJWKSRedirect(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	victim := idpAt(t, "RS256", now)
	attacker := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Issuer: victim.Issuer(), Audience: victim.Audience()})
	attacker.SetNow(now.Now)
	front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/moved-again", http.StatusFound)
		case "/moved-again":
			http.Redirect(w, r, "/jwks.json", http.StatusMovedPermanently)
		case "/jwks.json":
			_, _ = w.Write(victim.JWKS())
		case "/away":
			http.Redirect(w, r, attacker.JWKSURL(), http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	})
	plain := httptest.NewServer(front)
	t.Cleanup(plain.Close)
	tlsSrv := httptest.NewTLSServer(front)
	t.Cleanup(tlsSrv.Close)

	var callerChecks atomic.Int64
	tests := []struct {
		name   string
		url    string
		client func() *http.Client
		ok     bool   // the victim's tokens verify
		log    string // in the log when not ok
		// checks counts the calls to the caller's CheckRedirect, over two
		// fetches: New's, and the refetch the attacker's kid triggers.
		checks int64
	}{
		{"same origin, two hops", plain.URL + "/moved", nil, true, "", 0},
		{"same origin over https", tlsSrv.URL + "/moved", tlsSrv.Client, true, "", 0},
		{"other port", plain.URL + "/away", nil, false, "redirect", 0},
		{"https to http", tlsSrv.URL + "/away", tlsSrv.Client, false, "redirect", 0},
		{"caller's CheckRedirect runs on same-origin redirects", plain.URL + "/moved", func() *http.Client {
			return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { callerChecks.Add(1); return nil }}
		}, true, "", 4},
		{"caller's CheckRedirect may refuse", plain.URL + "/moved", func() *http.Client {
			return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
				callerChecks.Add(1)
				return errors.New("caller refuses redirects")
			}}
		}, false, "caller refuses redirects", 2},
		{"caller's CheckRedirect cannot allow another origin", plain.URL + "/away", func() *http.Client {
			return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { callerChecks.Add(1); return nil }}
		}, false, "redirect", 0},
	}
	for _, tt := range tests {
		// Not parallel: the subtests share callerChecks and attacker's
		// fetch count.
		t.Run(tt.name, func(t *testing.T) {
			callerChecks.Store(0)
			attackerFetches := attacker.Fetches()
			var client *http.Client
			if tt.client != nil {
				client = tt.client()
			}
			var logs logBuffer
			v := newVerifier(t, jwks.Options{
				Issuers:    []jwks.Issuer{{Issuer: victim.Issuer(), JWKSURL: tt.url, Audience: []string{victim.Audience()}}},
				Now:        now.Now,
				HTTPClient: client,
				Logger:     slog.New(slog.NewJSONHandler(&logs, nil)),
			})
			_, err := v.Verify(t.Context(), attacker.Token("mallory", time.Hour))
			require.Error(t, err, "a token signed with the attacker's key")
			_, err = v.Verify(t.Context(), victim.Token("alice", time.Hour))
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
				assert.Contains(t, logs.String(), tt.log)
			}
			assert.Equal(t, attackerFetches, attacker.Fetches(), "requests to the attacker's server")
			assert.Equal(t, tt.checks, callerChecks.Load(), "calls to the caller's CheckRedirect")
		})
	}
}

// TestHostileJWKSFlapping: an identity provider whose every fetch gets
// another answer (good, down, garbage, truncated, no keys, not a set, a
// set of unusable keys, a reset, a hang until the client gives up, a body
// over MaxJWKSBytes),
// refreshed every few milliseconds while tokens are verified. Every
// verification of a held key succeeds, none waits for a hanging fetch,
// every failed fetch is logged without a token, a new key comes in and a
// retired one goes with the next good answer, and no fetch leaves a
// goroutine behind (TestMain's goleak).
func TestHostileJWKSFlapping(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	cycle := []flakyjwks.Answer{flakyjwks.Good, flakyjwks.Down, flakyjwks.Garbage, flakyjwks.Truncated,
		flakyjwks.NoKeys, flakyjwks.NotASet, flakyjwks.Unusable, flakyjwks.Reset, flakyjwks.Hang, flakyjwks.TooLarge}
	f := flakyjwks.New(t, p.JWKSURL(), cycle...)
	stop := make(chan struct{})
	var verified, hangs, hangsWithProgress atomic.Int64
	f.OnHang(func() {
		// Verifications go on while this fetch hangs.
		select {
		case <-stop:
			return
		default:
		}
		hangs.Add(1)
		from := verified.Load()
		for deadline := time.After(5 * time.Second); verified.Load() < from+10; {
			select {
			case <-stop:
				return
			case <-deadline:
				return
			case <-time.After(time.Millisecond):
			}
		}
		hangsWithProgress.Add(1)
	})
	var logs logBuffer
	v := newVerifier(t, jwks.Options{
		Issuers:         []jwks.Issuer{{Issuer: p.Issuer(), JWKSURL: f.URL, Audience: []string{p.Audience()}}},
		Now:             now.Now,
		RefreshInterval: 5 * time.Millisecond,
		HTTPClient:      &http.Client{Timeout: 200 * time.Millisecond},
		MaxJWKSBytes:    flakyjwks.HugePadding / 2,
		Logger:          slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	held := p.Token("alice", time.Hour)
	oldKID := p.KID()

	var failures atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond): // leave the fetches some CPU
				}
				if _, err := v.Verify(t.Context(), held); err != nil {
					if failures.Add(1) == 1 {
						t.Errorf("a held key failed: %v", err)
					}
					continue
				}
				verified.Add(1)
			}
		})
	}
	const rounds = 3
	require.Eventually(t, func() bool { return f.Fetches() > rounds*len(cycle) }, 30*time.Second, time.Millisecond,
		"fetches %d", f.Fetches())
	close(stop)
	wg.Wait()
	t.Logf("%d verifications during %d fetches", verified.Load(), f.Fetches())
	assert.Zero(t, failures.Load(), "verifications of a held key that failed")
	for _, a := range cycle {
		assert.GreaterOrEqual(t, f.Served(a), rounds, "fetches answered %v", a)
	}
	assert.GreaterOrEqual(t, hangs.Load(), int64(rounds-1))
	assert.Equal(t, hangs.Load(), hangsWithProgress.Load(), "hangs during which no verification finished")

	// A new key comes in with a good answer; the held one stays.
	p.Rotate()
	fresh := p.Token("alice", time.Hour)
	require.Eventually(t, func() bool {
		_, err := v.Verify(t.Context(), fresh)
		return err == nil
	}, 10*time.Second, time.Millisecond, "the new key never came in")
	_, err := v.Verify(t.Context(), held)
	require.NoError(t, err)
	// A retired key goes with a good answer.
	p.Retire(oldKID)
	require.Eventually(t, func() bool {
		_, err := v.Verify(t.Context(), held)
		return errors.Is(err, jwks.ErrUnknownKID)
	}, 10*time.Second, time.Millisecond, "the retired key stayed")
	_, err = v.Verify(t.Context(), fresh)
	require.NoError(t, err)

	out := logs.String()
	assert.Contains(t, out, "fetching JWK Set failed")
	assert.NotContains(t, out, held)
	assert.NotContains(t, out, fresh)
}
