package jwks

import (
	"errors"

	"github.com/wsauth/wsauth/protocol"
)

// SignatureChecks returns how many token signatures v has checked: a
// verification that the token cache answered does not count.
func SignatureChecks(v *Verifier) int64 { return v.signatureChecks.Load() }

// CacheLen returns the number of tokens in v's cache.
func CacheLen(v *Verifier) int {
	if v.cache == nil {
		return 0
	}
	return v.cache.len()
}

// Reason is the reason of the close error a Verify error wraps, "" for nil.
func Reason(err error) string {
	var ce *protocol.CloseError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return reason(err)
}

// DefaultUnknownKIDRate is the default of Options.UnknownKIDRate.
const DefaultUnknownKIDRate = defaultUnknownKIDRate
