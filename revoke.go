package wsauth

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/wsauth/wsauth/broker"
)

// Revocation that sticks. Revoke refuses every token of a user issued
// before it ("iat"), RevokeToken one token ("jti"), for Options.RevokeFor:
// at the first auth, at reauth, and for every session that holds such a
// token now. With a Broker every node applies them, and a node that starts
// reads the ones the broker still keeps.

// revocations is a server's list of revoked tokens.
type revocations struct {
	keep time.Duration // Options.RevokeFor

	mu     sync.Mutex
	before map[Principal]time.Time // tokens issued before are refused
	tokens map[tokenKey]time.Time  // revoked at
	swept  int                     // entries at the last sweep
}

type tokenKey struct {
	p   Principal
	jti string
}

// add records r, seen at now.
func (rv *revocations) add(r broker.Revocation, now time.Time) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if rv.before == nil {
		rv.before = make(map[Principal]time.Time)
		rv.tokens = make(map[tokenKey]time.Time)
	}
	if r.TokenID != "" {
		k := tokenKey{r.Principal, r.TokenID}
		if r.At.After(rv.tokens[k]) {
			rv.tokens[k] = r.At
		}
	} else if r.At.After(rv.before[r.Principal]) {
		rv.before[r.Principal] = r.At
	}
	if n := len(rv.before) + len(rv.tokens); n > 2*rv.swept+64 {
		cutoff := now.Add(-rv.keep)
		for p, at := range rv.before {
			if at.Before(cutoff) {
				delete(rv.before, p)
			}
		}
		for k, at := range rv.tokens {
			if at.Before(cutoff) {
				delete(rv.tokens, k)
			}
		}
		rv.swept = len(rv.before) + len(rv.tokens)
	}
}

// refuses reports whether a revocation still in force at now names the
// token behind id. A token without "iat" counts as issued at the start of
// time: a revocation of its user refuses it.
func (rv *revocations) refuses(id Identity, now time.Time) bool {
	p := id.Principal()
	jti, _ := id.Claims["jti"].(string)
	cutoff := now.Add(-rv.keep)
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if at, ok := rv.before[p]; ok && !at.Before(cutoff) && issuedBy(id, at) {
		return true
	}
	if jti != "" {
		if at, ok := rv.tokens[tokenKey{p, jti}]; ok && !at.Before(cutoff) {
			return true
		}
	}
	return false
}

// issuedBy reports whether id's token was issued no later than the second
// of at: "iat" counts whole seconds, so a token of that second may be from
// before the revocation, and is refused; one without "iat" always is.
func issuedBy(id Identity, at time.Time) bool {
	return id.IssuedAt.IsZero() || id.IssuedAt.Unix() <= at.Unix()
}

// Revoke closes every session of principal with 4403 "session revoked" and,
// for Options.RevokeFor, refuses every token of principal issued before now
// ("iat", in whole seconds: a token of this very second too): a client that reconnects with the same token gets 4403 "token
// revoked"; one that got a fresh token from its identity provider since
// gets in. It returns how many of this node's sessions it closed. With a
// Broker every node does the same, and nodes that start later within the
// broker's revocation window too; the error then wraps
// broker.ErrUnavailable if the broker cannot be reached (this node's part
// is done).
func (srv *Server) Revoke(ctx context.Context, principal Principal) (int, error) {
	return srv.revoke(ctx, broker.Revocation{Principal: principal, At: srv.opts.Clock.Now()})
}

// RevokeToken refuses one token of principal, the one whose "jti" is
// tokenID, for Options.RevokeFor, and closes the sessions that hold it with
// 4403 "session revoked". It returns how many of this node's sessions it
// closed; with a Broker, like Revoke.
func (srv *Server) RevokeToken(ctx context.Context, principal Principal, tokenID string) (int, error) {
	return srv.revoke(ctx, broker.Revocation{Principal: principal, TokenID: tokenID, At: srv.opts.Clock.Now()})
}

func (srv *Server) revoke(ctx context.Context, r broker.Revocation) (int, error) {
	// The cluster first: closing this node's sessions may end ctx (the
	// ctx of a handler whose own user is revoked).
	var err error
	if srv.member != nil {
		if err = srv.member.Revoke(ctx, r); err != nil {
			err = fmt.Errorf("wsauth: revoking on the cluster: %w", err)
		}
	}
	return srv.revokeHere(r), err
}

// revokeHere records r and closes this node's sessions it names.
func (srv *Server) revokeHere(r broker.Revocation) int {
	srv.revoked.add(r, srv.opts.Clock.Now())
	ce := closeRevoked
	n := 0
	for _, s := range srv.registry.ByPrincipal(r.Principal, nil) {
		s.mu.Lock()
		jti, _ := s.ident.Claims["jti"].(string)
		hit := r.TokenID == "" && issuedBy(s.ident, r.At) || r.TokenID != "" && r.TokenID == jti
		ok := hit && s.markClosedLocked(ce)
		s.mu.Unlock()
		if ok {
			n++
			go s.writeClose(ce)
		}
	}
	return n
}
