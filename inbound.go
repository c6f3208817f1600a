package wsauth

import (
	"errors"
	"log/slog"
	"time"

	"github.com/lxzan/gws"

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

func (s *Session) onFrame(op gws.Opcode, b []byte) {
	if op != gws.OpcodeText {
		s.flushHeld()
		s.close(closeBinary)
		return
	}
	// Message.Data is documented as valid only during OnMessage, and gws
	// reuses b only after this returns: no copy needed.
	f, err := protocol.DecodeClient(b)
	if err != nil {
		s.flushHeld()
		s.close(closeMalformed)
		return
	}
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	if f.Type != protocol.TypeMessage || st != session.Active {
		// What follows writes frames of its own: the replies held for
		// earlier messages go first.
		s.flushHeld()
	}
	switch {
	case st == session.Closed:
	case f.Type == protocol.TypeAuth:
		if !s.takeAuthBudget(st) {
			s.writeFrame(protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeError, Code: protocol.ErrorTooManyRequests, Message: "too many auth frames"}))
			return
		}
		// Authenticate on a short-lived goroutine and wait for it: token
		// verification (JSON decoding, RSA) needs a deep stack, and the read
		// goroutine, which lives as long as the connection, would keep that
		// stack for good (about 4 KiB per idle connection).
		done := make(chan struct{})
		go func() {
			defer close(done)
			if s.srv.guard(s.id, "authenticate", func() { s.authenticate(f.Token, f.Resume) }) {
				s.close(closeInternal)
			}
		}()
		<-done
	case st == session.Pending:
		s.close(closeAuthRequired)
	case st == session.Expired:
		s.writeFrame(protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeError, Code: protocol.ErrorReauthRequired, Message: "reauth required", Ref: f.ID}))
	default:
		s.srv.observe(Event{Kind: Received, N: 1})
		m := Message{ID: f.ID, Data: f.Data}
		if !s.messageIdentity(&m, f.Token) {
			return
		}
		s.handleMessage(m)
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

// onReadDeadline is called on the read goroutine when the socket's read
// deadline ran out: the pre-auth backstop ServeHTTP set (once the session is
// authenticated the socket has no read deadline; the linger deadline of a
// closed one is not reported). The scheduler's auth deadline comes first
// unless its clock lags real time (a wall clock stepped back, a fake
// clock); the client must then get what that deadline would have sent,
// 4408, not the 1000 "normal closure" gws answers a read timeout with,
// which tells a client not to reconnect.
func (s *Session) onReadDeadline() {
	s.mu.Lock()
	ok := s.state == session.Pending && s.markClosedLocked(closeAuthTimeout)
	s.mu.Unlock()
	if ok {
		s.writeClose(closeAuthTimeout)
	}
}

func (s *Session) handleMessage(m Message) {
	h := s.srv.opts.OnMessage
	if h == nil {
		s.flushHeld()
		s.writeFrame(protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeError, Code: protocol.ErrorNotAccepted, Message: "messages not accepted", Ref: m.ID}))
		return
	}
	var err error
	s.beginHandler()
	ctx := s.handlerContext()
	panicked := s.srv.guard(s.id, "OnMessage", func() { err = h(ctx, s, m) })
	// Replies first: an error frame for this message goes after them. A
	// handler that succeeded may leave its replies to be written with
	// those of the client's next messages, if these are already here.
	s.flushAfterHandler(err == nil && !panicked)
	if panicked {
		s.close(closeInternal)
		return
	}
	if err == nil {
		return
	}
	var ce *protocol.CloseError
	var me *MessageError
	switch {
	case errors.As(err, &ce):
		s.close(ce)
	case errors.As(err, &me):
		s.writeFrame(protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeError, Code: me.Code, Message: me.Message, Ref: m.ID}))
	default:
		s.srv.opts.Logger.Error("wsauth: message handler failed", "session", s.id, "err", err)
		s.writeFrame(protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeError, Code: protocol.ErrorInternal, Message: "internal error", Ref: m.ID}))
	}
}

// messageIdentity sets m.Identity: the session's, or, with
// Options.TokenPerMessage, that of token, verified. It answers a message
// it refuses with an error frame and reports false.
func (s *Session) messageIdentity(m *Message, token string) bool {
	srv := s.srv
	s.mu.Lock()
	own := s.ident
	s.mu.Unlock()
	if !srv.opts.TokenPerMessage {
		m.Identity = own
		return true
	}
	refuse := func(code protocol.ErrorCode, reason string) bool {
		s.writeFrame(protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeError, Code: code, Message: reason, Ref: m.ID}))
		return false
	}
	if token == "" {
		return refuse(protocol.ErrorReauthRequired, "token required")
	}
	// Bounded like an auth frame's verification, by a deadline armed
	// only if the Verifier looks at it (see lazyDeadline).
	ctx, cancel := withLazyDeadline(s.ctx, time.Now().Add(srv.opts.AuthTimeout))
	ident, ce := srv.check(ctx, "message", token, slog.String("session", s.id))
	cancel()
	switch {
	case ce == closeTokenRevoked:
		return refuse(protocol.ErrorForbidden, ce.Reason)
	case ce != nil:
		return refuse(protocol.ErrorReauthRequired, ce.Reason)
	case ident.Principal() != own.Principal():
		return refuse(protocol.ErrorForbidden, "subject changed")
	}
	m.Identity = ident
	return true
}
