package jwks

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// IssuerStatus is what a Verifier knows of one issuer's JWK Set: for
// health checks, dashboards and support. It never holds a token.
type IssuerStatus struct {
	// Issuer and JWKSURL are the issuer's Options.Issuers entry.
	Issuer, JWKSURL string
	// Keys is the number of usable keys held: 0 until a fetch has brought
	// some, and never 0 again afterwards (a fetch without usable keys
	// fails and keeps the keys held).
	Keys int
	// Fetched is when a fetch last brought keys; zero if none has.
	Fetched time.Time
	// Err is the error of the last fetch, if it failed after the last one
	// that worked, and FailedAt is when; nil and zero otherwise. It is the
	// error the Verifier logs ("jwks: fetching JWK Set failed").
	Err      error
	FailedAt time.Time
}

// Status returns the state of every issuer's key set, in the order of
// Options.Issuers. It does not block.
func (v *Verifier) Status() []IssuerStatus {
	out := make([]IssuerStatus, len(v.issuers))
	for i, is := range v.issuers {
		fetched, failedAt, err := is.keys.fetches.get()
		out[i] = IssuerStatus{
			Issuer:   is.Issuer.Issuer,
			JWKSURL:  is.JWKSURL,
			Keys:     is.keys.idx.Load().n,
			Fetched:  fetched,
			Err:      err,
			FailedAt: failedAt,
		}
	}
	return out
}

// Health reports whether v can verify the tokens of every issuer: nil when
// every issuer holds keys, even if its last refresh failed (the keys held
// keep working; Status has the error). Otherwise the error wraps
// ErrKeysUnavailable and names each issuer without keys, with its JWK Set
// URL and the error of its last fetch, or says that v is closed. It never
// contains a token. wsauth.Server.Ready calls it (v is a
// wsauth.HealthChecker).
//
// Health does not block, but for an issuer without keys it starts a fetch
// of the issuer's set in the background, at most one per 1 to 5 seconds
// (the backoff of the fetches that tokens of such an issuer trigger, see
// Options.UnknownKIDRate). A server that its readiness probe has taken out
// of service for want of keys gets no tokens, hence no such fetches, and
// would otherwise wait for the next refresh (Options.RefreshInterval, an
// hour by default) after the provider is back: the probe's calls bring the
// keys back within seconds.
func (v *Verifier) Health() error {
	if v.ctx.Err() != nil {
		return fmt.Errorf("jwks: verifier closed: %w", ErrKeysUnavailable)
	}
	var errs []error
	for _, is := range v.issuers {
		if !is.keys.empty() {
			continue
		}
		v.startRefetch(is, "") // no key has kid "" in an empty set
		_, _, last := is.keys.fetches.get()
		if last == nil {
			last = errors.New("no fetch has completed yet")
		}
		errs = append(errs, fmt.Errorf("jwks: no keys for issuer %q (%w); last fetch of %s: %v",
			is.Issuer.Issuer, ErrKeysUnavailable, is.JWKSURL, last))
	}
	return errors.Join(errs...)
}

// fetchStatus records the outcome of one issuer's fetches.
type fetchStatus struct {
	mu       sync.Mutex
	fetched  time.Time // the last fetch that brought keys
	failedAt time.Time // the last failed fetch, if after fetched
	err      error     // its error
}

func (f *fetchStatus) succeeded() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetched, f.failedAt, f.err = time.Now(), time.Time{}, nil
}

func (f *fetchStatus) failed(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failedAt, f.err = time.Now(), err
}

func (f *fetchStatus) get() (fetched, failedAt time.Time, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetched, f.failedAt, f.err
}
