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

// Principal names one user: the subject of one issuer. An OIDC "sub" is
// unique only within its issuer, so two identity providers may both have an
// "alice" who are different people; wsauth keys everything it does per
// user (sessions by user, SendToPrincipals, Revoke, resume) by Principal,
// never by the subject alone. With a single trusted issuer, the Issuer is
// that issuer's "iss" (the value of the verified token's claim).
type Principal struct {
	Issuer  string // the token's "iss"
	Subject string // the token's "sub"
}

// Principal returns the user the identity belongs to.
func (id Identity) Principal() Principal {
	return Principal{Issuer: id.Issuer, Subject: id.Subject}
}
