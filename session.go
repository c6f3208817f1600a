package wsauth

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/reauth"
	"github.com/wsauth/wsauth/session"
)

// Session is one WebSocket connection, from the upgrade until it closes. Its
// methods are safe for concurrent use.
type Session struct {
	srv        *Server
	id         string
	ip         string
	remoteAddr string
	socket     *gws.Conn
	conn       *gateConn
	ctx        context.Context
	cancel     context.CancelFunc
	drainFn    func() // s.drain, allocated once
	timerFn    func() // s.onTimer, allocated once

	// entry is the session's single slot in the server's scheduler: the next
	// deadline of the session, whichever phase it is in.
	entry reauth.Entry

	mu           sync.Mutex
	drained      sync.Cond // signalled when draining goes false; uses mu
	state        session.State
	ident        Identity
	authDeadline time.Time // while pending
	phase        phase
	registered   bool // in the server's registry
	pendingSlot  bool // holds a slot of the pending limiter
	outbox       *session.Outbox
	paused       bool           // outbox is held: before auth_ok, and while expired
	draining     bool           // a drain job is queued or running
	inHandler    bool           // OnMessage runs: replies wait for it to return
	overflowed   []session.Item // refused by a full outbox: undelivered, last
	closeErr     *CloseError    // why the server closed the session
	finished     bool           // finish ran
	room         chan struct{}  // closed when the outbox gains room; nil if nobody waits
	// progressAt is when the outbox last made progress (a write completed,
	// or it went from empty to not), as time since monoEpoch.
	progressAt  atomic.Int64
	hctx        context.Context // the context OnMessage gets (handlerContext)
	lastAuth    time.Time       // when the last auth frame was let through (takeAuthBudget)
	reauthAsked bool            // reauth_required sent and not answered yet
}

// phase says what the session's scheduler entry does when it fires.
type phase uint8

const (
	phaseNone   phase = iota
	phaseAuth         // auth deadline of a pending session: close 4408
	phaseLead         // send reauth_required
	phaseExpire       // token expired: buffer (ExpiryReauth) or close (ExpiryClose)
	phaseGrace        // grace over: close 4440
)

// ID returns the session's opaque id (as sent in auth_ok).
func (s *Session) ID() string { return s.id }

// RemoteAddr returns the client's network address.
func (s *Session) RemoteAddr() string { return s.remoteAddr }

// Context returns a context that is cancelled when the session closes.
func (s *Session) Context() context.Context { return s.ctx }

// Subprotocol returns the negotiated subprotocol: "wsauth.v1" or "".
func (s *Session) Subprotocol() string { return s.socket.SubProtocol() }

// Identity returns the session's current verified identity; zero while the
// session is pending. It changes on every successful reauthentication.
func (s *Session) Identity() Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ident
}

// Subject returns the subject of the session's identity. It names a user
// only together with the issuer: see Principal.
func (s *Session) Subject() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ident.Subject
}

// Principal returns the user the session is authenticated as; zero while
// the session is pending.
func (s *Session) Principal() Principal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ident.Principal()
}

// State returns the session's current state.
func (s *Session) State() session.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Close closes the session with code and a short reason (sent to the client:
// no secrets). It does not wait for the client.
func (s *Session) Close(code CloseCode, reason string) {
	s.close(protocol.NewCloseError(code, reason))
}

// markClosedLocked moves the session to Closed, recording why. It reports
// false if the session was already closed.
func (s *Session) markClosedLocked(ce *CloseError) bool {
	if s.state == session.Closed {
		return false
	}
	s.state = session.Closed
	s.closeErr = ce
	s.phase = phaseNone
	s.wakeLocked()
	s.conn.ownClose.Store(true)
	// Release hooks and verifications waiting on the session's context now:
	// finish runs only after the read loop, which may be the one waiting.
	s.cancel()
	return true
}

// close closes the session with ce, writing the close frame on the calling
// goroutine (the write is bounded by Options.WriteTimeout).
func (s *Session) close(ce *CloseError) {
	s.mu.Lock()
	ok := s.markClosedLocked(ce)
	s.mu.Unlock()
	if ok {
		s.writeClose(ce)
	}
}

func (s *Session) writeClose(ce *CloseError) {
	reason := ce.Reason
	if len(reason) > protocol.MaxReasonLen {
		reason = reason[:protocol.MaxReasonLen]
	}
	// WriteClose also closes the socket, which ends the read loop and so
	// calls finish.
	_ = s.socket.WriteClose(uint16(ce.Code), []byte(reason))
}

// writeFrame writes a control frame (auth_ok, error) synchronously.
func (s *Session) writeFrame(frame []byte) {
	_ = s.socket.WriteMessage(gws.OpcodeText, frame)
}

// finish runs once, on the connection's goroutine, after the read loop
// ended: it settles what was not delivered and tells the application.
func (s *Session) finish(err error) {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	s.finished = true
	byServer := s.closeErr != nil
	switch {
	case byServer:
	case s.conn.writeTimedOut.Load():
		s.closeErr, byServer = closeNotReading, true
	default:
		s.closeErr, byServer = closeErrorFrom(err, protocol.CloseCode(s.conn.sentClose.Load()))
	}
	s.state = session.Closed
	s.phase = phaseNone
	s.wakeLocked()
	for s.draining { // the socket is closed: the drain ends at once
		s.drained.Wait()
	}
	undelivered := append(s.outbox.Drain(), s.overflowed...)
	s.overflowed = nil
	ce, ident := s.closeErr, s.ident
	registered, pendingSlot := s.registered, s.pendingSlot
	s.registered, s.pendingSlot = false, false
	s.mu.Unlock()

	s.srv.sched.Cancel(&s.entry)
	s.cancel()
	if pendingSlot {
		s.srv.pending.release(s.ip)
	}
	if registered {
		s.srv.registry.Remove(s.id, ident.Principal())
	}
	s.srv.forget(s)
	if len(undelivered) > 0 {
		s.srv.undelivered(ident.Principal(), undelivered)
	}
	s.srv.opts.Logger.Debug("wsauth: session closed", "session", s.id, "sub", ident.Subject,
		"remote", s.remoteAddr, "code", int(ce.Code), "by_server", byServer)
	if h := s.srv.opts.OnClose; h != nil {
		s.srv.guard(s.id, "OnClose", func() { h(s, ce) })
	}
	s.conn.drainAndClose()
}

// recoverReadLoop runs deferred on the read goroutine. A panic there (in
// gws reading a hostile stream, or in wsauth) must cost one connection,
// never the process: the session is closed with 1011 and finished, as if
// its read loop had ended.
func (s *Session) recoverReadLoop() {
	r := recover()
	if r == nil {
		return
	}
	s.srv.opts.Logger.Error("wsauth: read loop panicked", "session", s.id, "remote", s.remoteAddr,
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	s.close(closeInternal)
	s.finish(nil) // unless OnClose ran before the panic
}

// closeErrorFrom says how a session the server did not close itself ended:
// by the client's close frame, by a close frame gws sent on its own (a
// protocol error, a frame over MaxFrame), or by the connection dropping.
func closeErrorFrom(err error, sent protocol.CloseCode) (ce *CloseError, byServer bool) {
	var cl *gws.CloseError
	if errors.As(err, &cl) && cl.Code != 0 {
		// The reason is the client's own text: OnClose gets it, logs do
		// not. gws does not check its UTF-8 (RFC 6455 would answer 1007;
		// the connection is closing either way): OnClose gets valid UTF-8.
		return protocol.NewCloseError(protocol.CloseCode(cl.Code), strings.ToValidUTF8(string(cl.Reason), "\uFFFD")), false
	}
	if sent != 0 {
		return protocol.NewCloseError(sent, sent.String()), true
	}
	return protocol.NewCloseError(protocol.CloseAbnormal, "connection lost"), false
}

// guard runs f, turning a panic into a logged error: every application
// hook, and every goroutine gws does not guard, runs under it. session is
// the id for the log ("" for none).
func (srv *Server) guard(session, what string, f func()) (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			panicked = true
			srv.opts.Logger.Error("wsauth: application hook panicked", "hook", what,
				"session", session, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	f()
	return false
}
