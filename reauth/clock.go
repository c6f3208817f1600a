package reauth

import "time"

// Clock is the time source of the scheduler and of everything in wsauth that
// measures time. The system clock is the default; tests use a fake one such
// as wsauthtest.Clock to drive time without sleeping.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has elapsed, like
	// time.AfterFunc.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call from happening. It reports whether it did so:
	// false means the call already ran or was already stopped.
	Stop() bool
}

// SystemClock is the real clock, backed by package time.
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
