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

// TestHealth follows two issuers' key sets through a provider that is down
// when the Verifier starts, comes back, and goes down again: Health names
// only the issuer without keys, with its last error, and its calls bring
// the keys back without any token (a server out of service gets none);
// Status reports keys, fetch times and the last error.
func TestHealth(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	up := idpAt(t, "ES256", now)
	down := idpAt(t, "RS256", now)
	down.SetDown(true)
	v := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(up), issuerOf(down)}, Now: now.Now})

	err := v.Health()
	require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
	assert.Contains(t, err.Error(), `"`+down.Issuer()+`"`)
	assert.Contains(t, err.Error(), down.JWKSURL())
	assert.Contains(t, err.Error(), "503", "the last fetch's error")
	assert.NotContains(t, err.Error(), `"`+up.Issuer()+`"`, "the issuer with keys is fine")
	st := v.Status()
	require.Len(t, st, 2)
	assert.Equal(t, up.Issuer(), st[0].Issuer)
	assert.Equal(t, 1, st[0].Keys)
	assert.False(t, st[0].Fetched.IsZero())
	assert.NoError(t, st[0].Err)
	assert.Equal(t, down.JWKSURL(), st[1].JWKSURL)
	assert.Zero(t, st[1].Keys)
	assert.True(t, st[1].Fetched.IsZero())
	assert.Error(t, st[1].Err)
	assert.False(t, st[1].FailedAt.IsZero())

	// Back: Health's own refetches, after the keyless backoff, bring the
	// keys without a single token verified.
	down.SetDown(false)
	require.Eventually(t, func() bool {
		now.Advance(5 * time.Second)
		return v.Health() == nil
	}, 5*time.Second, 10*time.Millisecond)
	st = v.Status()
	assert.Equal(t, 1, st[1].Keys)
	assert.NoError(t, st[1].Err)
	assert.True(t, st[1].FailedAt.IsZero())
	fetches := down.Fetches()
	require.NoError(t, v.Health())
	assert.Equal(t, fetches, down.Fetches(), "an issuer with keys is not fetched by Health")

	// Down again: the keys held keep working, so v stays healthy, and the
	// failed refetch (an unknown kid) is in Status.
	down.SetDown(true)
	down.Rotate()
	_, err = v.Verify(t.Context(), down.Token("alice", time.Hour))
	require.ErrorIs(t, err, jwks.ErrUnknownKID)
	assert.NoError(t, v.Health())
	st = v.Status()
	assert.Equal(t, 1, st[1].Keys)
	assert.Error(t, st[1].Err)
	assert.False(t, st[1].Fetched.IsZero())
}

// TestHealthClosed: a closed Verifier, or one whose context ended, is not
// healthy.
func TestHealthClosed(t *testing.T) {
	t.Parallel()
	now := wsauthtest.NewClock(t0)
	p := idpAt(t, "ES256", now)
	ctx, cancel := context.WithCancel(t.Context())
	v, err := jwks.New(ctx, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now, Logger: quiet})
	require.NoError(t, err)
	defer v.Close()
	require.NoError(t, v.Health())
	cancel()
	require.ErrorIs(t, v.Health(), jwks.ErrKeysUnavailable)

	w := newVerifier(t, jwks.Options{Issuers: []jwks.Issuer{issuerOf(p)}, Now: now.Now})
	w.Close()
	err = w.Health()
	require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
	assert.Contains(t, err.Error(), "closed")
}
