package jwks_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"

	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/protocol"
)

func TestReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{jwks.ErrKeysUnavailable, "keys unavailable"},
		{jwks.ErrMissingKID, "missing kid"},
		{jwks.ErrAlgorithm, "algorithm not allowed"},
		{jwks.ErrUnknownIssuer, "unknown issuer"},
		{jwks.ErrUnknownKID, "unknown key"},
		{jwks.ErrMissingExp, "missing exp"},
		{jwks.ErrMissingSubject, "missing sub"},
		{errors.Join(jwks.ErrMissingSubject, jwt.ErrTokenRequiredClaimMissing), "missing sub"},
		{errors.Join(jwt.ErrTokenInvalidClaims, jwt.ErrTokenRequiredClaimMissing, jwt.ErrTokenInvalidAudience), "wrong audience"},
		{jwt.ErrTokenMalformed, "malformed token"},
		{jwt.ErrTokenSignatureInvalid, "invalid signature"},
		{jwt.ErrTokenExpired, "token expired"},
		{jwt.ErrTokenNotValidYet, "token not valid yet"},
		{jwt.ErrTokenInvalidIssuer, "wrong issuer"},
		{jwt.ErrTokenInvalidAudience, "wrong audience"},
		{fmt.Errorf("verify: %w", jwt.ErrTokenExpired), "token expired"},
		{errors.Join(jwt.ErrTokenInvalidClaims, jwt.ErrTokenExpired, jwt.ErrTokenInvalidAudience), "token expired"},
		{errors.Join(jwks.ErrUnknownKID, context.DeadlineExceeded), "unknown key"},
		{errors.Join(jwks.ErrUnknownIssuer, jwt.ErrTokenInvalidIssuer), "unknown issuer"},
		{jwt.ErrTokenUnverifiable, "invalid token"},
		{jwt.ErrTokenUsedBeforeIssued, "invalid token"},
		{context.Canceled, "invalid token"},
		{errors.New("something else"), "invalid token"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.err), func(t *testing.T) {
			t.Parallel()
			got := jwks.Reason(tt.err)
			assert.Equal(t, tt.want, got)
			assert.LessOrEqual(t, len(got), protocol.MaxReasonLen)
		})
	}
}
