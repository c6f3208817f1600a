package wsauth

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/lxzan/gws"
	"github.com/wsauth/wsauth/internal/outbox"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// Accepting a connection: the checks before the upgrade, which refuse with
// plain HTTP statuses, the upgrade itself, and the session it starts.

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
		srv.refuse(w, http.StatusMethodNotAllowed, "method", "method not allowed")
		return
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") ||
		r.Header.Get("Sec-WebSocket-Version") != "13" || len(r.Header.Values("Sec-WebSocket-Version")) != 1 {
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Sec-WebSocket-Version", "13")
		srv.refuse(w, http.StatusUpgradeRequired, "upgrade", "websocket upgrade required")
		return
	}
	if !validKey(r.Header.Values("Sec-WebSocket-Key")) {
		srv.refuse(w, http.StatusBadRequest, "key", "bad Sec-WebSocket-Key")
		return
	}
	if !srv.opts.originAllowed(r) {
		srv.refuse(w, http.StatusForbidden, "origin", "origin not allowed")
		return
	}
	// From here on Shutdown waits for this request: an upgrade in progress
	// ends as a session that Shutdown closes, or not at all, before
	// Shutdown returns.
	if !srv.enter() {
		w.Header().Set("Retry-After", "5")
		srv.refuse(w, http.StatusServiceUnavailable, "shutdown", "server shutting down")
		return
	}
	ident, authed, r, ok := srv.preAuthenticate(w, r)
	if !ok {
		srv.wg.Done()
		return
	}
	ip := srv.opts.ClientIP(r)
	if !srv.pending.acquire(ip) {
		srv.wg.Done()
		w.Header().Set("Retry-After", "1")
		srv.refuse(w, http.StatusServiceUnavailable, "pending", "too many pending connections")
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		srv.pending.release(ip)
		srv.wg.Done()
		srv.refuse(w, http.StatusInternalServerError, "hijack", "websocket not supported on this connection")
		return
	}
	netConn, brw, err := hj.Hijack()
	if err != nil {
		srv.pending.release(ip)
		srv.wg.Done()
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
	// net/http hands its buffered reader over with the connection: gws
	// reads through it, from gc, instead of a new 4 KiB one.
	brw.Reader.Reset(gc)
	gc.br = brw.Reader
	upgrader := srv.plain
	if offersSubprotocol(r.Header) {
		upgrader = srv.versioned
	}
	// Backstop only: the auth deadline is the scheduler's, from the moment
	// the 101 is written; the 101 write takes up to WriteTimeout, hence the
	// sum. It ends a pending session only when the scheduler's clock lags
	// real time, and then with the same 4408 (Session.onReadDeadline). This
	// read deadline is cleared on authentication. gateConn keeps gws from
	// moving it.
	_ = netConn.SetReadDeadline(time.Now().Add(srv.opts.AuthTimeout + srv.opts.WriteTimeout))
	socket, err := upgrader.UpgradeFromConn(gc, gc.br, forGWS(r))
	if err != nil {
		// gws wrote a 400 and called gc.Close, which only shuts the write
		// side: the socket itself is ours to close.
		_ = netConn.Close()
		srv.pending.release(ip)
		srv.wg.Done()
		return
	}
	s := srv.newSession(socket, gc, ip, r.RemoteAddr)
	if !srv.track(s) {
		// Shutdown began during the upgrade and did not see s.
		s.close(closeShutdown)
		s.finish(nil)
		srv.wg.Done()
		return
	}
	// Run the read loop on a goroutine of its own and return: net/http then
	// releases the request's buffered reader and writer, about 10 KiB per
	// connection that a hijacked connection no longer uses.
	go func() {
		defer srv.wg.Done()
		defer s.recoverReadLoop()
		if authed {
			s.startAuthenticated(ident)
		}
		socket.ReadLoop() // returns after OnClose, that is after finish
	}()
}

// validKey reports whether the request carries exactly one
// Sec-WebSocket-Key that is the base64 encoding of 16 bytes (RFC 6455
// section 4.1).
func validKey(values []string) bool {
	if len(values) != 1 || len(values[0]) != 24 {
		return false
	}
	var b [18]byte
	n, err := base64.StdEncoding.Decode(b[:], []byte(values[0]))
	return err == nil && n == 16
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
		id:          srv.newSessionID(),
		ip:          ip,
		remoteAddr:  remote,
		socket:      socket,
		conn:        gc,
		state:       session.Pending,
		pendingSlot: true,
		paused:      true,
		outbox:      outbox.New(srv.opts.BufferMessages, srv.opts.BufferBytes),
	}
	s.drained.L = &s.mu
	srv.observe(Event{Kind: StateChanged, From: session.Closed, To: session.Pending})
	s.drainFn, s.timerFn = s.drain, s.onTimer
	s.ctx, s.cancel = context.WithCancel(srv.ctx)
	gc.sess = s
	gc.onViolation = s.onGateViolation
	gc.onReadDeadline = s.onReadDeadline
	s.mu.Lock()
	s.authDeadline = srv.opts.Clock.Now().Add(srv.opts.AuthTimeout)
	s.setPhaseLocked(phaseAuth, s.authDeadline)
	s.mu.Unlock()
	return s
}

// enter counts a request that is to be upgraded in srv.wg, unless the
// server is closing. The count ends when the request is refused or its
// session finishes.
func (srv *Server) enter() bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closing {
		return false
	}
	srv.wg.Add(1)
	return true
}

// track adds s to the running connections unless the server is closing.
func (srv *Server) track(s *Session) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closing {
		return false
	}
	srv.conns[s] = struct{}{}
	return true
}

func (srv *Server) forget(s *Session) {
	srv.mu.Lock()
	delete(srv.conns, s)
	srv.mu.Unlock()
}

// newSessionID returns a random session id that names the node, so that
// a session of any node can be reached through the cluster.
func (srv *Server) newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return srv.node + "." + base64.RawURLEncoding.EncodeToString(b[:])
}

// newNodeID returns a random node name: 10 lower-case letters and digits.
func newNodeID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// offersSubprotocol reports whether the request offers wsauth.v1.
// Subprotocol names match exactly, as browsers compare them and as gws
// selects them: matched case-insensitively, WSAUTH.V1 chose the upgrader
// that requires wsauth.v1, whose upgrade then failed with a 400 after the
// hijack, where protocol.md promises an unknown subprotocol a 101.
func offersSubprotocol(h http.Header) bool {
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for _, part := range strings.Split(v, ",") {
			if strings.TrimSpace(part) == protocol.Subprotocol {
				return true
			}
		}
	}
	return false
}

// headerHasToken reports whether a comma-separated header contains token,
// case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for v != "" {
			var part string
			part, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}
