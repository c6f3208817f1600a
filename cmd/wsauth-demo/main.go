// Command wsauth-demo is a chat server built on wsauth, with a browser page
// and, by default, an embedded development identity provider.
//
//	go run ./cmd/wsauth-demo                # http://127.0.0.1:8080, ticks every 1s
//	go run ./cmd/wsauth-demo -tick 0        # no ticks
//
// It serves:
//
//	GET  /                        the chat page (static/)
//	GET  /wsauth.js               the browser client (clients/js)
//	GET  /ws                      the wsauth WebSocket endpoint (the token in the first frame, or ?ticket=)
//	POST /ticket                  Authorization: Bearer <token> -> {"ticket":…,"expires":…} (Server.TicketHandler)
//	POST /token                   dev IdP: {"sub":"alice","ttl":"5s"} -> {"token":…,"exp":…}
//	GET  /.well-known/jwks.json   dev IdP: its JWK Set
//	GET  /status                  a live status page of this node, linked from the chat page
//	GET  /status.json             its numbers: the metrics' values, and the verifier's key status
//	GET  /metrics                 Prometheus metrics: wsauth's (prommetrics), the Go runtime's, the process's
//	GET  /readyz                  readiness (Server.ReadyHandler): server, verifier's keys, NATS with -nats
//	GET  /livez                   liveness (Server.LiveHandler)
//
// The status page, /metrics and the probes show counts, never a user, a
// session, a token or a client address; the metrics are those of
// docs/operations.md, and docs/grafana-dashboard.json draws them. The demo
// serves them on its one listener, for show: a real server keeps them on
// a listener that only its infrastructure reaches.
//
// Every message a client sends is broadcast to every session as
// {"from":<sub>,"data":<data>}; one whose data is an object with a string
// "to" goes to that user's sessions and the sender's instead (their
// streams: resumable), and {"revoke":true} closes every session of the
// sender (4403), on every node. Every user with a session is also sent
// {"tick":N,"node":<node>} every -tick interval (default 1s; -tick 0 turns
// ticks off), to the user's stream: each node numbers the ticks it sends a
// user 1, 2, 3…, which makes gaps and duplicates across reauthentications,
// reconnects and nodes visible.
//
// Users' streams are kept for -keep-for (2m) in this process, so that a
// client that reconnects resumes where it left off. With -nats URL the demo
// joins the cluster of the demos on that NATS server (natsbroker, on
// JetStream): messages, broadcasts and revocations reach every node, and a
// client resumes on any node. Nodes that use the development IdP then need
// one signing key, -dev-key FILE, created by the first node that starts;
// their tokens' issuer is then https://wsauth-demo.invalid (or -issuer), the
// same on every node, while each node serves the JWK Set itself.
//
// The page authenticates with the token in the first frame, or, as its
// "Sign in with" control chooses, with a single-use ticket it exchanges
// the token for at /ticket (wsauth's Server.TicketHandler); either way it
// reauthenticates in-band. It draws its session's tokens on a timeline
// (static/timeline.js): each token from its auth_ok to its exp, the
// reauth_required marks, the grace window, and, with "answer reauth late"
// checked, the stretch the token was expired, while the server held the
// page's messages, and their release at the fresh token's auth_ok.
//
// With -token-per-message every client message must carry a token of its
// own (wsauth's Options.TokenPerMessage), for clients that send one, such
// as the JS client with tokenPerMessage in its tests; the page sends none,
// so its messages are refused then.
//
// With -jwks URL -issuer ISS -audience AUD tokens come from an external
// identity provider instead and /token answers 404.
//
// The development IdP mints a token for any subject anyone asks for: it is
// insecure by design and must never be reachable from another machine.
//
// On start the command prints one line, "wsauth-demo listening on
// http://HOST:PORT", to stdout; logs go to stderr. SIGINT or SIGTERM shuts it
// down gracefully: every session is closed with 1001 (its client reconnects
// and resumes, on another node of a cluster), then the HTTP server stops,
// then the NATS connection closes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/jwks"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second one kills the process at once.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "wsauth-demo:", err)
		os.Exit(1)
	}
}

// errUsage marks command-line errors; the flag package already printed them.
var errUsage = errors.New("usage error")

// shutdownTimeout bounds the graceful shutdown.
const shutdownTimeout = 10 * time.Second

// maxHeaderBytes caps the request headers the demo reads (net/http allows
// 4 KiB more than this).
const maxHeaderBytes = 16 << 10

// config is the parsed command line.
type config struct {
	addr     string
	jwksURL  string
	issuer   string
	audience string
	tokenTTL time.Duration
	tick     time.Duration
	idle     time.Duration // http.Server.IdleTimeout
	keepFor  time.Duration // the broker's KeepFor; 0: no broker (not with natsURL)
	natsURL  string        // "": no cluster, a broker.Memory
	devKey   string        // the development IdP's key file; "": a new key
	logLevel slog.Level
	opts     wsauth.Options // the server's options, without hooks and Verifier
}

// defaultAudience is the "aud" of the development IdP's tokens.
const defaultAudience = "wsauth-demo"

// defaultDevIssuer is the "iss" of the development IdP's tokens with
// -dev-key: one name for every node, whatever its address, so that each
// node accepts the others' tokens. The .invalid top-level domain (RFC 2606)
// can never name a real identity provider, nor be fetched.
const defaultDevIssuer = "https://wsauth-demo.invalid"

// defaultTick is on, so that the page shows the tick counter running
// across reauthentications without any flag.
const defaultTick = time.Second

// usageHeader comes before the flags in -help.
const usageHeader = `Usage: wsauth-demo [flags]

A chat server on wsauth with a development identity provider. On -addr it serves:
  /                  the chat page            /status         a live status page of this node
  /ws                the WebSocket endpoint   /status.json    the status page's numbers
  /ticket            the ticket exchange      /metrics        Prometheus metrics
  /token             the dev IdP's tokens     /readyz /livez  readiness and liveness probes

Flags:
`

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("wsauth-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "listen `address` (\":0\" picks a free port)")
	fs.StringVar(&cfg.jwksURL, "jwks", "", "JWK Set `URL` of an external identity provider (default: the embedded development IdP)")
	fs.StringVar(&cfg.issuer, "issuer", "", "\"iss\" of the tokens: the external identity provider's (required with -jwks), or the development IdP's (default: this server's URL; with -dev-key "+defaultDevIssuer+")")
	fs.StringVar(&cfg.devKey, "dev-key", "", "the development IdP's signing key `file` (PEM), created (mode 0600) if missing; give every node of a cluster the same one (default: a new key at every start)")
	fs.StringVar(&cfg.natsURL, "nats", "", "join the cluster of the demos on the NATS server at `URL` (with JetStream; comma-separate several URLs of one NATS cluster) (default: no cluster)")
	fs.StringVar(&cfg.audience, "audience", "", "accepted \"aud\" (required with -jwks; default "+defaultAudience+")")
	fs.DurationVar(&cfg.tokenTTL, "token-ttl", 15*time.Minute, "default lifetime of the development IdP's tokens (at most 24h)")
	fs.DurationVar(&cfg.tick, "tick", defaultTick, "send every user {\"tick\":N,\"node\":…}, in its stream, every `interval`, e.g. 1s or 250ms (0: off)")
	fs.DurationVar(&cfg.idle, "idle-timeout", time.Minute, "close idle keep-alive HTTP connections after this long")
	o := &cfg.opts
	fs.DurationVar(&o.AuthTimeout, "auth-timeout", 0, "time a connection has to authenticate (0: wsauth default 5s)")
	fs.IntVar(&o.MaxPending, "max-pending", 0, "unauthenticated connections, server wide (0: wsauth default 1024)")
	fs.IntVar(&o.MaxPendingPerIP, "max-pending-per-ip", 0, "unauthenticated connections per client IP (0: wsauth default 64)")
	fs.IntVar(&o.MaxPreAuthFrame, "max-preauth-frame", 0, "largest message, in bytes, before authentication (0: wsauth default 8192)")
	origins := fs.String("origins", "", "comma-separated host `patterns` of other origins allowed to open sockets, e.g. \"localhost:*\"")
	fs.DurationVar(&o.ReauthLead, "reauth-lead", 0, "send reauth_required this long before a token expires (0: wsauth default 30s)")
	fs.DurationVar(&o.ReauthGrace, "reauth-grace", 0, "time after expiry a session may still reauthenticate (0: wsauth default 10s)")
	fs.TextVar(&o.Expiry, "expiry", wsauth.ExpiryReauth, "expiry `policy`: reauth, close or ignore (insecure)")
	fs.IntVar(&o.BufferMessages, "buffer-messages", 0, "undelivered messages kept per session (0: wsauth default 256)")
	fs.IntVar(&o.BufferBytes, "buffer-bytes", 0, "undelivered bytes kept per session (0: wsauth default 1 MiB)")
	fs.BoolVar(&o.TokenPerMessage, "token-per-message", false, "require a token in every client message (wsauth Options.TokenPerMessage; the chat page sends none, and its messages are refused)")
	fs.DurationVar(&cfg.keepFor, "keep-for", 2*time.Minute, "keep each user's messages this long, so that clients resume after a reconnect (0: off; not with -nats)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	fail := func(format string, a ...any) (*config, error) {
		fmt.Fprintf(stderr, "wsauth-demo: "+format+"\n", a...)
		fs.Usage()
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		return fail("unexpected arguments: %q", fs.Args())
	}
	if err := cfg.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return fail("-log-level: %v", err)
	}
	for _, p := range strings.Split(*origins, ",") {
		if p = strings.TrimSpace(p); p != "" {
			o.OriginPatterns = append(o.OriginPatterns, p)
		}
	}
	if cfg.tokenTTL <= 0 || cfg.tokenTTL > maxTokenTTL {
		return fail("-token-ttl must be positive and at most %s", maxTokenTTL)
	}
	if cfg.tick < 0 {
		return fail("-tick must not be negative")
	}
	if cfg.idle <= 0 {
		return fail("-idle-timeout must be positive")
	}
	if cfg.keepFor < 0 {
		return fail("-keep-for must not be negative")
	}
	if cfg.natsURL != "" && cfg.keepFor == 0 {
		return fail("-nats needs -keep-for: a cluster keeps users' streams")
	}
	if cfg.jwksURL == "" {
		if cfg.audience == "" {
			cfg.audience = defaultAudience
		}
		if cfg.issuer == "" && cfg.devKey != "" {
			cfg.issuer = defaultDevIssuer
		}
	} else if cfg.devKey != "" {
		return fail("-dev-key is the development IdP's: not with -jwks")
	} else if cfg.issuer == "" || cfg.audience == "" {
		return fail("-jwks needs -issuer and -audience")
	}
	return cfg, nil
}

// run runs the demo until ctx ends, then shuts it down gracefully and
// returns nil. It prints the listening line to stdout and logs to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	base := baseURL(ln.Addr())
	mux := http.NewServeMux()
	// The limits net/http leaves open, which no wsauth cap covers: a socket
	// that sent one request and then nothing is held until IdleTimeout (by
	// default: forever), and every request may send MaxHeaderBytes of
	// headers (by default 1 MiB) before any handler runs. An upgrade needs
	// under 4 KiB. See docs/security.md.
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       cfg.idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	issuer, jwksURL := cfg.issuer, cfg.jwksURL
	if jwksURL == "" {
		// Each node serves its IdP's JWK Set and verifies against its own:
		// with one key file and one issuer, every node's are the same.
		idp, err := newDevIdP(base, cfg.issuer, cfg.audience, cfg.devKey, cfg.tokenTTL, logger)
		if err != nil {
			ln.Close()
			return err
		}
		idp.mount(mux)
		issuer, jwksURL = idp.idp.Issuer(), idp.idp.JWKSURL()
		logger.Warn("development IdP enabled: POST /token mints a token for any subject; never expose this server",
			"issuer", issuer)
		if cfg.natsURL != "" && cfg.devKey == "" {
			logger.Warn("-nats without -dev-key: the other nodes refuse this node's tokens, so a client must get its token from the node it connects to")
		}
	} else {
		mux.HandleFunc("/token", http.NotFound)
	}
	mountStatic(mux)

	// The dev IdP's JWK Set is served by this very server, and jwks.New
	// fetches it once: serve before creating the verifier.
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	stopHTTP := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		return hs.Shutdown(sctx)
	}

	v, err := jwks.New(context.WithoutCancel(ctx), jwks.Options{
		Issuers: []jwks.Issuer{{Issuer: issuer, JWKSURL: jwksURL, Audience: []string{cfg.audience}}},
		Logger:  logger,
	})
	if err != nil {
		_ = stopHTTP()
		return err
	}
	defer v.Close()

	b, where, releaseBroker, err := newBroker(ctx, cfg, logger)
	if err != nil {
		_ = stopHTTP()
		return err
	}
	defer releaseBroker() // after srv.Shutdown, which leaves the broker

	reg, obs, err := newMetrics()
	if err != nil {
		_ = stopHTTP()
		return err
	}

	c := newChat(logger, cfg.tick)
	opts := cfg.opts
	opts.Verifier = v
	opts.Logger = logger
	opts.Broker = b
	opts.Observer = obs
	c.hook(&opts)
	srv, err := wsauth.New(opts)
	if err != nil {
		_ = stopHTTP()
		return err
	}
	c.srv = srv
	mux.Handle("/ws", srv)
	// Without a method in the pattern: the handler answers another method
	// with 405 itself.
	mux.Handle("/ticket", srv.TicketHandler())
	mountOps(mux, reg, srv, v, strings.Fields(where)[0])
	c.start()

	fmt.Fprintf(stdout, "wsauth-demo listening on %s\n", base)
	logger.Info("listening", "url", base, "ws", wsURL(base), "node", srv.Node(), "broker", where,
		"jwks", jwksURL, "expiry", opts.Expiry.String(), "tick", cfg.tick)

	select {
	case <-ctx.Done():
		err = nil
	case err = <-serveErr:
	}
	logger.Info("shutting down")
	c.stop()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		logger.Error("wsauth shutdown", "err", serr)
		err = errors.Join(err, serr)
	}
	logger.Debug("sessions closed")
	if herr := hs.Shutdown(sctx); herr != nil {
		err = errors.Join(err, herr)
	}
	logger.Debug("http server stopped")
	return err
}

// baseURL is the http URL of the listener, with a loopback host when it
// listens on every address (":0"), since that is where this machine reaches
// it.
func baseURL(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return "http://" + a.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}

func wsURL(base string) string { return "ws" + strings.TrimPrefix(base, "http") + "/ws" }
