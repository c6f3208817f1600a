package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/reauth"
)

// ExpiryPolicy chooses what happens when a session's token expires.
type ExpiryPolicy int

const (
	// ExpiryReauth (the default) asks the client for a fresh token before the
	// current one expires, buffers outbound messages from expiry until the
	// fresh token arrives, and closes the session with 4440 if none arrives by
	// the grace deadline.
	ExpiryReauth ExpiryPolicy = iota
	// ExpiryClose closes the session with 4440 when its token expires. Clients
	// may still refresh early by sending a fresh auth frame.
	ExpiryClose
	// ExpiryIgnore never re-checks a session after it authenticated.
	//
	// Insecure: a stolen or revoked identity keeps its socket for as long as
	// the socket lives. Use it only where tokens cannot be refreshed and the
	// application revokes sessions itself (Server.Revoke).
	ExpiryIgnore
)

// String returns "reauth", "close" or "ignore".
func (p ExpiryPolicy) String() string {
	switch p {
	case ExpiryReauth:
		return "reauth"
	case ExpiryClose:
		return "close"
	case ExpiryIgnore:
		return "ignore"
	}
	return fmt.Sprintf("ExpiryPolicy(%d)", int(p))
}

// MarshalText implements encoding.TextMarshaler: "reauth", "close" or
// "ignore". It fails for a value that is none of the three.
func (p ExpiryPolicy) MarshalText() ([]byte, error) {
	switch p {
	case ExpiryReauth, ExpiryClose, ExpiryIgnore:
		return []byte(p.String()), nil
	}
	return nil, fmt.Errorf("wsauth: unknown expiry policy %d", int(p))
}

// UnmarshalText implements encoding.TextUnmarshaler, for flag.TextVar and
// configuration files: it accepts "reauth", "close" or "ignore".
func (p *ExpiryPolicy) UnmarshalText(text []byte) error {
	for _, q := range []ExpiryPolicy{ExpiryReauth, ExpiryClose, ExpiryIgnore} {
		if q.String() == string(text) {
			*p = q
			return nil
		}
	}
	return fmt.Errorf("wsauth: unknown expiry policy %q (want reauth, close or ignore)", text)
}

// Message is one application message a client sent.
type Message struct {
	// ID is the client's optional message id (at most 64 bytes). Error frames
	// that refuse this message carry it as "ref".
	ID string
	// Data is the message's JSON value. It is only valid during the call to
	// OnMessage: copy it to keep it.
	Data json.RawMessage
	// Identity is who sent the message: with Options.TokenPerMessage, the
	// identity of the token the message carried; otherwise the session's
	// (Session.Identity when the message arrived).
	Identity Identity
}

// Options configures a Server. The zero value of every field means the
// documented default; only Verifier is required. New copies Options: changing
// them afterwards has no effect.
type Options struct {
	// Verifier checks the token of every auth frame. Required; jwks.Verifier
	// is the JWKS-backed implementation.
	Verifier Verifier

	// AuthTimeout is the absolute time, from the upgrade, a connection has to
	// authenticate. Pings and partial frames do not extend it. On expiry the
	// connection is closed with 4408. It also bounds every token
	// verification. Default 5s.
	AuthTimeout time.Duration
	// MaxPending caps the connections that have not authenticated yet, server
	// wide. Upgrade requests past it get 503 with Retry-After. Default 1024.
	MaxPending int
	// MaxPendingPerIP caps unauthenticated connections per client IP (see
	// ClientIP). Default 64.
	MaxPendingPerIP int
	// MaxPreAuthFrame caps the size in bytes of a message, all its fragments
	// counted, before authentication. Larger ones close the connection with
	// 1009 before the server buffers them. Before authentication a client may
	// send at most 2*MaxPreAuthFrame bytes in all (frame headers and control
	// frames counted); past that it is closed with 4429. Default 8192.
	MaxPreAuthFrame int
	// MaxFrame caps the size in bytes of a message from an authenticated
	// client. Larger ones close the connection with 1009. Default 1 MiB.
	MaxFrame int
	// OriginPatterns lists the host patterns whose pages may open a socket,
	// besides the request's own host, which is always allowed. Patterns are
	// matched case-insensitively with path.Match against the Origin's host
	// ("app.example.com", "*.example.com", "localhost:*"), and then admit
	// http:// and https:// origins only; a pattern containing "://" is
	// matched against the whole origin, scheme included
	// ("https://*.example.com"): prefer those in production, so that a page
	// served over plain http cannot open a socket. Requests without an Origin
	// header (non-browser clients) pass. Other origins get 403 before the
	// upgrade.
	OriginPatterns []string
	// InsecureSkipOriginCheck accepts every Origin.
	//
	// Insecure: any web page can then open an authenticated socket with the
	// user's token if it can get one (cross-site WebSocket hijacking).
	InsecureSkipOriginCheck bool
	// ClientIP returns the client address used for MaxPendingPerIP. Default:
	// the host part of http.Request.RemoteAddr, an IPv6 address cut to its
	// /64 ("2001:db8:1:2::/64"). Behind a trusted reverse proxy, return the
	// address it forwards.
	ClientIP func(r *http.Request) string
	// WriteTimeout bounds every socket write. A client that does not read for
	// this long is disconnected. Default 10s.
	WriteTimeout time.Duration

	// Expiry chooses what happens when a session's token expires. Default
	// ExpiryReauth.
	Expiry ExpiryPolicy
	// ReauthLead is how long before its token expires a session is sent
	// reauth_required; for short-lived tokens it is capped at half the time
	// between authentication and expiry. Default 30s.
	ReauthLead time.Duration
	// ReauthGrace is how long after its token expired a session may still
	// reauthenticate; its outbound messages are buffered meanwhile. Then it is
	// closed with 4440. Default 10s.
	ReauthGrace time.Duration
	// BufferMessages caps the undelivered outbound messages of one session,
	// whether the client reads slowly or the session waits for a fresh token.
	// Past it the session is closed with 4413. Default 256.
	BufferMessages int
	// BufferBytes caps the size of one session's undelivered outbound frames,
	// like BufferMessages. Default 1 MiB.
	BufferBytes int

	// Broker keeps every user's stream (the messages sent to the user with
	// SendToPrincipals, numbered) for a while, so that a client that
	// reconnects, here or on another node, resumes after the last message it
	// received; with more than one Server on it, it makes them a cluster
	// (docs/cluster.md). broker.NewMemory keeps streams in this process;
	// package natsbroker on NATS. Default nil: one process, no streams, and
	// the messages a session could not write go to OnUndelivered.
	Broker broker.Broker

	// TokenInHeader accepts a token in the upgrade request's
	// "Authorization: Bearer <JWT>" header (servers, mobile and command-line
	// clients can set it; browsers cannot): a refused one gets 401 before
	// the upgrade, a good one starts the session authenticated. Default
	// false: the header is ignored.
	TokenInHeader bool
	// TokenInSubprotocol accepts a token offered as a second
	// Sec-WebSocket-Protocol value beside wsauth.v1 (a browser's
	// new WebSocket(url, ["wsauth.v1", token])), like TokenInHeader. The
	// server answers with wsauth.v1, never the token. Tokens in this header
	// may reach proxies' logs: prefer tickets (TicketHandler). Default false.
	TokenInSubprotocol bool
	// TokenPerMessage makes every client message carry a token of its own
	// ("token"), verified like an auth frame's (with a jwks.Verifier, its
	// token cache makes a repeated token cheap), for handlers that pass
	// messages on to queues or stateless workers: Message.Identity is that
	// token's identity. The session's user is pinned: a token of another
	// user is refused. A message without a token, or with a refused one, is
	// answered with an error frame (4401, or 4403 for another user or a
	// revoked token) and not processed. Measured against the session mode
	// on echo round trips, it runs at 0.81-0.87x the rate with the token
	// cache and 0.37-0.38x without (docs/benchmarks.md section 12).
	// Default false: messages need no token, and a token they carry is
	// ignored.
	TokenPerMessage bool
	// TicketTTL is how long an upgrade ticket (TicketHandler) is valid, at
	// most until its token's exp. Default 30s.
	TicketTTL time.Duration
	// TicketBindIP makes a ticket work only from the client IP (ClientIP)
	// that asked for it. Default false: mobile clients change networks.
	TicketBindIP bool

	// RevokeFor is how long a revocation (Server.Revoke, RevokeToken)
	// refuses the tokens it names: at least as long as the longest-lived
	// token the identity providers issue. Default 24h.
	RevokeFor time.Duration

	// OnAuthenticated is called after every successful auth frame (the first
	// and each reauthentication), before auth_ok is sent. Returning an error
	// refuses the session: a *protocol.CloseError chooses the close code, any other
	// error closes with 4403. It runs on the connection's read goroutine; the
	// session's outbound traffic waits while it runs.
	OnAuthenticated func(ctx context.Context, s *Session) error
	// OnMessage is called for every message frame of an active session, one
	// at a time per session, on the connection's read goroutine: while it
	// runs, that session's frames wait (other sessions are unaffected).
	// Returning a *MessageError refuses the message with an error frame;
	// returning a *protocol.CloseError closes the session; any other error sends an
	// error frame with code 4500 and is logged. A panic closes the session
	// with 1011. Nil: message frames are refused with error code 4405.
	OnMessage func(ctx context.Context, s *Session, m Message) error
	// OnClose is called once for every session that was upgraded, after its
	// socket closed, with the code it closed with (1006 when the client
	// dropped without a close frame). It runs on the connection's goroutine.
	OnClose func(s *Session, err *protocol.CloseError)
	// OnUndelivered receives, in order, the data of the messages a session
	// could not write to its client, when it closes. With a Broker, the
	// messages of the user's stream are not among them: the stream keeps
	// them, and the client resumes. It runs on the goroutine that ended the
	// session; it must not block.
	OnUndelivered func(p Principal, data []json.RawMessage)

	// Observer, if set, receives an Event for everything the server does,
	// for metrics (package prommetrics). Default nil: no events.
	Observer Observer

	// Clock is the time source of deadlines and expiries. Default: the system
	// clock. Tests use wsauthtest.Clock.
	Clock reauth.Clock
	// Logger receives the server's logs. Default slog.Default(). Tokens are
	// never logged.
	Logger *slog.Logger
}

// Defaults of Options fields.
const (
	defaultAuthTimeout     = 5 * time.Second
	defaultMaxPending      = 1024
	defaultMaxPendingPerIP = 64
	defaultMaxPreAuthFrame = 8 << 10
	defaultMaxFrame        = 1 << 20
	defaultWriteTimeout    = 10 * time.Second
	defaultReauthLead      = 30 * time.Second
	defaultReauthGrace     = 10 * time.Second
	defaultRevokeFor       = 24 * time.Hour
	defaultTicketTTL       = 30 * time.Second
	defaultBufferMessages  = 256
	defaultBufferBytes     = 1 << 20
)

// withDefaults validates o and returns a copy with defaults filled in.
func (o Options) withDefaults() (Options, error) {
	if o.Verifier == nil {
		return o, errors.New("wsauth: Options.Verifier is required")
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"AuthTimeout", &o.AuthTimeout, defaultAuthTimeout},
		{"WriteTimeout", &o.WriteTimeout, defaultWriteTimeout},
		{"ReauthLead", &o.ReauthLead, defaultReauthLead},
		{"ReauthGrace", &o.ReauthGrace, defaultReauthGrace},
		{"RevokeFor", &o.RevokeFor, defaultRevokeFor},
		{"TicketTTL", &o.TicketTTL, defaultTicketTTL},
	} {
		if *d.v < 0 {
			return o, fmt.Errorf("wsauth: Options.%s must not be negative", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, d := range []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxPending", &o.MaxPending, defaultMaxPending},
		{"MaxPendingPerIP", &o.MaxPendingPerIP, defaultMaxPendingPerIP},
		{"MaxPreAuthFrame", &o.MaxPreAuthFrame, defaultMaxPreAuthFrame},
		{"MaxFrame", &o.MaxFrame, defaultMaxFrame},
		{"BufferMessages", &o.BufferMessages, defaultBufferMessages},
		{"BufferBytes", &o.BufferBytes, defaultBufferBytes},
	} {
		if *d.v < 0 {
			return o, fmt.Errorf("wsauth: Options.%s must not be negative", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if o.MaxPreAuthFrame > o.MaxFrame {
		return o, errors.New("wsauth: Options.MaxPreAuthFrame must not exceed MaxFrame")
	}
	switch o.Expiry {
	case ExpiryReauth, ExpiryClose, ExpiryIgnore:
	default:
		return o, fmt.Errorf("wsauth: unknown Options.Expiry %d", int(o.Expiry))
	}
	o.OriginPatterns = append([]string(nil), o.OriginPatterns...)
	for _, p := range o.OriginPatterns {
		if _, err := path.Match(p, ""); err != nil {
			return o, fmt.Errorf("wsauth: bad origin pattern %q: %w", p, err)
		}
	}
	if o.ClientIP == nil {
		o.ClientIP = remoteIP
	}
	if o.Clock == nil {
		o.Clock = reauth.SystemClock
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// originAllowed implements the Origin policy described at OriginPatterns.
func (o *Options) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || o.InsecureSkipOriginCheck {
		return true
	}
	scheme, host, ok := strings.Cut(origin, "://")
	if !ok || host == "" || strings.ContainsAny(host, "/?#@") {
		return false
	}
	host = strings.ToLower(host)
	if host == strings.ToLower(r.Host) && (strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https")) {
		return true
	}
	scheme = strings.ToLower(scheme)
	web := scheme == "http" || scheme == "https"
	full := scheme + "://" + host
	for _, p := range o.OriginPatterns {
		p = strings.ToLower(p)
		target := host
		if strings.Contains(p, "://") {
			target = full
		} else if !web {
			continue // a host pattern admits web pages only, not ftp:// or chrome-extension://
		}
		if ok, _ := path.Match(p, target); ok {
			return true
		}
	}
	return false
}
