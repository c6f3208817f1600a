package jwks

import (
	"context"
	"errors"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wsauth/wsauth/protocol"
)

// Sentinel errors of Verify. A Verify error wraps one or more of these, the
// jwt/v5 sentinels that apply (jwt.ErrTokenExpired, jwt.ErrTokenMalformed,
// ...) and, when the caller's context ended, its ctx.Err(): test them with
// errors.Is. The error Verify returns also wraps a *protocol.CloseError
// (errors.As) that says how the client is told: 4401 with a short, fixed
// reason naming the failed check ("token expired", "unknown key"), or, while
// the issuer's keys are unavailable (a fault of the provider, not the
// token), 1013 "keys unavailable", which clients retry.
var (
	// ErrMissingKID: the token has no "kid" header, or it is not a non-empty
	// string. Such a token would have to be tried against every key.
	ErrMissingKID = errors.New("jwks: token has no kid")
	// ErrUnknownIssuer: the token's "iss" matches no configured Issuer.
	// Such errors also wrap jwt.ErrTokenInvalidIssuer.
	ErrUnknownIssuer = errors.New("jwks: token issuer is not trusted")
	// ErrUnknownKID: the issuer's key set has no key with the token's kid,
	// even after a refetch, or a refetch was not allowed yet (see
	// Options.UnknownKIDRate), or the caller's context ended while it
	// waited for one (the error then also wraps ctx.Err()). Keys that
	// cannot verify signatures ("use": "enc", "key_ops" without "verify")
	// are not in the set.
	ErrUnknownKID = errors.New("jwks: no key with the token's kid")
	// ErrAlgorithm: the token's "alg" is not in Options.Algorithms, or it
	// differs from the "alg" of the key its kid names.
	ErrAlgorithm = errors.New("jwks: token algorithm not allowed")
	// ErrMissingExp: the token has no "exp" claim. Tokens that never expire
	// are refused. Such errors also wrap jwt.ErrTokenRequiredClaimMissing.
	ErrMissingExp = errors.New("jwks: token has no exp")
	// ErrMissingSubject: the token has no "sub" claim, or it is the empty
	// string. A token must say whom it authenticates. Such errors also
	// wrap jwt.ErrTokenRequiredClaimMissing.
	ErrMissingSubject = errors.New("jwks: token has no sub")
	// ErrKeysUnavailable: the issuer's key set is empty, because no fetch of
	// it has succeeded yet (a fetch that brings no usable key fails), or
	// the Verifier is closed. Its close code is 1013 (try again later):
	// the token may be fine.
	ErrKeysUnavailable = errors.New("jwks: issuer keys unavailable")
)

// reasons maps errors to close reasons, most specific first: the first
// error the chain matches wins.
var reasons = []struct {
	err    error
	reason string
}{
	{ErrKeysUnavailable, "keys unavailable"},
	{ErrMissingKID, "missing kid"},
	{ErrAlgorithm, "algorithm not allowed"},
	{ErrUnknownIssuer, "unknown issuer"},
	{ErrUnknownKID, "unknown key"},
	{ErrMissingExp, "missing exp"},
	{ErrMissingSubject, "missing sub"},
	{jwt.ErrTokenMalformed, "malformed token"},
	{jwt.ErrTokenSignatureInvalid, "invalid signature"},
	{jwt.ErrTokenExpired, "token expired"},
	{jwt.ErrTokenNotValidYet, "token not valid yet"},
	{jwt.ErrTokenInvalidIssuer, "wrong issuer"},
	{jwt.ErrTokenInvalidAudience, "wrong audience"},
}

// reason maps an error returned by Verify to a short, fixed close reason
// that is safe to send to the client, e.g. "token expired", "unknown key",
// "missing sub" or "wrong audience". Any other non-nil error gives
// "invalid token"; nil gives "".
func reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "invalid token"
}

// knownErrors are the errors a Verify error may wrap, in the order its
// message lists them.
var knownErrors = []error{
	ErrKeysUnavailable, ErrMissingKID, ErrAlgorithm, ErrUnknownIssuer, ErrUnknownKID, ErrMissingExp, ErrMissingSubject,
	jwt.ErrTokenMalformed,
	jwt.ErrTokenUnverifiable,
	jwt.ErrTokenSignatureInvalid,
	jwt.ErrTokenInvalidClaims,
	jwt.ErrTokenRequiredClaimMissing,
	jwt.ErrTokenExpired,
	jwt.ErrTokenNotValidYet,
	jwt.ErrTokenUsedBeforeIssued,
	jwt.ErrTokenInvalidIssuer,
	jwt.ErrTokenInvalidAudience,
	jwt.ErrTokenInvalidSubject,
	jwt.ErrTokenInvalidId,
	jwt.ErrInvalidType,
	jwt.ErrInvalidKey,
	jwt.ErrInvalidKeyType,
	context.Canceled,
	context.DeadlineExceeded,
}

// verifyError is what Verify returns. It wraps only sentinels, never the
// errors of jwt, keyfunc or jwkset themselves: those quote header values
// such as the kid, and an error must not carry any part of a token.
type verifyError struct {
	errs  []error              // the sentinels, as Error lists them
	close *protocol.CloseError // what the client is told
	all   []error              // errs and close, for Unwrap
}

func (e *verifyError) Error() string {
	var b strings.Builder
	b.WriteString("jwks: ")
	for i, err := range e.errs {
		if i > 0 {
			b.WriteString(": ")
		}
		b.WriteString(strings.TrimPrefix(err.Error(), "jwks: "))
	}
	return b.String()
}

func (e *verifyError) Unwrap() []error { return e.all }

// closeFor is what a client whose token failed with err is told.
func closeFor(err error) *protocol.CloseError {
	code := protocol.CloseUnauthorized
	if errors.Is(err, ErrKeysUnavailable) {
		code = protocol.CloseTryAgainLater
	}
	return &protocol.CloseError{Code: code, Reason: reason(err)}
}

// fail builds a Verify error from the given sentinels plus every known
// sentinel that cause (a jwt error, say) matches. cause itself is dropped.
func fail(cause error, sentinels ...error) error {
	errs := make([]error, 0, len(sentinels)+3)
	add := func(err error) {
		for _, have := range errs {
			if have == err {
				return
			}
		}
		errs = append(errs, err)
	}
	for _, known := range knownErrors {
		for _, s := range sentinels {
			if errors.Is(s, known) {
				add(known)
			}
		}
		if cause != nil && errors.Is(cause, known) {
			add(known)
		}
	}
	if len(errs) == 0 {
		errs = append(errs, jwt.ErrTokenUnverifiable)
	}
	e := &verifyError{errs: errs, all: errs}
	e.close = closeFor(e)
	e.all = append(errs[:len(errs):len(errs)], e.close)
	return e
}
