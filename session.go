package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
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

// Subject returns the subject of the session's identity.
func (s *Session) Subject() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ident.Subject
}

// State returns the session's current state.
func (s *Session) State() session.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Send queues data, one JSON value, for delivery to the client as a message
// frame. It does not block on the network. It returns nil once wsauth is
// responsible for the message: it is then either delivered, in order, or
// handed to Options.OnUndelivered. While the session's token is expired the
// message is buffered. It returns ErrSessionClosed if the session already
// closed and ErrInvalidData if data is not valid JSON.
func (s *Session) Send(data json.RawMessage) error {
	it, err := newItem(data)
	if err != nil {
		return err
	}
	return s.enqueue(it, false)
}

// Reply is Send for answering a client's message from Options.OnMessage.
// While the session's OnMessage handler runs, a reply is queued like any
// message and written when the handler returns, by the goroutine that ran
// the handler, instead of by a writer goroutine started for it: on a
// request/response connection that saves a goroutine handoff per message.
// Replies and Sends keep one order. Called when no handler of the session
// is running, Reply is exactly Send.
//
// A reply therefore waits for its handler to return (or for the next Send
// from another goroutine, which writes everything queued); a handler that
// must deliver something before it finishes a long task should use Send.
func (s *Session) Reply(data json.RawMessage) error {
	it, err := newItem(data)
	if err != nil {
		return err
	}
	return s.enqueue(it, true)
}

// Close closes the session with code and a short reason (sent to the client:
// no secrets). It does not wait for the client.
func (s *Session) Close(code CloseCode, reason string) {
	s.close(protocol.NewCloseError(code, reason))
}

// newItem encodes data as a message frame once; the frame can then be shared
// by every session it is sent to.
func newItem(data json.RawMessage) (session.Item, error) {
	if !protocol.ValidData(data) {
		return session.Item{}, ErrInvalidData
	}
	frame := protocol.AppendMessage(make([]byte, 0, len(data)+messageOverhead), data)
	return session.Item{Frame: frame, Data: frame[messagePrefixLen : len(frame)-1 : len(frame)-1]}, nil
}

var (
	messagePrefixLen = len(protocol.AppendMessage(nil, json.RawMessage("0"))) - 2
	messageOverhead  = messagePrefixLen + 1
)

// enqueue queues it. A reply made while OnMessage runs is left for the read
// goroutine to write when the handler returns (see flushAfterHandler).
func (s *Session) enqueue(it session.Item, reply bool) error {
	s.mu.Lock()
	if s.state == session.Closed {
		s.mu.Unlock()
		return ErrSessionClosed
	}
	if err := s.outbox.Push(it); err != nil {
		s.overflowed = append(s.overflowed, it)
		ce := protocol.NewCloseError(protocol.CloseBufferOverflow, "buffer overflow")
		s.markClosedLocked(ce)
		s.mu.Unlock()
		// Do not make the sender wait for the close frame to be written.
		go s.writeClose(ce)
		return nil
	}
	if !reply || !s.inHandler {
		s.scheduleDrainLocked()
	}
	s.mu.Unlock()
	return nil
}

func (s *Session) scheduleDrainLocked() {
	if s.draining || s.paused || s.state == session.Closed || s.outbox.Len() == 0 {
		return
	}
	s.draining = true
	// gws runs Async jobs of one connection one at a time, in order, on a
	// goroutine that exists only while jobs are queued.
	s.socket.Async(s.drainFn)
}

// drainBatch is how many frames drain takes per hold of s.mu.
const drainBatch = 16

// drain writes queued frames until the outbox is empty, paused or closed.
func (s *Session) drain() { _ = s.drainUpTo(-1) }

// drainUpTo writes queued frames like drain, but at most limit of them
// (no limit if it is negative); if frames remain after that, it hands them
// to a drain job. The caller set s.draining. It returns how many frames it
// wrote itself.
//
// Frames are peeked, written, and only then discarded from the outbox, so
// that the frames being written still count against the outbox's bounds.
// Only the drainer (s.draining) removes from the outbox's front, and
// nothing is put in front of it while a drain runs (PushFront happens at
// the first auth, while the session is paused), so the frames discarded
// are the ones written. A frame whose write failed stays queued: finish
// hands it to OnUndelivered with the rest.
func (s *Session) drainUpTo(limit int) (written int) {
	var batch [drainBatch]session.Item
	for {
		s.mu.Lock()
		if s.paused || s.state == session.Closed {
			s.stopDrainingLocked()
			s.mu.Unlock()
			return
		}
		if limit == 0 {
			s.stopDrainingLocked()
			s.scheduleDrainLocked()
			s.mu.Unlock()
			return
		}
		size := len(batch)
		if limit > 0 && limit < size {
			size = limit
		}
		n := s.outbox.Peek(batch[:size])
		if n == 0 {
			s.stopDrainingLocked()
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		ok := 0
		var err error
		for ok < n {
			if err = s.socket.WriteMessage(gws.OpcodeText, batch[ok].Frame); err != nil {
				break
			}
			ok++
		}
		clear(batch[:n])
		written += ok
		limit -= ok
		s.mu.Lock()
		s.outbox.Discard(ok)
		if err != nil {
			// gateConn closed the socket: the read loop ends and finish
			// says why (closeNotReading for a write timeout).
			s.stopDrainingLocked()
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// beginHandler marks OnMessage as running: replies wait for it.
func (s *Session) beginHandler() {
	s.mu.Lock()
	s.inHandler = true
	s.mu.Unlock()
}

// flushAfterHandler runs on the read goroutine when OnMessage returns: it
// writes what was queued while the handler ran (its replies, and whatever
// else came first), unless a drain job is already at it. It writes at most
// what is queued now, so senders on other goroutines cannot keep the read
// goroutine from reading; anything queued after goes to a drain job.
func (s *Session) flushAfterHandler() (written int) {
	s.mu.Lock()
	s.inHandler = false
	if s.draining || s.paused || s.state == session.Closed || s.outbox.Len() == 0 {
		s.mu.Unlock()
		return 0
	}
	s.draining = true
	n := s.outbox.Len()
	s.mu.Unlock()
	return s.drainUpTo(n)
}

func (s *Session) stopDrainingLocked() {
	s.draining = false
	s.drained.Broadcast()
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
		s.srv.registry.Remove(s.id, ident.Subject)
	}
	s.srv.forget(s)
	if len(undelivered) > 0 {
		s.srv.undelivered(ident.Subject, undelivered)
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
		// The reason is the client's own text: OnClose gets it, logs do not.
		return protocol.NewCloseError(protocol.CloseCode(cl.Code), string(cl.Reason)), false
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
