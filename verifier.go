package wsauth

import (
	"context"
	"errors"
	"unicode/utf8"

	"github.com/wsauth/wsauth/protocol"
)

// Verifier verifies the token of an auth frame and returns the identity it
// proves. Verify must honour ctx: it is bounded by the connection's auth
// deadline. Package jwks has the JWKS-backed implementation; any type with
// this method will do.
//
// The error is never shown to the client, but the client is told which
// check failed: if the error wraps a *protocol.CloseError (found with
// errors.As), a refused first auth frame closes with it, and a refused
// reauthentication gets an error frame 4401 with its reason as message;
// otherwise the close is 4401 "invalid token". A Verifier may choose 4401
// (the token is bad: clients do not retry), 1013 (try again later: the
// Verifier cannot decide now, e.g. its keys are unavailable) or a code of
// 4000-4999; any other becomes 4401. The reason goes on the wire: keep it
// short (at most 123 bytes), fixed, and free of the token. jwks errors
// wrap such a close ("token expired", "unknown key"; 1013 "keys
// unavailable").
type Verifier interface {
	Verify(ctx context.Context, token string) (Identity, error)
}

// refusal is what the client is told of a token Verify refused.
func refusal(err error) *protocol.CloseError {
	var ce *protocol.CloseError
	if !errors.As(err, &ce) || ce.Reason == "" || len(ce.Reason) > protocol.MaxReasonLen || !utf8.ValidString(ce.Reason) {
		return closeInvalidToken
	}
	if ce.Code == protocol.CloseUnauthorized || ce.Code == protocol.CloseTryAgainLater {
		return ce
	}
	if ce.Code < 4000 || ce.Code > 4999 {
		return &protocol.CloseError{Code: protocol.CloseUnauthorized, Reason: ce.Reason}
	}
	return ce
}
