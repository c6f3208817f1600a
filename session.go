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

	"github.com/wsauth/wsauth/internal/deadline"
	"github.com/wsauth/wsauth/internal/outbox"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// Identity is the verified identity bound to a session.
type Identity = session.Identity

// Principal names one user: a subject of one issuer (see session.Principal).
type Principal = session.Principal

// State is where a session is in its life: session.Pending, Active,
// Expired or Closed (see session.State).
type State = session.State

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
	entry deadline.Entry

	mu           sync.Mutex
	drained      sync.Cond // signalled when draining goes false; uses mu
	state        session.State
	ident        Identity
	authDeadline time.Time // while pending
	phase        phase
	registered   bool // in the server's registry
	pendingSlot  bool // holds a slot of the pending limiter
	outbox       *outbox.Queue
	paused       bool                 // outbox is held: before auth_ok, and while expired
	draining     bool                 // a drain job is queued or running
	inHandler    bool                 // OnMessage runs: replies wait for it to return
	held         atomic.Bool          // replies wait for the read goroutine (flushAfterHandler); set under mu
	overflowed   []outbox.Item        // refused by a full outbox: undelivered, last
	closeErr     *protocol.CloseError // why the server closed the session
	finished     bool                 // finish ran
	room         chan struct{}        // closed when the outbox gains room; nil if nobody waits
	// writingSince is when the socket write in progress started, as time
	// since monoEpoch; 0 while no write is in progress (stalledLocked).
	writingSince atomic.Int64
	hctx         context.Context // the context OnMessage gets (handlerContext)
	lastAuth     time.Time       // when the last auth frame was let through (takeAuthBudget)
	reauthAsked  bool            // reauth_required sent and not answered yet
	askedAt      time.Time       // when reauth_required was sent, for the Observer
	streamEpoch  string          // with a Broker: the position of the last message of the user's stream queued
	streamSeq    uint64
	lagging      bool // behind its stream: stream messages are read from its history (catchUp)
	catchingUp   bool // a catchUp runs
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

// Server returns the server the session belongs to: hooks reach the other
// sessions through it (s.Server().SendToPrincipals, Broadcast).
func (s *Session) Server() *Server { return s.srv }

// RemoteAddr returns the client's network address.
func (s *Session) RemoteAddr() string { return s.remoteAddr }

// Context returns a context that is cancelled when the session closes.
func (s *Session) Context() context.Context { return s.ctx }

// Identity returns the session's current verified identity; zero while the
// session is pending. It changes on every successful reauthentication.
func (s *Session) Identity() Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ident
}

// Principal returns the user the session is authenticated as; zero while
// the session is pending.
func (s *Session) Principal() Principal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ident.Principal()
}

// State returns the session's current state.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Close closes the session with code and a short reason (sent to the client:
// no secrets). It does not wait for the client.
func (s *Session) Close(code protocol.CloseCode, reason string) {
	s.close(&protocol.CloseError{Code: code, Reason: reason})
}

// markClosedLocked moves the session to Closed, recording why. It reports
// false if the session was already closed.
func (s *Session) markClosedLocked(ce *protocol.CloseError) bool {
	if s.state == session.Closed {
		return false
	}
	s.setStateLocked(session.Closed)
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
func (s *Session) close(ce *protocol.CloseError) {
	s.mu.Lock()
	ok := s.markClosedLocked(ce)
	s.mu.Unlock()
	if ok {
		s.writeClose(ce)
	}
}

func (s *Session) writeClose(ce *protocol.CloseError) {
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
	s.setStateLocked(session.Closed)
	s.phase = phaseNone
	s.wakeLocked()
	for s.draining { // the socket is closed: the drain ends at once
		s.drained.Wait()
	}
	queued := s.outbox.Drain()
	if len(queued) > 0 && s.srv.opts.Observer != nil {
		bytes := 0
		for _, it := range queued {
			bytes += len(it.Frame)
		}
		s.srv.observe(Event{Kind: Queued, N: -len(queued), Bytes: -bytes})
	}
	undelivered := append(queued, s.overflowed...)
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
		if s.srv.member != nil {
			s.srv.streams.leave(s, ident.Principal())
		}
	}
	s.srv.forget(s)
	if len(undelivered) > 0 {
		s.srv.undelivered(ident.Principal(), undelivered)
	}
	s.srv.observe(Event{Kind: Closed, Code: ce.Code})
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
func closeErrorFrom(err error, sent protocol.CloseCode) (ce *protocol.CloseError, byServer bool) {
	var cl *gws.CloseError
	if errors.As(err, &cl) && cl.Code != 0 {
		// The reason is the client's own text: OnClose gets it, logs do
		// not. gws does not check its UTF-8 (RFC 6455 would answer 1007;
		// the connection is closing either way): OnClose gets valid UTF-8.
		return &protocol.CloseError{Code: protocol.CloseCode(cl.Code), Reason: strings.ToValidUTF8(string(cl.Reason), "\uFFFD")}, false
	}
	// gws answers a read error of its own (end of stream, reset) with a
	// 1000 close frame, which a dropped client never reads; wsauth itself
	// never closes with 1000. So a 1000 that gws sent means the connection
	// was lost, as a close that was never written does.
	if sent != 0 && sent != protocol.CloseNormal {
		return &protocol.CloseError{Code: sent, Reason: sent.String()}, true
	}
	return closeConnectionLost, false
}
