package wsauth

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// Authentication: what an auth frame does, the first one of a pending
// session and every reauthentication after it.
//
// A first auth frame that fails closes the session (4401, or 4408 when the
// verification outlives the auth deadline). A reauthentication that fails
// verification does not: the client gets an error frame (4401, with the
// reason as its message) and the session keeps its current token until its
// exp and grace run out. A reauthentication as another principal closes
// the session with 4403.
//
// Verifying costs a signature check, so a session may have an auth frame
// verified at most once per reauthInterval, besides its answer to each
// reauth_required; others get error 4429 and are not verified.

// reauthInterval is the least time between two verified auth frames of a
// session, except the answer to a reauth_required.
const reauthInterval = time.Second

// takeAuthBudget reports whether an auth frame of a session in state st
// may be verified now, and counts it if so.
func (s *Session) takeAuthBudget(st session.State) bool {
	now := s.srv.opts.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case st == session.Pending, s.reauthAsked, now.Sub(s.lastAuth) >= reauthInterval:
		s.reauthAsked = false
		s.lastAuth = now
		return true
	}
	return false
}

// authenticate handles an auth frame. It runs while the read goroutine
// waits for it (see onFrame).
func (s *Session) authenticate(token string, resume *protocol.Position) {
	s.mu.Lock()
	first := s.state == session.Pending
	prev := s.ident
	deadline := s.authDeadline
	s.mu.Unlock()

	ident, refusal := s.verify(token, first, deadline)
	if refusal != nil {
		if first || refusal == closeTokenRevoked {
			// A revoked token ends even a session that still holds a
			// good one: its user was revoked after that one was issued,
			// or it is the revoked token itself.
			s.close(refusal)
			return
		}
		s.writeFrame(protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeError, Code: protocol.ErrorReauthRequired, Message: refusal.Reason}))
		return
	}
	if !s.bind(ident, first, prev) {
		return
	}
	s.activate(ident, first, prev, resume)
}

// verify checks the token of an auth frame (see Server.check).
func (s *Session) verify(token string, first bool, deadline time.Time) (Identity, *protocol.CloseError) {
	srv := s.srv
	timeout := srv.opts.AuthTimeout
	if first {
		// The auth deadline bounds verification, so a slow JWKS or an
		// unknown kid cannot hold a pending socket past it. The
		// scheduler's 4408 closes the socket on time either way; this
		// ends the verification too.
		timeout = deadline.Sub(srv.opts.Clock.Now())
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	stage := "auth"
	if !first {
		stage = "reauth"
	}
	return srv.check(ctx, stage, token, slog.String("session", s.id), slog.String("remote", s.remoteAddr), slog.Bool("reauth", !first))
}

// check verifies token with the Verifier and the server's own rules
// (expiry, subject, revocations) and returns the identity, or why it is
// refused: 4408 when ctx's deadline ran out first. stage says where, for the
// Observer and the log; logAttrs go with the log line of a refusal (rate
// limited: a client can cause them at will).
func (srv *Server) check(ctx context.Context, stage, token string, logAttrs ...slog.Attr) (Identity, *protocol.CloseError) {
	start := time.Now()
	ident, ce := srv.checkToken(ctx, token)
	reason := ""
	if ce != nil {
		reason = ce.Reason
		if ce != closeAuthTimeout {
			srv.refusals.log(srv.opts.Logger, "wsauth: token refused",
				append(logAttrs, slog.String("stage", stage), slog.Int("code", int(ce.Code)), slog.String("reason", ce.Reason))...)
		}
	}
	srv.observe(Event{Kind: Verified, Stage: stage, Reason: reason, Took: time.Since(start)})
	return ident, ce
}

func (srv *Server) checkToken(ctx context.Context, token string) (Identity, *protocol.CloseError) {
	ident, err := srv.opts.Verifier.Verify(ctx, token)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			// The verification outlived its deadline (a slow JWKS): that
			// is the client's 4408, not a verdict on its token.
			return Identity{}, closeAuthTimeout
		}
		return Identity{}, refusal(err)
	}
	if srv.opts.Expiry != ExpiryIgnore {
		if ident.ExpiresAt.IsZero() {
			return Identity{}, closeMissingExp
		}
		if !ident.ExpiresAt.After(srv.opts.Clock.Now()) {
			return Identity{}, closeTokenExpired
		}
	}
	if ident.Subject == "" {
		// Every such token would be one and the same user.
		return Identity{}, closeMissingSub
	}
	if srv.revoked.refuses(ident, srv.opts.Clock.Now()) {
		return Identity{}, closeTokenRevoked
	}
	return ident, nil
}

// bind binds a verified identity to the session and runs OnAuthenticated.
// It reports false if the session was closed instead.
func (s *Session) bind(ident Identity, first bool, prev Identity) bool {
	srv := s.srv
	if !first && ident.Principal() != prev.Principal() {
		srv.opts.Logger.Warn("wsauth: reauth with another identity", "session", s.id, "sub", prev.Subject)
		s.close(closeSubject)
		return false
	}
	s.mu.Lock()
	if s.state == session.Closed {
		s.mu.Unlock()
		return false
	}
	s.ident = ident
	s.mu.Unlock()
	h := srv.opts.OnAuthenticated
	if h == nil {
		return true
	}
	var err error
	if srv.guard(s.id, "OnAuthenticated", func() { err = h(s.ctx, s) }) {
		s.close(closeInternal)
		return false
	}
	if err != nil {
		var ce *protocol.CloseError
		if !errors.As(err, &ce) {
			ce = closeForbidden
		}
		s.close(ce)
		return false
	}
	return true
}

// activate makes the session active under ident: it schedules its expiry,
// registers a new session (with a Broker: in its user's stream, with what
// its client missed if it asked to resume) and writes auth_ok, then what
// was buffered.
func (s *Session) activate(ident Identity, first bool, prev Identity, resume *protocol.Position) {
	srv := s.srv
	now := srv.opts.Clock.Now()
	s.mu.Lock()
	if s.state == session.Closed {
		s.mu.Unlock()
		return
	}
	s.setStateLocked(session.Active)
	if !first && !s.askedAt.IsZero() {
		srv.observe(Event{Kind: Reauthenticated, Took: srv.opts.Clock.Now().Sub(s.askedAt)})
		s.askedAt = time.Time{}
	}
	// Hold application messages until auth_ok is on the wire, so that the
	// client sees auth_ok first and then what was buffered, in order.
	s.paused = true
	// A reauthentication whose token expires no later than the current one
	// changes nothing in the timeline: re-arming it would ask for a fresh
	// token again at half the time left, over and over.
	if first || ident.ExpiresAt.After(prev.ExpiresAt) || srv.opts.Expiry == ExpiryIgnore {
		s.scheduleExpiryLocked(now)
	}
	releaseSlot := s.pendingSlot
	s.pendingSlot = false
	if first {
		s.registered = true
		// Clear the pre-auth read backstop while the session is known to
		// be open: a close sets its linger deadline after marking the
		// session closed, so from here on it comes after this, never
		// before. (Cleared after the unlock, it could wipe the linger
		// deadline of a close that came meanwhile, and the drain would
		// then wait for the client for ever.)
		_ = s.conn.Conn.SetReadDeadline(time.Time{})
	}
	s.mu.Unlock()

	okFrame := protocol.ServerFrame{Type: protocol.TypeAuthOK, Session: s.id, Subject: ident.Subject}
	if !ident.ExpiresAt.IsZero() {
		okFrame.Exp = ident.ExpiresAt.Unix()
	}
	if first {
		s.conn.gate.authenticated(uint64(srv.opts.MaxFrame))
		if releaseSlot {
			srv.pending.release(s.ip)
		}
		if srv.member != nil {
			start, answer, err := srv.streams.join(s, resume)
			if err != nil {
				srv.opts.Logger.Warn("wsauth: cannot resume now", "session", s.id, "err", err)
				s.close(closeStreamUnavailable)
				return
			}
			okFrame.Stream, okFrame.Epoch, okFrame.Seq, okFrame.Resume = true, start.Epoch, start.Seq, answer
		} else {
			srv.registry.Add(s.id, ident.Principal(), s)
		}
	}
	s.writeFrame(protocol.AppendServer(nil, okFrame))

	s.mu.Lock()
	// The token may have expired while auth_ok was being written (a
	// client slow to read, a token with little life left): an expired
	// session stays held until a fresh token comes.
	s.paused = s.state != session.Active
	s.scheduleDrainLocked()
	s.mu.Unlock()
}
