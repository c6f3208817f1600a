// Package reauth is the timeline of an authenticated session's token and the
// time source that drives it.
//
// A wsauth session authenticated with a token that expires at exp is asked
// for a fresh token at exp minus the server's lead (capped at half the
// token's remaining life), is expired from exp until a fresh token arrives
// (its outbound messages are buffered, bounded), and is closed with 4440 at
// exp plus the grace period if none came. Plan computes those instants;
// docs/protocol.md, section 4, describes them on the wire.
//
// Every deadline of a wsauth server (auth timeouts, reauth, expiry, grace)
// is read from and armed on one Clock. SystemClock is the real one; tests
// use a fake (wsauthtest.Clock) and move time by hand.
//
// # Goroutines
//
// Plan is a pure function. A Clock's AfterFunc calls f on a goroutine of
// the clock's choosing (the system clock: the one time.AfterFunc starts).
//
// # Example
//
//	tl := reauth.Plan(time.Now(), ident.ExpiresAt, 30*time.Second, 10*time.Second)
//	// tl.Ask: reauth_required; tl.Expiry: buffering; tl.Deadline: close 4440
package reauth
