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
// check failed: if the error, or one it wraps, has a method
//
//	CloseReason() string
//
// (found with errors.As), its result is the close reason of a refused first
// auth frame and the message of the error frame that refuses a
// reauthentication, e.g. "token expired" or "unknown key"; otherwise the
// client reads "invalid token". A reason goes on the wire: keep it short
// (at most 123 bytes), fixed, and free of the token. jwks errors have such
// a method.
type Verifier interface {
	Verify(ctx context.Context, token string) (Identity, error)
}

// refusalReason is what the client is told of a token Verify refused.
func refusalReason(err error) string {
	var r interface{ CloseReason() string }
	if errors.As(err, &r) {
		if reason := r.CloseReason(); reason != "" && len(reason) <= protocol.MaxReasonLen && utf8.ValidString(reason) {
			return reason
		}
	}
	return "invalid token"
}
