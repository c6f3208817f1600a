package wsauth

import (
	"context"
	"errors"
	"time"

	"github.com/lxzan/gws"

	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// events adapts gws callbacks to sessions. gws calls them on the
// connection's read goroutine, one at a time.
type events struct{}

func sessionOf(socket *gws.Conn) *Session { return socket.NetConn().(*gateConn).sess }

func (events) OnOpen(*gws.Conn) {}

func (events) OnClose(socket *gws.Conn, err error) { sessionOf(socket).finish(err) }

// OnPing answers pings in every state. A ping never extends the auth
// deadline: that deadline is a scheduler entry, not a read deadline.
func (events) OnPing(socket *gws.Conn, payload []byte) { _ = socket.WritePong(payload) }

func (events) OnPong(*gws.Conn, []byte) {}

func (events) OnMessage(socket *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	sessionOf(socket).onFrame(msg.Opcode, msg.Bytes())
}

// Fixed close reasons. A reason never carries client input or a token.
var (
	closeBinary       = protocol.NewCloseError(protocol.CloseMalformed, "binary frame")
	closeMalformed    = protocol.NewCloseError(protocol.CloseMalformed, "malformed frame")
	closeAuthRequired = protocol.NewCloseError(protocol.CloseUnauthorized, "auth required")
	closeSubject      = protocol.NewCloseError(protocol.CloseForbidden, "subject changed")
	closeForbidden    = protocol.NewCloseError(protocol.CloseForbidden, "forbidden")
	closeInternal     = protocol.NewCloseError(protocol.CloseInternal, "internal error")
	closeTooLarge     = protocol.NewCloseError(protocol.CloseTooLarge, "frame too large")
	closeFlood        = protocol.NewCloseError(protocol.CloseTooManyRequests, "too many bytes before auth")
	// closeNotReading is what OnClose reports for a client that did not
	// read for WriteTimeout: its socket is full, so it is closed without a
	// close frame.
	closeNotReading = protocol.NewCloseError(protocol.CloseBufferOverflow, "client not reading")
)

func (s *Session) onFrame(op gws.Opcode, b []byte) {
	if op != gws.OpcodeText {
		s.close(closeBinary)
		return
	}
	// Message.Data is documented as valid only during OnMessage, and gws
	// reuses b only after this returns: no copy needed.
	f, err := protocol.DecodeClientInPlace(b)
	if err != nil {
		s.close(closeMalformed)
		return
	}
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	switch {
	case st == session.Closed:
	case f.Type == protocol.TypeAuth:
		// Authenticate on a short-lived goroutine and wait for it: token
		// verification (JSON decoding, RSA) needs a deep stack, and the read
		// goroutine, which lives as long as the connection, would keep that
		// stack for good (about 4 KiB per idle connection).
		done := make(chan struct{})
		go func() {
			defer close(done)
			if s.srv.guard(s.id, "authenticate", func() { s.authenticate(f.Token) }) {
				s.close(closeInternal)
			}
		}()
		<-done
	case st == session.Pending:
		s.close(closeAuthRequired)
	case st == session.Expired:
		s.writeFrame(protocol.AppendError(nil, ErrorCodeReauthRequired, "reauth required", f.ID))
	default:
		s.handleMessage(Message{ID: f.ID, Data: f.Data})
	}
}

// onGateViolation is called by the pre-auth gate on the read goroutine.
func (s *Session) onGateViolation(err error) {
	if errors.Is(err, errPreAuthFlood) {
		s.close(closeFlood)
		return
	}
	s.close(closeTooLarge)
}

// authenticate handles an auth frame: the first one of a pending session or
// a reauthentication of an active or expired one.
func (s *Session) authenticate(token string) {
	srv := s.srv
	now := srv.opts.Clock.Now()
	s.mu.Lock()
	first := s.state == session.Pending
	prev := s.ident
	timeout := srv.opts.AuthTimeout
	if first {
		timeout = s.authDeadline.Sub(now)
	}
	s.mu.Unlock()

	// The auth deadline bounds verification, so a slow JWKS or an unknown
	// kid cannot hold a pending socket past it. The scheduler's 4408 closes
	// the socket on time either way; this ends the verification too.
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	ident, err := srv.opts.Verifier.Verify(ctx, token)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			// The verification outlived the auth deadline (a slow JWKS):
			// that is the client's 4408, not a verdict on its token.
			s.close(closeAuthTimeout)
			return
		}
		reason := jwks.Reason(err)
		srv.opts.Logger.Info("wsauth: token refused", "session", s.id, "remote", s.remoteAddr,
			"reauth", !first, "reason", reason)
		s.close(protocol.NewCloseError(protocol.CloseUnauthorized, reason))
		return
	}
	now = srv.opts.Clock.Now()
	if srv.opts.Expiry != ExpiryIgnore {
		if ident.ExpiresAt.IsZero() {
			s.close(protocol.NewCloseError(protocol.CloseUnauthorized, "missing exp"))
			return
		}
		if !ident.ExpiresAt.After(now) {
			s.close(protocol.NewCloseError(protocol.CloseUnauthorized, "token expired"))
			return
		}
	}
	if !first && (ident.Subject != prev.Subject || ident.Issuer != prev.Issuer) {
		srv.opts.Logger.Warn("wsauth: reauth with another identity", "session", s.id, "sub", prev.Subject)
		s.close(closeSubject)
		return
	}

	s.mu.Lock()
	if s.state == session.Closed {
		s.mu.Unlock()
		return
	}
	s.ident = ident
	s.mu.Unlock()
	if h := srv.opts.OnAuthenticated; h != nil {
		var herr error
		if srv.guard(s.id, "OnAuthenticated", func() { herr = h(s.ctx, s) }) {
			s.close(closeInternal)
			return
		}
		if herr != nil {
			var ce *CloseError
			if !errors.As(herr, &ce) {
				ce = closeForbidden
			}
			s.close(ce)
			return
		}
	}

	s.mu.Lock()
	if s.state == session.Closed {
		s.mu.Unlock()
		return
	}
	s.state = session.Active
	// Hold application messages until auth_ok is on the wire, so that the
	// client sees auth_ok first and then what was buffered, in order.
	s.paused = true
	s.scheduleExpiryLocked(now)
	releaseSlot := s.pendingSlot
	s.pendingSlot = false
	if first {
		s.registered = true
		if resumed := srv.resume.take(ident.Subject); len(resumed) > 0 {
			if rejected := s.outbox.PushFront(resumed); len(rejected) > 0 {
				defer srv.undelivered(ident.Subject, rejected)
			}
		}
	}
	s.mu.Unlock()

	if first {
		s.conn.gate.authenticated(uint64(srv.opts.MaxFrame))
		_ = s.conn.Conn.SetReadDeadline(time.Time{})
		if releaseSlot {
			srv.pending.release(s.ip)
		}
		srv.registry.Add(s.id, ident.Subject, s)
	}
	var exp int64
	if !ident.ExpiresAt.IsZero() {
		exp = ident.ExpiresAt.Unix()
	}
	s.writeFrame(protocol.AppendAuthOK(nil, s.id, ident.Subject, exp))

	s.mu.Lock()
	s.paused = false
	s.scheduleDrainLocked()
	s.mu.Unlock()
}

func (s *Session) handleMessage(m Message) {
	h := s.srv.opts.OnMessage
	if h == nil {
		s.writeFrame(protocol.AppendError(nil, ErrorCodeNotAccepted, "messages not accepted", m.ID))
		return
	}
	var err error
	s.beginHandler()
	panicked := s.srv.guard(s.id, "OnMessage", func() { err = h(s.ctx, s, m) })
	// Replies first: an error frame for this message goes after them.
	s.flushAfterHandler()
	if panicked {
		s.close(closeInternal)
		return
	}
	if err == nil {
		return
	}
	var ce *CloseError
	var me *MessageError
	switch {
	case errors.As(err, &ce):
		s.close(ce)
	case errors.As(err, &me):
		s.writeFrame(protocol.AppendError(nil, me.Code, me.Message, m.ID))
	default:
		s.srv.opts.Logger.Error("wsauth: message handler failed", "session", s.id, "err", err)
		s.writeFrame(protocol.AppendError(nil, ErrorCodeInternal, "internal error", m.ID))
	}
}
