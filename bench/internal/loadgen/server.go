package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/centrifugal/centrifuge"
	"github.com/lxzan/gws"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/reauth"
	"github.com/wsauth/wsauth/wsauthtest"
)

// Server is an in-process target listening on a loopback port.
type Server struct {
	Kind string // "wsauth" or "gws"
	// URL is the WebSocket endpoint, ws://127.0.0.1:PORT/ws.
	URL string
	// TokenURL serves POST {"sub":…,"ttl":…} -> {"token":…,"exp":…} as the
	// demo's development IdP does (wsauth only).
	TokenURL string
	// IdP signs the tokens the wsauth server accepts (wsauth only).
	IdP *wsauthtest.IdP
	// Wsauth is the server under test and Verifier its token verifier
	// (wsauth only).
	Wsauth   *wsauth.Server
	Verifier *jwks.Verifier

	hs       *http.Server
	serveErr chan error
	raw      *rawServer
	cf       *centrifuge.Node
	tokens   *tokenCache
}

// ServerOptions configures an in-process target.
type ServerOptions struct {
	// Algorithm of the IdP's key: "RS256" (default) or "ES256".
	Algorithm string
	// Clock drives the wsauth server, its verifier and the IdP's token
	// times. Default: the system clock.
	Clock reauth.Clock
	// TokenCacheSize is the verifier's jwks.Options.TokenCacheSize
	// (default 0: no cache of verified tokens).
	TokenCacheSize int
	// Configure may change the wsauth server's options after the load
	// generator set its own (the echo OnMessage, a discarding Logger, the
	// pending caps raised for one source IP).
	Configure func(*wsauth.Options)
}

// Audience is the audience of the in-process IdP's tokens.
const Audience = "wsauth-bench"

// StartWsauth starts a wsauth server whose OnMessage echoes every message
// back with Session.Reply, and its IdP, on one loopback listener.
func StartWsauth(opts ServerOptions) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	base := "http://" + ln.Addr().String()
	idp, err := wsauthtest.NewDevIdP(base, wsauthtest.IdPOptions{Audience: Audience, Algorithm: opts.Algorithm})
	if err != nil {
		ln.Close()
		return nil, err
	}
	now := time.Now
	if opts.Clock != nil {
		now = opts.Clock.Now
		idp.SetNow(now)
	}
	s := &Server{Kind: "wsauth", URL: "ws" + base[len("http"):] + "/ws", TokenURL: base + "/token", IdP: idp}
	s.tokens = newTokenCache(func(_ context.Context, sub string) (string, error) {
		return idp.Token(sub, 24*time.Hour), nil
	})
	mux := http.NewServeMux()
	mux.Handle("GET "+wsauthtest.JWKSPath, idp.Handler())
	mux.HandleFunc("POST /token", s.serveToken)
	s.start(ln, mux)

	v, err := jwks.New(context.Background(), jwks.Options{
		Issuers:        []jwks.Issuer{{Issuer: idp.Issuer(), JWKSURL: idp.JWKSURL(), Audience: []string{Audience}}},
		Now:            now,
		Logger:         slog.New(slog.DiscardHandler),
		TokenCacheSize: opts.TokenCacheSize,
	})
	if err != nil {
		s.stopHTTP()
		return nil, err
	}
	s.Verifier = v
	o := wsauth.Options{
		Verifier: v,
		Clock:    opts.Clock,
		Logger:   slog.New(slog.DiscardHandler),
		// Every load generator connection comes from 127.0.0.1: the per-IP
		// cap is raised to the server-wide one, 1024 (Options.MaxPending's
		// default).
		MaxPendingPerIP: 1024,
		OnMessage: func(_ context.Context, s *wsauth.Session, m wsauth.Message) error {
			return s.Reply(m.Data)
		},
	}
	if opts.Configure != nil {
		opts.Configure(&o)
	}
	srv, err := wsauth.New(o)
	if err != nil {
		v.Close()
		s.stopHTTP()
		return nil, err
	}
	s.Wsauth = srv
	mux.Handle("/ws", srv)
	return s, nil
}

// GwsOptions selects variants of the gws baseline, to measure what a change
// to wsauth's own design would give before making it. The zero value is the
// baseline the benchmarks compare with.
type GwsOptions struct {
	// AsyncEcho echoes with WriteAsync (a job on gws's per-connection write
	// queue, run on a goroutine started for it) instead of WriteMessage on
	// the read goroutine: the path Session.Send takes.
	AsyncEcho bool
	// ReadLoopInHandler runs ReadLoop on the HTTP handler's goroutine
	// instead of a goroutine of its own, so that net/http keeps its
	// per-connection reader and writer (what wsauth did before it returned
	// from ServeHTTP).
	ReadLoopInHandler bool
}

// StartGws starts the baseline: a plain gws server, upgraded through
// net/http with the gws options wsauth uses (ParallelEnabled false, UTF-8
// check off, the same 1 MiB frame cap), reading on a goroutine of its own
// as wsauth does. On open it sends a hello frame shaped like auth_ok with the
// connection's id; it echoes every text message with WriteMessage and
// pushes with WriteAsync.
func StartGws(opts GwsOptions) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	base := "http://" + ln.Addr().String()
	raw := &rawServer{conns: make(map[string]*gws.Conn), opts: opts}
	raw.upgrader = gws.NewUpgrader(raw, &gws.ServerOption{
		ReadMaxPayloadSize: 1 << 20, // wsauth's frame cap: Options.MaxFrame's default, 1 MiB
		CheckUtf8Enabled:   false,
		ParallelEnabled:    false,
	})
	s := &Server{Kind: "gws", URL: "ws" + base[len("http"):] + "/ws", raw: raw}
	mux := http.NewServeMux()
	mux.Handle("/ws", raw)
	s.start(ln, mux)
	return s, nil
}

func (s *Server) start(ln net.Listener, h http.Handler) {
	s.hs = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	s.serveErr = make(chan error, 1)
	go func() { s.serveErr <- s.hs.Serve(ln) }()
}

func (s *Server) stopHTTP() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.hs.Shutdown(ctx); err != nil {
		_ = s.hs.Close()
	}
	<-s.serveErr
}

// Target returns how clients reach s.
func (s *Server) Target() Target {
	switch s.Kind {
	case "gws":
		return Target{Name: "gws", URL: s.URL}
	case "centrifuge":
		return Target{Name: "centrifuge", URL: s.URL, Centrifuge: true, Token: s.tokens.get}
	}
	return Target{Name: "wsauth", URL: s.URL, Auth: true, Token: s.tokens.get}
}

// Conns returns the connections the server holds: authenticated sessions
// for wsauth, open sockets for gws.
func (s *Server) Conns() int {
	if s.raw != nil {
		return s.raw.len()
	}
	if s.cf != nil {
		return s.cf.Hub().NumClients()
	}
	return s.Wsauth.Len()
}

// Push returns the function a Push phase calls to send data to a
// connection, by the session id it was given: Server.Send for wsauth;
// WriteAsync of the same message frame for gws; nil for Centrifuge, whose
// push is not measured.
func (s *Server) Push() PushFunc {
	if s.raw != nil {
		return s.raw.push
	}
	if s.cf != nil {
		return nil
	}
	return func(id string, data json.RawMessage) error { return s.Wsauth.Send(context.Background(), id, data) }
}

// Close shuts the target down: every connection is closed and its goroutines
// have ended when Close returns.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if s.Wsauth != nil {
		err = s.Wsauth.Shutdown(ctx)
	}
	if s.raw != nil {
		err = s.raw.shutdown(ctx)
	}
	if s.cf != nil {
		err = centrifugeShutdown(ctx, s.cf)
	}
	s.stopHTTP()
	if s.Verifier != nil {
		s.Verifier.Close()
	}
	return err
}

// serveToken mints a token for any subject, like the demo's development IdP.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Sub string `json:"sub"`
		TTL string `json:"ttl"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.Sub == "" {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	ttl := 24 * time.Hour
	if d, err := time.ParseDuration(req.TTL); err == nil && d > 0 {
		ttl = d
	}
	tok := s.IdP.Token(req.Sub, ttl)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "exp": time.Now().Add(ttl).Unix()})
}

// rawServer is the plain gws baseline.
type rawServer struct {
	opts     GwsOptions
	upgrader *gws.Upgrader
	nextID   atomic.Uint64
	wg       sync.WaitGroup

	mu      sync.RWMutex
	conns   map[string]*gws.Conn
	closing bool
}

func (r *rawServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	r.wg.Add(1)
	r.mu.Unlock()
	socket, err := r.upgrader.Upgrade(w, req)
	if err != nil {
		r.wg.Done()
		return
	}
	if r.opts.ReadLoopInHandler {
		defer r.wg.Done()
		socket.ReadLoop()
		return
	}
	go func() {
		defer r.wg.Done()
		socket.ReadLoop()
	}()
}

func (r *rawServer) OnOpen(socket *gws.Conn) {
	id := strconv.FormatUint(r.nextID.Add(1), 10)
	socket.Session().Store("id", id)
	r.mu.Lock()
	closing := r.closing
	if !closing {
		r.conns[id] = socket
	}
	r.mu.Unlock()
	if closing {
		_ = socket.WriteClose(1001, []byte("server shutting down"))
		return
	}
	_ = socket.WriteMessage(gws.OpcodeText, protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeAuthOK, Session: id, Subject: "", Exp: 0}))
}

func (r *rawServer) OnClose(socket *gws.Conn, _ error) {
	id, _ := socket.Session().Load("id")
	r.mu.Lock()
	delete(r.conns, id.(string))
	r.mu.Unlock()
}

func (r *rawServer) OnPing(socket *gws.Conn, payload []byte) { _ = socket.WritePong(payload) }

func (r *rawServer) OnPong(*gws.Conn, []byte) {}

func (r *rawServer) OnMessage(socket *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	if r.opts.AsyncEcho {
		// The payload must outlive the message: copy it, as Session.Send does.
		socket.WriteAsync(msg.Opcode, append([]byte(nil), msg.Bytes()...), nil)
		return
	}
	_ = socket.WriteMessage(msg.Opcode, msg.Bytes())
}

var errNoConn = errors.New("loadgen: no such connection")

func (r *rawServer) push(id string, data json.RawMessage) error {
	r.mu.RLock()
	socket := r.conns[id]
	r.mu.RUnlock()
	if socket == nil {
		return errNoConn
	}
	frame := protocol.AppendServer(make([]byte, 0, len(data)+32), protocol.ServerFrame{Type: protocol.TypeMessage, Data: data})
	socket.WriteAsync(gws.OpcodeText, frame, nil)
	return nil
}

func (r *rawServer) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.conns)
}

// shutdown closes every connection with 1001 and waits for the handlers.
func (r *rawServer) shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.closing = true
	all := make([]*gws.Conn, 0, len(r.conns))
	for _, c := range r.conns {
		all = append(all, c)
	}
	r.mu.Unlock()
	for _, c := range all {
		_ = c.WriteClose(1001, []byte("server shutting down"))
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("loadgen: gws shutdown: %w", ctx.Err())
	}
}
