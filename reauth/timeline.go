package reauth

import "time"

// Timeline is what happens to an authenticated session under the reauth
// expiry policy, for one token.
type Timeline struct {
	// Ask is when the server sends reauth_required: the client should
	// answer with a fresh token on the same socket.
	Ask time.Time
	// Expiry is the token's exp. From then until a fresh token arrives the
	// session is expired: outbound messages are buffered and client
	// messages refused with error 4401.
	Expiry time.Time
	// Deadline is when a session still without a fresh token is closed with
	// 4440 (Expiry plus the grace period).
	Deadline time.Time
}

// Plan returns the timeline of a token that expires at exp, accepted at
// now, on a server that asks lead before expiry and allows grace after it.
// The lead is capped at half the time the token has left, so a short-lived
// token is not asked to be refreshed the moment it arrives (and its fresh
// successor the moment that one does); a token already expired is asked
// for at once.
func Plan(now, exp time.Time, lead, grace time.Duration) Timeline {
	lead = max(0, min(lead, exp.Sub(now)/2))
	return Timeline{Ask: exp.Add(-lead), Expiry: exp, Deadline: exp.Add(grace)}
}
