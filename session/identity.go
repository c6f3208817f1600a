package session

import "time"

// Identity is the verified identity bound to a session: what a Verifier
// extracted from a token whose signature and claims it checked. It never
// holds the token itself.
type Identity struct {
	// Subject is the token's "sub" claim.
	Subject string
	// Issuer is the token's "iss" claim.
	Issuer string
	// Audience is the token's "aud" claim.
	Audience []string
	// ExpiresAt is the token's "exp" claim. A zero ExpiresAt means the token
	// does not expire (only possible with a custom Verifier).
	ExpiresAt time.Time
	// IssuedAt is the token's "iat" claim, zero if absent.
	IssuedAt time.Time
	// Claims holds every claim of the token as decoded JSON.
	Claims map[string]any
}
