package wsauth

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/wsauth/wsauth/internal/deadline"
	"github.com/wsauth/wsauth/internal/outbox"
	"github.com/wsauth/wsauth/internal/registry"
	"github.com/wsauth/wsauth/protocol"
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
	sched     *deadline.Scheduler
	plain     *gws.Upgrader // selects no subprotocol
	versioned *gws.Upgrader // selects wsauth.v1
	pending   pendingLimiter
	registry  registry.Registry[*Session]
	resume    *resumeStore
	seq       atomic.Uint64 // numbers every message sent (outbox.Item.Seq)
	stallWait time.Duration // see outbound.go
	ctx       context.Context
	cancel    context.CancelFunc

	mu      sync.Mutex
	conns   map[*Session]struct{} // every upgraded, unfinished session
	closing bool
	wg      sync.WaitGroup // one per upgrade in progress or running connection
}

// New returns a Server configured by opts (see Options for defaults).
func New(opts Options) (*Server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	srv := &Server{
		opts:    o,
		sched:   deadline.New(o.Clock),
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

// SendToPrincipals queues data for every authenticated session of the
// given users (each user once, however often listed: "the owner and every
// admin") and returns how many sessions took it. The frame is encoded once
// for all of them. ctx says who is sending, as for Send; sessions whose
// outbox was full do not count, and then the error wraps ErrBufferFull.
//
// A user with no session on this server takes nothing, and the message is
// not kept for later: Options.ResumeFor keeps only what a session failed to
// write. (0, nil) says so; store such messages in the application if the
// user must get them.
func (srv *Server) SendToPrincipals(ctx context.Context, data json.RawMessage, principals ...Principal) (int, error) {
	it, err := srv.newItem(data)
	if err != nil {
		return 0, err
	}
	var sessions []*Session
	for i, p := range principals {
		if !slices.Contains(principals[:i], p) {
			sessions = srv.registry.ByPrincipal(p, sessions)
		}
	}
	return srv.sendAll(ctx, sessions, it)
}

// Broadcast queues data for every authenticated session and returns how
// many took it, like SendToPrincipals.
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
	ce := closeRevoked
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
// OnClose hooks have returned; a connection whose upgrade was under way
// gets its 101 and then the same 1001, before Shutdown returns. Messages
// still queued are not flushed first (a client that is behind would hold
// the shutdown up): they go to OnUndelivered, as does what
// Options.ResumeFor kept (resume keeps nothing once Shutdown has begun).
// If ctx ends first, Shutdown closes the sockets still open without a
// close frame, releases the server's timers and hands what is kept for
// resume to OnUndelivered, then returns ctx's error; sessions whose hooks
// are still running finish on their own. Shutdown does not close the
// Verifier.
//
// Order: call Shutdown before http.Server.Shutdown. The http.Server does
// not track upgraded connections, so its Shutdown neither closes nor waits
// for sessions; shutting wsauth down first sends every client its 1001
// while the HTTP server still answers (with 503 here, so a load balancer
// sends the reconnects elsewhere), and then the HTTP server drains the
// rest. Close the Verifier last.
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.mu.Lock()
	srv.closing = true
	all := make([]*Session, 0, len(srv.conns))
	for s := range srv.conns {
		all = append(all, s)
	}
	srv.mu.Unlock()

	ce := closeShutdown
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
func (srv *Server) undelivered(p Principal, items []outbox.Item) {
	if srv.opts.ResumeFor > 0 && p.Subject != "" && !srv.isClosing() {
		srv.resume.put(p, items)
		return
	}
	srv.handOver(p, items)
}

// handOver gives items to OnUndelivered, or logs that they are dropped.
func (srv *Server) handOver(p Principal, items []outbox.Item) {
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
