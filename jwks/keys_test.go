package jwks_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/wsauthtest"
)

// TestUnknownKIDRefetchRate: an unknown kid refetches the set at most once
// per UnknownKIDRate, measured on Options.Now; the others fail at once.
func TestUnknownKIDRefetchRate(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now, UnknownKIDRate: time.Minute})
	require.Equal(t, 1, p.Fetches(), "New fetches once")
	unknown := p.SignWith(nil, nil, map[string]any{"kid": "nobody"}, claimsAt(p, t0))

	_, err := v.Verify(t.Context(), unknown)
	require.ErrorIs(t, err, jwks.ErrUnknownKID)
	assert.Equal(t, 2, p.Fetches(), "first unknown kid refetches")

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, err := v.Verify(t.Context(), unknown)
			assert.ErrorIs(t, err, jwks.ErrUnknownKID)
			_, err = v.Verify(t.Context(), p.Token("alice", time.Hour))
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	assert.Equal(t, 2, p.Fetches(), "no refetch within UnknownKIDRate")

	now.Advance(time.Minute - time.Second)
	_, err = v.Verify(t.Context(), unknown)
	require.ErrorIs(t, err, jwks.ErrUnknownKID)
	assert.Equal(t, 2, p.Fetches(), "still within UnknownKIDRate")

	now.Advance(time.Second)
	for range 3 {
		_, err = v.Verify(t.Context(), unknown)
		require.ErrorIs(t, err, jwks.ErrUnknownKID)
	}
	assert.Equal(t, 3, p.Fetches(), "one refetch once UnknownKIDRate has passed")
}

// TestRotation: a rotated-in key is picked up by the unknown-kid refetch;
// a retired key stops working once a later fetch drops it.
func TestRotation(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "RS256", now)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now})
	old := p.Token("alice", time.Hour)
	oldKID := p.KID()

	p.Rotate()
	_, err := v.Verify(t.Context(), p.Token("alice", time.Hour))
	require.NoError(t, err, "new kid, refetched")
	assert.Equal(t, 2, p.Fetches())
	_, err = v.Verify(t.Context(), old)
	require.NoError(t, err, "old key still published")

	p.Retire(oldKID)
	_, err = v.Verify(t.Context(), old)
	require.NoError(t, err, "cached until the next fetch")

	p.Rotate()
	now.Advance(jwks.DefaultUnknownKIDRate)
	_, err = v.Verify(t.Context(), p.Token("alice", time.Hour))
	require.NoError(t, err, "newest kid, refetched")
	_, err = v.Verify(t.Context(), old)
	require.ErrorIs(t, err, jwks.ErrUnknownKID, "retired key dropped by that fetch")
}

// TestKeyAlgOnRefetch: a JWK's own "alg" binds even for a key that only a
// refetch brought in.
func TestKeyAlgOnRefetch(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "RS256", now)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now})

	p.Rotate()
	_, err := v.Verify(t.Context(), p.SignWith(jwt.SigningMethodPS256, nil, nil, claimsAt(p, t0)))
	require.ErrorIs(t, err, jwks.ErrAlgorithm)
	assert.Equal(t, 2, p.Fetches(), "the key came with the refetch")
	_, err = v.Verify(t.Context(), p.Token("alice", time.Hour))
	require.NoError(t, err)
}

func TestPeriodicRefresh(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "EdDSA", now)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now, RefreshInterval: 10 * time.Millisecond})
	old := p.Token("alice", time.Hour)
	oldKID := p.KID()
	p.Rotate()
	_, err := v.Verify(t.Context(), p.Token("alice", time.Hour))
	require.NoError(t, err) // spends the unknown-kid refetch: now never moves

	p.Retire(oldKID)
	require.Eventually(t, func() bool {
		_, err := v.Verify(t.Context(), old)
		return errors.Is(err, jwks.ErrUnknownKID)
	}, 5*time.Second, 5*time.Millisecond, "the refresh goroutine drops the retired key")
}

// TestJWKSDownAtStart: while an issuer holds no key, its tokens fail with
// ErrKeysUnavailable, which tells clients to retry (1013), and refetches
// back off from 1 s to 5 s instead of waiting out UnknownKIDRate: once the
// provider is back, the next login after the backoff gets in.
func TestJWKSDownAtStart(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	p.SetDown(true)
	var logs logBuffer
	v := newVerifier(t, jwks.Options{
		Issuers: []jwks.Issuer{issuerOf(p)},
		Now:     now.Now,
		Logger:  slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	token := p.Token("alice", time.Hour)

	_, err := v.Verify(t.Context(), token)
	require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
	var ce *protocol.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, protocol.CloseError{Code: protocol.CloseTryAgainLater, Reason: "keys unavailable"}, *ce)
	assert.True(t, ce.Code.Retryable())
	assert.Equal(t, 2, p.Fetches(), "New, then the refetch")
	_, err = v.Verify(t.Context(), token)
	require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
	assert.Equal(t, 2, p.Fetches(), "backing off: 1 s")

	// Still down: the backoff doubles, up to 5 s.
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		now.Advance(wait - time.Millisecond)
		_, err = v.Verify(t.Context(), token)
		require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
		require.Equal(t, 2+i, p.Fetches(), "before the backoff of %v", wait)
		now.Advance(time.Millisecond)
		_, err = v.Verify(t.Context(), token)
		require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
		require.Equal(t, 3+i, p.Fetches(), "after the backoff of %v", wait)
	}

	// Back: the next login after the backoff gets in, long before
	// UnknownKIDRate (5 min).
	p.SetDown(false)
	now.Advance(5 * time.Second)
	_, err = v.Verify(t.Context(), token)
	require.NoError(t, err)
	assert.Equal(t, 8, p.Fetches())

	// With keys held, an unknown kid is rate limited as usual again.
	unknown := p.SignWith(nil, nil, map[string]any{"kid": "nobody"}, claimsAt(p, now.Now()))
	_, err = v.Verify(t.Context(), unknown)
	require.ErrorIs(t, err, jwks.ErrUnknownKID)
	_, err = v.Verify(t.Context(), unknown)
	require.ErrorIs(t, err, jwks.ErrUnknownKID)
	assert.Equal(t, 9, p.Fetches(), "one refetch per UnknownKIDRate")

	out := logs.String()
	assert.Contains(t, out, `"level":"ERROR"`)
	assert.Contains(t, out, `"issuer":"`+p.Issuer()+`"`)
	assert.Contains(t, out, `"url":"`+p.JWKSURL()+`"`)
	assert.Contains(t, out, `"err":"`)
	assert.Contains(t, out, "503")
	assert.NotContains(t, out, token)
}

func TestJWKSDownLater(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "RS256", now)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now})
	token := p.Token("alice", time.Hour)
	_, err := v.Verify(t.Context(), token)
	require.NoError(t, err)

	p.SetDown(true)
	p.Rotate()
	_, err = v.Verify(t.Context(), p.Token("alice", time.Hour))
	require.ErrorIs(t, err, jwks.ErrUnknownKID, "the new key cannot be fetched")
	assert.NotErrorIs(t, err, jwks.ErrKeysUnavailable, "keys are held")
	assert.Equal(t, 2, p.Fetches())
	_, err = v.Verify(t.Context(), token)
	require.NoError(t, err, "cached keys keep working")
}

func TestGarbageJWKS(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	p.SetBody([]byte("<html>not a JWK Set</html>"))
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now})
	token := p.Token("alice", time.Hour)
	_, err := v.Verify(t.Context(), token)
	require.ErrorIs(t, err, jwks.ErrKeysUnavailable)

	p.SetBody(nil)
	now.Advance(jwks.DefaultUnknownKIDRate)
	_, err = v.Verify(t.Context(), token)
	require.NoError(t, err)

	p.SetBody([]byte(`{"keys": [{"kty": "RSA", "n": 1}]}`))
	p.Rotate()
	now.Advance(jwks.DefaultUnknownKIDRate)
	_, err = v.Verify(t.Context(), p.Token("alice", time.Hour))
	require.ErrorIs(t, err, jwks.ErrUnknownKID)
	_, err = v.Verify(t.Context(), token)
	require.NoError(t, err, "a garbage set does not replace the held keys")
}

// TestMaxJWKSBytes serves the IdP's real set padded with JSON whitespace
// to exactly size bytes: valid, but maybe over the cap.
func TestMaxJWKSBytes(t *testing.T) {
	t.Parallel()
	const size = 8 << 10
	tests := []struct {
		name   string
		max    int64
		wantOK bool
	}{
		{"cap well above", 64 << 10, true},
		{"cap exactly the size", size, true},
		{"cap one byte short", size - 1, false},
		{"cap far below", 1 << 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := wsauthtest.NewClock(t0)
			p := idpAt(t, "ES256", now)
			set := p.JWKS()
			padded := append(append(set[:len(set)-1:len(set)-1], bytes.Repeat([]byte(" "), size-len(set))...), '}')
			require.Len(t, padded, size)
			p.SetBody(padded)
			var logs logBuffer
			v := newVerifier(t, jwks.Options{
				Issuers:      []jwks.Issuer{issuerOf(p)},
				Now:          now.Now,
				MaxJWKSBytes: tt.max,
				Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
			})
			_, err := v.Verify(t.Context(), p.Token("alice", time.Hour))
			if tt.wantOK {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
			assert.Contains(t, logs.String(), "larger than MaxJWKSBytes")
		})
	}
}

func TestSlowJWKSBoundedByVerifyContext(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now})
	p.Rotate()
	p.SetDelay(time.Hour)
	token := p.Token("alice", time.Hour)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Verify(ctx, token)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, jwks.ErrUnknownKID)
	assert.Less(t, time.Since(start), 5*time.Second)

	now.Advance(jwks.DefaultUnknownKIDRate)
	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = v.Verify(ctx, token)
	require.ErrorIs(t, err, context.Canceled)

	fetches := p.Fetches()
	now.Advance(jwks.DefaultUnknownKIDRate)
	_, err = v.Verify(ctx, token)
	require.ErrorIs(t, err, context.Canceled, "ctx already done")
	assert.Equal(t, fetches, p.Fetches(), "no fetch for a done ctx")
}

func TestNewWithSlowJWKS(t *testing.T) {
	t.Parallel()
	p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{})
	p.SetDelay(time.Hour)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := jwks.New(ctx, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Logger: quiet})
	require.ErrorIs(t, err, context.DeadlineExceeded, "New's ctx bounds the first fetch")

	start := time.Now()
	v := newVerifier(t, jwks.Options{
		Issuers:    []jwks.Issuer{issuerOf(p)},
		HTTPClient: &http.Client{Timeout: 50 * time.Millisecond},
	})
	assert.Less(t, time.Since(start), 5*time.Second, "the client timeout bounds the first fetch")
	_, err = v.Verify(t.Context(), p.Token("alice", time.Hour))
	require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
}

// TestClose is not parallel: it checks that no goroutine outlives Close.
func TestClose(t *testing.T) {
	p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{})
	ignore := goleak.IgnoreCurrent()
	v, err := jwks.New(context.Background(), jwks.Options{
		Issuers:         []jwks.Issuer{issuerOf(p)},
		RefreshInterval: time.Millisecond,
		Logger:          quiet,
	})
	require.NoError(t, err)
	token := p.Token("alice", time.Hour)
	_, err = v.Verify(t.Context(), token)
	require.NoError(t, err)

	v.Close()
	v.Close()
	_, err = v.Verify(t.Context(), token)
	require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
	goleak.VerifyNone(t, ignore)
}

func TestNewContextEnds(t *testing.T) {
	t.Parallel()
	p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}})
	v2, err := jwks.New(ctx, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Logger: quiet})
	require.NoError(t, err)
	defer v2.Close()
	cancel()
	_, err = v2.Verify(t.Context(), p.Token("alice", time.Hour))
	require.ErrorIs(t, err, jwks.ErrKeysUnavailable, "New's ctx owns the Verifier")
	_, err = v.Verify(t.Context(), p.Token("alice", time.Hour))
	require.NoError(t, err, "other Verifiers are not affected")
}

// TestUnknownKIDRefetchOutlivesCaller: the refetch an unknown kid
// triggers belongs to the Verifier, not to the caller who triggered it. A
// caller whose context ends first (a client sending a token with an
// unknown kid just before its auth deadline) gets its context's error,
// but cannot spend the issuer's refetch on a fetch it aborts: the fetch
// goes on, and a later token signed with the newly published key
// verifies without waiting for UnknownKIDRate to pass.
func TestUnknownKIDRefetchOutlivesCaller(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now})
	p.Rotate()
	p.SetDelay(300 * time.Millisecond)
	token := p.Token("alice", time.Hour)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Verify(ctx, token)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, jwks.ErrUnknownKID)
	assert.Equal(t, "unknown key", jwks.Reason(err))
	assert.Less(t, time.Since(start), 250*time.Millisecond, "the caller waited for its ctx only")
	assertNoToken(t, err, token)

	// Within UnknownKIDRate (the fake clock never moved): the refetch the
	// first caller started brings the key in.
	_, err = v.Verify(t.Context(), token)
	require.NoError(t, err)
	assert.Equal(t, 2, p.Fetches(), "New, then one refetch")

	_, err = v.Verify(t.Context(), p.SignWith(nil, nil, map[string]any{"kid": "nobody"}, claimsAt(p, t0)))
	require.ErrorIs(t, err, jwks.ErrUnknownKID)
	assert.Equal(t, 2, p.Fetches(), "the refetch was spent: rate-limited")
}

// TestUnknownKIDRefetchShared: callers that arrive with an unknown kid
// while a refetch is in flight wait for that refetch (one fetch, many
// waiters) instead of being refused by the rate limit; each then gets the
// answer for its own kid.
func TestUnknownKIDRefetchShared(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "RS256", now)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now})
	p.Rotate()
	p.SetDelay(200 * time.Millisecond)
	token := p.Token("alice", time.Hour)
	nobody := p.SignWith(nil, nil, map[string]any{"kid": "nobody"}, claimsAt(p, t0))

	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			_, err := v.Verify(t.Context(), token)
			assert.NoError(t, err, "waiter %d", i)
		})
	}
	wg.Go(func() {
		_, err := v.Verify(t.Context(), nobody)
		assert.ErrorIs(t, err, jwks.ErrUnknownKID, "a kid the refetch did not bring")
		assert.NotErrorIs(t, err, context.Canceled)
	})
	wg.Wait()
	assert.Equal(t, 2, p.Fetches(), "New, then one refetch for all")
}

// TestUnknownKIDRefetchFailureLogged: a refetch that fails is logged even
// when the caller that triggered it is gone: the failure is the
// provider's (here: slower than the fetch timeout), not the caller's.
func TestUnknownKIDRefetchFailureLogged(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	var logs logBuffer
	v := newVerifier(t, jwks.Options{
		Issuers:    []jwks.Issuer{issuerOf(p)},
		Now:        now.Now,
		HTTPClient: &http.Client{Timeout: 100 * time.Millisecond},
		Logger:     slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	p.Rotate()
	p.SetDelay(time.Hour)
	token := p.Token("alice", time.Hour)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	_, err := v.Verify(ctx, token)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = v.Verify(t.Context(), token)
	require.ErrorIs(t, err, jwks.ErrUnknownKID, "waited for the refetch, which timed out")
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "the caller's ctx did not end")
	out := logs.String()
	assert.Contains(t, out, `"level":"ERROR"`)
	assert.Contains(t, out, `"url":"`+p.JWKSURL()+`"`)
	assert.NotContains(t, out, token)
}

// TestCloseDuringRefetch is not parallel: Close aborts a refetch in
// flight, its waiters fail with ErrKeysUnavailable, and no goroutine
// outlives Close.
func TestCloseDuringRefetch(t *testing.T) {
	p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{})
	ignore := goleak.IgnoreCurrent()
	v, err := jwks.New(context.Background(), jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Logger: quiet})
	require.NoError(t, err)
	p.Rotate()
	p.SetDelay(time.Hour)

	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), p.Token("alice", time.Hour))
		done <- err
	}()
	require.Eventually(t, func() bool { return p.Fetches() == 2 }, 5*time.Second, time.Millisecond, "the refetch started")
	v.Close()
	select {
	case err := <-done:
		require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
	case <-time.After(5 * time.Second):
		t.Fatal("Verify still waits for the refetch after Close")
	}
	goleak.VerifyNone(t, ignore)
}
