package jwks_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
