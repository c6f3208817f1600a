package client

import (
	"errors"
	"math/rand/v2"
	"time"
)

// Backoff sets the delays between reconnection attempts: the n-th attempt
// after a connection was lost (n = 0, 1, ...) waits
//
//	min(Initial * Multiplier^n, Max) * (1 ± Jitter)
//
// the jitter drawn uniformly, so that clients dropped together (a server
// restart) do not come back together. The count restarts only when a
// connection ends after it had stayed authenticated for at least Max (10s
// by default), not at every auth_ok: a server that authenticates and then
// closes at once (1011 from a failing application, say) is retried ever
// more slowly, up to Max apart, instead of every Initial. The zero value of
// every field is its default.
type Backoff struct {
	// Initial is the delay before the first attempt. Default 250ms.
	Initial time.Duration
	// Max caps the delay before jitter. Default 10s.
	Max time.Duration
	// Multiplier is the growth factor of the delay; at least 1. Default 2.
	Multiplier float64
	// Jitter is the fraction by which each delay is randomly lengthened or
	// shortened, at most 1. Default 0.2; a negative value means no jitter.
	Jitter float64
}

// Defaults of Backoff fields.
const (
	defaultBackoffInitial    = 250 * time.Millisecond
	defaultBackoffMax        = 10 * time.Second
	defaultBackoffMultiplier = 2
	defaultBackoffJitter     = 0.2
)

func (b Backoff) withDefaults() (Backoff, error) {
	switch {
	case b.Initial < 0, b.Max < 0:
		return b, errors.New("client: Backoff durations must not be negative")
	case b.Multiplier < 0 || (b.Multiplier > 0 && b.Multiplier < 1):
		return b, errors.New("client: Backoff.Multiplier must be at least 1")
	case b.Jitter > 1:
		return b, errors.New("client: Backoff.Jitter must be at most 1")
	}
	if b.Initial == 0 {
		b.Initial = defaultBackoffInitial
	}
	if b.Max == 0 {
		b.Max = max(defaultBackoffMax, b.Initial)
	}
	if b.Max < b.Initial {
		return b, errors.New("client: Backoff.Max must not be less than Initial")
	}
	if b.Multiplier == 0 {
		b.Multiplier = defaultBackoffMultiplier
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = defaultBackoffJitter
	case b.Jitter < 0:
		b.Jitter = 0
	}
	return b, nil
}

// backoff is the retry state of one client: how many attempts were made
// since the last connection that stayed up for Max. It is used by one
// goroutine at a time.
type backoff struct {
	cfg     Backoff // with defaults
	attempt int
	rnd     *rand.Rand // nil: the global source
}

// next returns the delay before the next attempt and counts the attempt.
func (b *backoff) next() time.Duration {
	d := float64(b.cfg.Initial)
	for i := 0; i < b.attempt && d < float64(b.cfg.Max); i++ {
		d *= b.cfg.Multiplier
	}
	d = min(d, float64(b.cfg.Max))
	if b.attempt < 64 {
		b.attempt++
	}
	if b.cfg.Jitter > 0 {
		u := rand.Float64
		if b.rnd != nil {
			u = b.rnd.Float64
		}
		d *= 1 + b.cfg.Jitter*(2*u()-1)
	}
	return time.Duration(d)
}

// reset starts the count again, after a connection that stayed
// authenticated for Max.
func (b *backoff) reset() { b.attempt = 0 }
