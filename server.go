package wsauth

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/reauth"
	"github.com/wsauth/wsauth/session"
)

// Server is an http.Handler that upgrades requests to authenticated
// WebSocket sessions. Mount it on the route of your WebSocket endpoint:
//
//	srv, err := wsauth.New(wsauth.Options{Verifier: v, OnMessage: handle})
//	mux.Handle("/ws", srv)
//
// A Server must be shut down with Shutdown.
type Server struct {
	opts      Options
	sched     *reauth.Scheduler
	plain     *gws.Upgrader // selects no subprotocol
	versioned *gws.Upgrader // selects wsauth.v1
	pending   pendingLimiter
	registry  session.Registry[*Session]
	resume    *resumeStore
	seq       atomic.Uint64 // numbers every message sent (session.Item.Seq)
	stallWait time.Duration // see outbound.go
	ctx       context.Context
	cancel    context.CancelFunc

	mu      sync.Mutex
	conns   map[*Session]struct{} // every upgraded, unfinished session
	closing bool
	wg      sync.WaitGroup // one per running connection
}

// New returns a Server configured by opts (see Options for defaults).
func New(opts Options) (*Server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	srv := &Server{
		opts:    o,
		sched:   reauth.New(o.Clock),
		pending: pendingLimiter{max: o.MaxPending, maxPerIP: o.MaxPendingPerIP},
		conns:   make(map[*Session]struct{}),
		// How long the work of a client's message waits for a receiver
		// that accepts no write.
		stallWait: min(500*time.Millisecond, o.WriteTimeout/2),
	}
	srv.ctx, srv.cancel = context.WithCancel(context.Background())
	srv.resume = newResumeStore(srv)
	gopts := func(subprotocols []string) *gws.ServerOption {
		return &gws.ServerOption{
			ReadMaxPayloadSize: o.MaxFrame,
			CheckUtf8Enabled:   false, // protocol.DecodeClient checks UTF-8
			ParallelEnabled:    false, // must stay off: it reorders messages
			SubProtocols:       subprotocols,
			Recovery:           srv.recovery,
		}
	}
	srv.plain = gws.NewUpgrader(events{}, gopts(nil))
	srv.versioned = gws.NewUpgrader(events{}, gopts([]string{protocol.Subprotocol}))
	return srv, nil
}

// recovery is gws's panic handler. Hooks have their own recovery; this only
// keeps a bug in a gws callback from killing the process.
func (srv *Server) recovery(gws.Logger) {
	if r := recover(); r != nil {
		srv.opts.Logger.Error("wsauth: recovered panic in connection callback", "panic", fmt.Sprint(r))
	}
}

// ServeHTTP checks the request, upgrades it and runs the connection until it
// closes. Refusals happen before the upgrade, as plain HTTP responses: 405
// for a method other than GET, 426 for a request that is not a WebSocket
// upgrade or asks for a WebSocket version other than 13, 400 for a missing
// or malformed Sec-WebSocket-Key, 403 for a disallowed Origin, 503 with
// Retry-After when the server is shutting down or a pending-connection cap
// is full.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") ||
		r.Header.Get("Sec-WebSocket-Version") != "13" || len(r.Header.Values("Sec-WebSocket-Version")) != 1 {
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "websocket upgrade required", http.StatusUpgradeRequired)
		return
	}
	if !validKey(r.Header.Values("Sec-WebSocket-Key")) {
		http.Error(w, "bad Sec-WebSocket-Key", http.StatusBadRequest)
		return
	}
	if !srv.opts.originAllowed(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	if srv.isClosing() {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	ip := srv.opts.ClientIP(r)
	if !srv.pending.acquire(ip) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many pending connections", http.StatusServiceUnavailable)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		srv.pending.release(ip)
		http.Error(w, "websocket not supported on this connection", http.StatusInternalServerError)
		return
	}
	netConn, brw, err := hj.Hijack()
	if err != nil {
		srv.pending.release(ip)
		return
	}
	gc := &gateConn{Conn: netConn, writeTimeout: srv.opts.WriteTimeout, gate: frameGate{
		maxMessage: uint64(srv.opts.MaxPreAuthFrame),
		maxTotal:   2 * uint64(srv.opts.MaxPreAuthFrame),
	}}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		gc.prefix = append([]byte(nil), b...)
	}
	upgrader := srv.plain
	if headerHasToken(r.Header, "Sec-WebSocket-Protocol", protocol.Subprotocol) {
		upgrader = srv.versioned
	}
	// Backstop only: the auth deadline is the scheduler's. This read deadline
	// is cleared on authentication. gateConn keeps gws from moving it.
	_ = netConn.SetReadDeadline(time.Now().Add(srv.opts.AuthTimeout + srv.opts.WriteTimeout))
	socket, err := upgrader.UpgradeFromConn(gc, bufio.NewReaderSize(gc, 4096), forGWS(r))
	if err != nil {
		// gws wrote a 400 and called gc.Close, which only shuts the write
		// side: the socket itself is ours to close.
		_ = netConn.Close()
		srv.pending.release(ip)
		return
	}
	s := srv.newSession(socket, gc, ip, r.RemoteAddr)
	if !srv.track(s) {
		s.close(protocol.NewCloseError(protocol.CloseGoingAway, "server shutting down"))
		s.finish(nil)
		return
	}
	// Run the read loop on a goroutine of its own and return: net/http then
	// releases the request's buffered reader and writer, about 10 KiB per
	// connection that a hijacked connection no longer uses.
	go func() {
		defer srv.wg.Done()
		defer s.recoverReadLoop()
		socket.ReadLoop() // returns after OnClose, that is after finish
	}()
}

// validKey reports whether the request carries exactly one
// Sec-WebSocket-Key that is the base64 encoding of 16 bytes (RFC 6455
// section 4.1).
func validKey(values []string) bool {
	if len(values) != 1 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(values[0])
	return err == nil && len(b) == 16
}

// forGWS returns r with the headers gws reads in the form it reads them.
// gws looks only at the first value of each header and matches Upgrade
// exactly, where ServeHTTP accepted a token in any value: a request with
// two Connection headers, or wsauth.v1 in a second Sec-WebSocket-Protocol
// header, would pass wsauth's checks and then fail inside gws, after the
// hijack. ServeHTTP has checked these headers already.
func forGWS(r *http.Request) *http.Request {
	protos := r.Header.Values("Sec-WebSocket-Protocol")
	if len(protos) <= 1 && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
		return r // as gws reads it already: the common case costs no copy
	}
	h := r.Header.Clone()
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", "websocket")
	if len(protos) > 1 {
		h.Set("Sec-WebSocket-Protocol", strings.Join(protos, ","))
	}
	r2 := *r
	r2.Header = h
	return &r2
}

func (srv *Server) newSession(socket *gws.Conn, gc *gateConn, ip, remote string) *Session {
	s := &Session{
		srv:         srv,
		id:          newSessionID(),
		ip:          ip,
		remoteAddr:  remote,
		socket:      socket,
		conn:        gc,
		state:       session.Pending,
		pendingSlot: true,
		paused:      true,
		outbox:      session.NewOutbox(srv.opts.BufferMessages, srv.opts.BufferBytes),
	}
	s.drained.L = &s.mu
	s.drainFn, s.timerFn = s.drain, s.onTimer
	s.ctx, s.cancel = context.WithCancel(srv.ctx)
	gc.sess = s
	gc.onViolation = s.onGateViolation
	s.mu.Lock()
	s.authDeadline = srv.opts.Clock.Now().Add(srv.opts.AuthTimeout)
	s.setPhaseLocked(phaseAuth, s.authDeadline)
	s.mu.Unlock()
	return s
}

// track adds s to the running connections unless the server is closing.
func (srv *Server) track(s *Session) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closing {
		return false
	}
	srv.conns[s] = struct{}{}
	srv.wg.Add(1)
	return true
}

func (srv *Server) forget(s *Session) {
	srv.mu.Lock()
	delete(srv.conns, s)
	srv.mu.Unlock()
}

func (srv *Server) isClosing() bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.closing
}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// headerHasToken reports whether a comma-separated header contains token,
// case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// Session returns the authenticated session with that id.
func (srv *Server) Session(id string) (*Session, bool) { return srv.registry.Get(id) }

// Sessions returns the authenticated sessions of principal.
func (srv *Server) Sessions(principal Principal) []*Session {
	return srv.registry.ByPrincipal(principal, nil)
}

// Len returns the number of authenticated sessions (active or expired).
func (srv *Server) Len() int { return srv.registry.Len() }

// Pending returns the number of connections that have not authenticated yet.
func (srv *Server) Pending() int { return srv.pending.count() }

// Send queues data for the authenticated session with that id, like
// Session.Send. It returns ErrSessionNotFound if there is none.
//
// ctx says who is sending. Called with the ctx Options.OnMessage received
// (or one derived from it), the send is the work of that client's message:
// when the receiver's outbox is full, Send waits for room (so the sending
// client's reading waits too) until the receiver catches up, closes, stalls
// (it accepted no write for 500 ms, or half of WriteTimeout if that is
// less: then ErrBufferFull) or ctx ends (ctx.Err()). Called with any other
// ctx, Send never blocks: a full outbox refuses the message with
// ErrBufferFull.
func (srv *Server) Send(ctx context.Context, sessionID string, data json.RawMessage) error {
	s, ok := srv.registry.Get(sessionID)
	if !ok {
		return ErrSessionNotFound
	}
	it, err := srv.newItem(data)
	if err != nil {
		return err
	}
	return s.enqueue(ctx, it, causeOf(ctx), false)
}

// SendToPrincipal queues data for every authenticated session of principal
// and returns how many took it. The frame is encoded once. ctx says who is
// sending, as for Send; sessions whose outbox was full do not count, and
// then the error wraps ErrBufferFull. A principal with no session takes
// nothing: (0, nil), and the message is gone unless Options.ResumeFor keeps
// it (it does not: only what a session failed to deliver is kept).
func (srv *Server) SendToPrincipal(ctx context.Context, principal Principal, data json.RawMessage) (int, error) {
	it, err := srv.newItem(data)
	if err != nil {
		return 0, err
	}
	return srv.sendAll(ctx, srv.registry.ByPrincipal(principal, nil), it)
}

// Broadcast queues data for every authenticated session and returns how
// many took it, like SendToPrincipal.
func (srv *Server) Broadcast(ctx context.Context, data json.RawMessage) (int, error) {
	it, err := srv.newItem(data)
	if err != nil {
		return 0, err
	}
	return srv.sendAll(ctx, srv.registry.All(nil), it)
}

// Revoke closes every session of principal with 4403 "session revoked" and
// returns how many it closed.
func (srv *Server) Revoke(principal Principal) int {
	ce := protocol.NewCloseError(protocol.CloseForbidden, "session revoked")
	n := 0
	for _, s := range srv.registry.ByPrincipal(principal, nil) {
		s.mu.Lock()
		ok := s.markClosedLocked(ce)
		s.mu.Unlock()
		if ok {
			n++
			go s.writeClose(ce)
		}
	}
	return n
}

// Shutdown refuses new connections (503), closes every session with 1001
// "server shutting down" and waits until all of them have finished and their
// OnClose hooks have returned. If ctx ends first, Shutdown closes the
// sockets still open without a close frame, releases the server's timers and
// hands what is kept for resume to OnUndelivered, then returns ctx's error;
// sessions whose hooks are still running finish on their own. Messages still
// queued go to OnUndelivered. Shutdown does not close the Verifier.
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.mu.Lock()
	srv.closing = true
	all := make([]*Session, 0, len(srv.conns))
	for s := range srv.conns {
		all = append(all, s)
	}
	srv.mu.Unlock()

	ce := protocol.NewCloseError(protocol.CloseGoingAway, "server shutting down")
	for _, s := range all {
		go s.close(ce)
	}
	done := make(chan struct{})
	go func() {
		srv.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		srv.mu.Lock()
		for s := range srv.conns {
			_ = s.conn.Conn.Close()
		}
		srv.mu.Unlock()
	}
	srv.cancel()
	srv.sched.Stop()
	srv.resume.flush()
	return err
}

// undelivered hands what a session did not deliver to the resume store or,
// without resume, to OnUndelivered.
func (srv *Server) undelivered(p Principal, items []session.Item) {
	if srv.opts.ResumeFor > 0 && p.Subject != "" && !srv.isClosing() {
		srv.resume.put(p, items)
		return
	}
	srv.handOver(p, items)
}

// handOver gives items to OnUndelivered, or logs that they are dropped.
func (srv *Server) handOver(p Principal, items []session.Item) {
	if len(items) == 0 {
		return
	}
	if h := srv.opts.OnUndelivered; h != nil {
		data := make([]json.RawMessage, len(items))
		for i, it := range items {
			data[i] = it.Data
		}
		srv.guard("", "OnUndelivered", func() { h(p, data) })
		return
	}
	srv.opts.Logger.Warn("wsauth: undelivered messages dropped: no OnUndelivered hook",
		"sub", p.Subject, "iss", p.Issuer, "count", len(items))
}
