package jwks

import "errors"

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

// Reason is what a Verify error's CloseReason method says, "" for nil.
func Reason(err error) string {
	var r interface{ CloseReason() string }
	if errors.As(err, &r) {
		return r.CloseReason()
	}
	return reason(err)
}

// DefaultUnknownKIDRate is the default of Options.UnknownKIDRate.
const DefaultUnknownKIDRate = defaultUnknownKIDRate
