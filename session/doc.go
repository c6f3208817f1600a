// Package session names who a wsauth session is and where it is in its
// life: the verified Identity bound to it, the Principal (issuer and
// subject) that names its user, and its State. It does no I/O and starts no
// goroutines; its types are plain values, safe to copy and to share.
//
// Package wsauth re-exports these types (wsauth.Identity, wsauth.Principal,
// wsauth.State), so most programs never import this package.
//
// # Example
//
//	p := s.Principal() // s is a *wsauth.Session
//	if s.State() == session.Expired {
//		// the session waits for a fresh token; what is sent to it is buffered
//	}
//	n := srv.Revoke(p)
package session
