package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lxzan/gws"

	"github.com/wsauth/wsauth/broker"
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
	node      string        // this server's name in its cluster: the prefix of its session ids
	member    broker.Member // with Options.Broker; nil without
	streams   streamSet     // with Options.Broker: the users' streams this node has sessions of
	revoked   revocations
	refusals  *refusalLog   // rate-limited log lines of refusals
	once      onceStore     // tickets: member, or private without a broker
	private   broker.Member // the private broker's member, left at Shutdown
	stallWait time.Duration // see outbound.go
	ctx       context.Context
	cancel    context.CancelFunc

	mu      sync.Mutex
	conns   map[*Session]struct{} // every upgraded, unfinished session
	closing bool
	wg      sync.WaitGroup // one per upgrade in progress or running connection
}

// New returns a Server configured by opts (see Options for defaults). With
// Options.Broker it joins the cluster, which may take a round trip to the
// broker (bounded by 10 s).
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
	srv.node = newNodeID()
	srv.streams.srv = srv
	srv.revoked.keep = o.RevokeFor
	srv.refusals = newRefusalLog()
	if o.Broker != nil {
		ctx, cancel := context.WithTimeout(srv.ctx, brokerTimeout)
		srv.member, err = o.Broker.Join(ctx, srv.node, (*brokerHandler)(srv))
		cancel()
		if err != nil {
			srv.cancel()
			return nil, fmt.Errorf("wsauth: joining the broker: %w", err)
		}
		if o.Observer != nil {
			srv.member = observedMember{Member: srv.member, srv: srv}
		}
		srv.once = srv.member
	} else {
		// Tickets of one process: a broker of its own keeps them.
		srv.private, _ = broker.NewMemory(broker.MemoryOptions{Now: o.Clock.Now}).Join(srv.ctx, srv.node, nopHandler{})
		srv.once = srv.private
	}
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

// Node returns the server's name in its cluster (random, made at New); the
// ids of its sessions start with it.
func (srv *Server) Node() string { return srv.node }

// Pending returns the number of connections that have not authenticated yet.
func (srv *Server) Pending() int { return srv.pending.count() }

// Send queues data for the authenticated session with that id, like
// Session.Send. It returns ErrSessionNotFound if there is none. With a
// Broker, a session of another node is reached through it: nil then means
// that node took the message (an error wraps broker.ErrUnavailable when
// the cluster cannot be reached).
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
	it, err := srv.newItem(data)
	if err != nil {
		return err
	}
	if s, ok := srv.registry.Get(sessionID); ok {
		return s.enqueue(ctx, it, causeOf(ctx), false)
	}
	node, _, routable := strings.Cut(sessionID, ".")
	if srv.member == nil || !routable || node == srv.node {
		return ErrSessionNotFound
	}
	if err := srv.member.Send(ctx, node, sessionID, data); err != nil {
		if errors.Is(err, broker.ErrNoSession) {
			return ErrSessionNotFound
		}
		return fmt.Errorf("wsauth: sending to a session of node %s: %w", node, err)
	}
	return nil
}

// SendToPrincipals sends data to every session of the given users (each
// user once, however often listed: "the owner and every admin") and returns
// how many sessions of this node took it. ctx says who is sending, as for
// Send; sessions whose outbox was full do not count, and then the error
// wraps ErrBufferFull.
//
// Without a Broker, a user with no session takes nothing and the message
// is not kept: (0, nil) says so; store such messages in the application if
// the user must get them.
//
// With a Broker, the message is appended to each user's stream first: every
// session of the user, on every node, gets it in the stream's order, and a
// client that reconnects after missing it resumes from its position
// (docs/protocol.md, "Resume"). The count is of this node's sessions that
// took it now; those of other nodes get it through the broker. A session of
// this node whose outbox is full is not refused (unless ctx lets the sender
// wait for room): it falls behind its stream and reads the message from the
// stream's history when it has room. If the broker
// cannot be reached, this node's sessions still get the message, outside
// any stream (not resumable), and the error wraps broker.ErrUnavailable.
func (srv *Server) SendToPrincipals(ctx context.Context, data json.RawMessage, principals ...Principal) (int, error) {
	it, err := srv.newItem(data)
	if err != nil {
		return 0, err
	}
	cause := causeOf(ctx)
	n := 0
	var errs []error
	for i, p := range principals {
		if slices.Contains(principals[:i], p) {
			continue
		}
		if srv.member == nil {
			k, err := srv.sendAll(ctx, srv.registry.ByPrincipal(p, nil), it)
			n += k
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		pos, err := srv.member.Publish(ctx, p, data)
		if err != nil {
			k, _ := srv.sendAll(ctx, srv.registry.ByPrincipal(p, nil), it)
			n += k
			errs = append(errs, fmt.Errorf("wsauth: publishing to %s of %s: %w", p.Subject, p.Issuer, err))
			continue
		}
		n += srv.streams.deliver(ctx, cause, broker.Message{Principal: p, Position: pos, Data: data})
	}
	return n, errors.Join(errs...)
}

// Broadcast queues data for every authenticated session and returns how
// many of this node's took it, like SendToPrincipals without a Broker: a
// broadcast is not part of any stream. With a Broker, the other nodes'
// sessions get it through the broker; the error then wraps
// broker.ErrUnavailable if it cannot be reached.
func (srv *Server) Broadcast(ctx context.Context, data json.RawMessage) (int, error) {
	it, err := srv.newItem(data)
	if err != nil {
		return 0, err
	}
	n, err := srv.sendAll(ctx, srv.registry.All(nil), it)
	if srv.member != nil {
		if berr := srv.member.Broadcast(ctx, data); berr != nil {
			err = errors.Join(err, fmt.Errorf("wsauth: broadcasting to the cluster: %w", berr))
		}
	}
	return n, err
}

// Shutdown refuses new connections (503), closes every session with 1001
// "server shutting down" and waits until all of them have finished and their
// OnClose hooks have returned; a connection whose upgrade was under way
// gets its 101 and then the same 1001, before Shutdown returns. Messages
// still queued are not flushed first (a client that is behind would hold
// the shutdown up): they go to OnUndelivered (with a Broker, the messages
// of users' streams stay in the streams for the clients' resume). If ctx
// ends first, Shutdown closes the sockets still open without a close
// frame, releases the server's timers, leaves the cluster and returns
// ctx's error; sessions whose hooks are still running finish on their
// own. Shutdown does not close the Verifier or the Broker.
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
	if srv.member != nil {
		if lerr := srv.member.Leave(); lerr != nil {
			srv.opts.Logger.Warn("wsauth: leaving the broker failed", "err", lerr)
		}
	}
	if srv.private != nil {
		_ = srv.private.Leave()
	}
	return err
}

// undelivered hands what a session could not write to OnUndelivered: with
// a Broker, all but the messages of the user's stream, which the stream
// keeps for the client's resume.
func (srv *Server) undelivered(p Principal, items []outbox.Item) {
	if srv.member != nil {
		items = slices.DeleteFunc(items, func(it outbox.Item) bool { return it.Seq != 0 })
	}
	srv.handOver(p, items)
}

// handOver gives items to OnUndelivered, or logs that they are dropped.
func (srv *Server) handOver(p Principal, items []outbox.Item) {
	if len(items) == 0 {
		return
	}
	srv.observe(Event{Kind: Undelivered, N: len(items)})
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
