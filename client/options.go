package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/reauth"
)

// TokenSource supplies the tokens the client authenticates with. Token is
// called before every connection attempt and for every reauthentication,
// always from the client's own goroutine (or Dial's caller), one call at a
// time. It must honour ctx, which ends when the client is closed or the
// connection the token is for is lost.
//
// The client keeps no token (but, with Options.TokenPerMessage, the one
// its messages carry): it asks for one each time it needs one, so a
// source that caches must itself decide when to refresh. A source error
// ends the client (see Client.Err): retry inside the source if the identity
// provider is flaky.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// TokenFunc adapts a function to a TokenSource.
type TokenFunc func(ctx context.Context) (string, error)

// Token calls f.
func (f TokenFunc) Token(ctx context.Context) (string, error) { return f(ctx) }

// StaticToken returns a TokenSource that always returns tok. It suits tests
// and tokens that outlive the connection; a client on a static token ends
// with 4401 (or 4440) once the token expires, since it can never present a
// fresh one.
func StaticToken(tok string) TokenSource {
	return TokenFunc(func(context.Context) (string, error) { return tok, nil })
}

var _ TokenSource = TokenFunc(nil)

// ErrorFrame is an error frame from the server: a non-fatal refusal of one
// message the client sent.
type ErrorFrame struct {
	// Code is the server's error code: 4405 (the server takes no messages),
	// 4500 (its handler failed), 4401 and 4403 from a server that wants a
	// token per message (see Options.TokenPerMessage), or an application's
	// own code.
	Code protocol.ErrorCode
	// Message is the server's short explanation.
	Message string
	// Ref is the id the client gave the refused message (see Client.Send).
	Ref string
	// Data is the refused message's data when the client still held it
	// (messages written since the last auth_ok, up to Options.QueueSize of
	// them); nil otherwise.
	Data json.RawMessage
}

// Options configures a Client. The zero value of every field is its
// documented default; only Token is required. Dial copies Options: changing
// them afterwards has no effect.
type Options struct {
	// Token supplies a token for every connection and reauthentication.
	// Required.
	Token TokenSource

	// Header holds extra headers for the upgrade request (and the ticket
	// exchange, see TicketURL), e.g. Origin or User-Agent. The client sets
	// Sec-WebSocket-Protocol itself. Never put the token here: the client
	// places it (see TokenInHeader).
	Header http.Header
	// TLSConfig is used for wss URLs and an https TicketURL. Default: a
	// zero tls.Config (system roots) with ServerName taken from the URL.
	TLSConfig *tls.Config

	// TokenInHeader sends the token as "Authorization: Bearer <token>" on
	// the upgrade request instead of in an auth frame, for servers that
	// accept it (wsauth.Options.TokenInHeader): the server refuses a bad
	// token with HTTP 401 before the upgrade (final, like 4401: see
	// HandshakeError) and starts a good one's session with auth_ok.
	// Reauthentication goes on in auth frames on the socket, as always.
	// A server that does not accept the header ignores it and, getting no
	// auth frame, closes with 4408 after its auth deadline; the client
	// retries that. Default false: the token goes in the first auth frame.
	// At most one of TokenInHeader and TicketURL may be set.
	//
	// Resuming the user's stream takes the auth frame: a connection made
	// while the client holds a position (see Client.Position, Resume)
	// sends an auth frame instead, whatever this says. On a server that
	// keeps streams that is every reconnection.
	TokenInHeader bool
	// TicketURL is the server's ticket endpoint (wsauth.Server's
	// TicketHandler), e.g. "https://chat.example.com/ws/ticket". If set,
	// before each connection the client POSTs a fresh token from Token to
	// it as "Authorization: Bearer <token>", with Header, and opens the
	// socket with the single-use ticket it answers added to the URL's
	// query (?ticket=…; the URL's other parameters stay). The exchange
	// counts against HandshakeTimeout, follows no redirect, and is made
	// with TLSConfig, directly (no proxy). Its refusals are
	// *HandshakeErrors with Exchange set: a 401 (the token was refused) is
	// final like 4401, so are 403 and other 4xx; 408, 429, 5xx (at least
	// Retry-After apart) and network errors are retried like a refused
	// upgrade. It must be https unless the endpoint URL is plain ws.
	// Reauthentication, and a connection that resumes (see TokenInHeader),
	// use auth frames. Default "": no tickets. Neither tickets nor tokens
	// are ever logged.
	TicketURL string
	// TokenPerMessage puts a token in every message the client writes,
	// for servers that want one per message (wsauth.Options.TokenPerMessage):
	// the token the server last accepted for the session, that of the
	// auth (auth frame, header or ticket) whose auth_ok made it active,
	// then of each reauthentication's auth_ok. Messages are written only
	// while the client is Active, so each carries a token the server
	// accepted. It must match the server's option: such a server refuses
	// every message without a token, with error 4401 "token required"
	// (reported to OnError, not resent), and other servers ignore the
	// token. The client then keeps that token in memory as long as the
	// connection; it is never logged. Default false: messages carry no
	// token.
	TokenPerMessage bool

	// QueueSize caps the messages waiting to be written: while the client is
	// connecting or reauthenticating, or faster than the socket takes them.
	// Send waits for room when it is full. The same number of messages
	// written since the last auth_ok is kept to resend those the server
	// refuses with error 4401. Default 256.
	QueueSize int
	// RefreshBefore is how long before the token's exp the client fetches a
	// fresh token and reauthenticates on its own, if the server has not
	// asked for one (reauth_required) by then. It is capped at half the time
	// between auth_ok and exp. Measured with Clock. Default 30s.
	RefreshBefore time.Duration
	// Backoff sets the delays between reconnection attempts.
	Backoff Backoff
	// DisableReconnect makes every close final: the client ends instead of
	// reconnecting after a retryable close code. By default it reconnects
	// after 1001, 1006, 1011, 1013, 4408, 4413, 4429 and 4440 (see
	// protocol.CloseCode.Retryable), after a close frame without a status
	// code (reported as 1005), after network errors and its own timeouts
	// (ReauthTimeout, PongTimeout), and after an upgrade (or ticket
	// exchange) refused with 408, 429 or 5xx.
	DisableReconnect bool
	// HandshakeTimeout bounds each connection attempt, from the ticket
	// exchange (TicketURL) or dialing to auth_ok (the token fetch before
	// it is not counted). Real time, not Clock. Default 10s.
	HandshakeTimeout time.Duration
	// ReauthTimeout bounds each reauthentication on a live socket, from
	// writing its auth frame to the server's answer (auth_ok, or an error
	// frame refusing it); the token fetch before it is not counted. A server
	// that does not answer in time is taken for dead: the client closes the
	// connection and reconnects (the connection ends with a
	// *protocol.CloseError of code 1006 and reason "reauth timeout").
	// Measured with Clock. Default 10s.
	ReauthTimeout time.Duration
	// PingInterval is how often the client sends a WebSocket ping while
	// authenticated: the server answers pings but sends none of its own and
	// has no idle timeout, so without pings a connection that died silently
	// (a network cut, a crashed proxy) is noticed only when a write fails,
	// which an idle or receive-only client may never do. If no frame at all
	// (the pong, or anything else) arrives within PongTimeout of a ping,
	// the client closes the connection and reconnects (1006, reason
	// "keepalive timeout"). While the application holds the read goroutine
	// (Receive not called and its buffer full, or a running OnMessage or
	// OnError) the client cannot see the pong and draws no conclusion from
	// its absence; the pings it keeps writing still notice a server that
	// closed or reset the connection. Negative: no pings. Measured with
	// Clock. Default 30s.
	PingInterval time.Duration
	// PongTimeout is how long after a ping some frame must arrive (see
	// PingInterval). Measured with Clock. Default 10s.
	PongTimeout time.Duration
	// ReadLimit is the largest message, in bytes, that the client accepts
	// from the server. A frame header announcing more (or fragments adding
	// up to more) closes the connection with 1009 before the payload is
	// read, and 1009 ends the client. Default 1 MiB, the server's own
	// default frame cap.
	ReadLimit int
	// WriteTimeout bounds every socket write: a server that stops reading
	// for this long loses the connection (and the client reconnects). Real
	// time, not Clock. Default 10s.
	WriteTimeout time.Duration

	// OnMessage, if set, receives the data of every message from the
	// server, in order, on the connection's read goroutine: while it runs,
	// the client reads nothing more (so a slow handler slows the server's
	// sending, not the client's memory). It must not call Close (Close
	// waits for it); start a goroutine for that. With OnMessage set, Receive
	// returns an error.
	OnMessage func(data json.RawMessage)
	// OnError receives the server's error frames, on the read goroutine,
	// like OnMessage. Error frames with code 4401 for messages the client
	// still holds are not reported: the client resends those messages,
	// unless the message was "token required" (see TokenPerMessage).
	OnError func(ErrorFrame)
	// OnResumeLost is called when the server cannot resume the user's
	// stream where the client left off (auth_ok says "lost": the client was
	// away longer than the server keeps messages, by default 2 minutes and
	// 256 messages, or its position is from a stream the server no longer
	// has): messages sent to the user meanwhile may be missing, and the
	// application should resynchronise, e.g. fetch its state afresh. It
	// runs on the read goroutine, like OnMessage, after every message
	// received before the gap has been handed to the application (with
	// Receive: taken; the client reads nothing more until then) and before
	// any message after it; Position then names the stream's head. For
	// the first connection (see Resume) it may run before Dial returns. It
	// must not call Close. Default: the client only logs the loss.
	OnResumeLost func()
	// OnState receives every state change of the client that Dial
	// returned, in order, on the client's own goroutine. Dial's own
	// transitions (Connecting, Authenticating, Active) are not reported, nor
	// is anything when Dial fails: once Dial returns, the client is Active,
	// and the first call reports the first change after that (Connecting
	// when the connection is lost, Reauthenticating, Closed). That call may
	// run as soon as Dial has authenticated, concurrently with Dial
	// returning to its caller, so OnState must not read a variable that
	// Dial's result is assigned to without synchronization. It must return
	// quickly: writes and reconnects wait for it. It must not call Close.
	OnState func(State)

	// Resume is where the first connection resumes the user's stream: a
	// position saved from Client.Position of an earlier client of the same
	// user and server (or cluster), so that the messages sent to the user
	// since follow the first auth_ok, or OnResumeLost is called. Default
	// nil: the first connection starts at the stream's head. Reconnections
	// always resume from the client's own position, on servers that keep
	// streams; a server that keeps none ignores Resume. A connection that
	// resumes authenticates with an auth frame, even with TokenInHeader or
	// TicketURL set.
	Resume *protocol.Position

	// Clock times the early refresh (RefreshBefore), ReauthTimeout, the
	// keepalive (PingInterval, PongTimeout), the least second between two
	// auth frames on a socket, and the backoff between reconnection
	// attempts. Default: the system clock. Tests use wsauthtest.Clock.
	Clock reauth.Clock
	// Logger receives the client's logs. Default slog.Default(). Tokens are
	// never logged.
	Logger *slog.Logger
}

// Defaults of Options fields.
const (
	defaultQueueSize        = 256
	defaultRefreshBefore    = 30 * time.Second
	defaultHandshakeTimeout = 10 * time.Second
	defaultWriteTimeout     = 10 * time.Second
	defaultReauthTimeout    = 10 * time.Second
	defaultPingInterval     = 30 * time.Second
	defaultPongTimeout      = 10 * time.Second
	defaultReadLimit        = 1 << 20
)

// withDefaults validates o and returns a copy with defaults filled in.
func (o Options) withDefaults() (Options, error) {
	if o.Token == nil {
		return o, errors.New("client: Options.Token is required")
	}
	if o.TokenInHeader && o.TicketURL != "" {
		return o, errors.New("client: set at most one of Options.TokenInHeader and Options.TicketURL")
	}
	if o.QueueSize < 0 {
		return o, errors.New("client: Options.QueueSize must not be negative")
	}
	if o.QueueSize == 0 {
		o.QueueSize = defaultQueueSize
	}
	if o.ReadLimit < 0 {
		return o, errors.New("client: Options.ReadLimit must not be negative")
	}
	if o.ReadLimit == 0 {
		o.ReadLimit = defaultReadLimit
	}
	if o.PingInterval == 0 {
		o.PingInterval = defaultPingInterval
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"RefreshBefore", &o.RefreshBefore, defaultRefreshBefore},
		{"HandshakeTimeout", &o.HandshakeTimeout, defaultHandshakeTimeout},
		{"WriteTimeout", &o.WriteTimeout, defaultWriteTimeout},
		{"ReauthTimeout", &o.ReauthTimeout, defaultReauthTimeout},
		{"PongTimeout", &o.PongTimeout, defaultPongTimeout},
	} {
		if *d.v < 0 {
			return o, fmt.Errorf("client: Options.%s must not be negative", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if o.Resume != nil {
		at := *o.Resume
		// The server closes with 4400 an auth frame whose position
		// breaks the protocol's rules: refuse it here instead.
		frame := protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeAuth, Token: "t", Resume: &at})
		if _, err := protocol.DecodeClient(frame); err != nil {
			return o, fmt.Errorf("client: Options.Resume: %w", err)
		}
		o.Resume = &at
	}
	b, err := o.Backoff.withDefaults()
	if err != nil {
		return o, err
	}
	o.Backoff = b
	o.Header = o.Header.Clone()
	if o.Header == nil {
		o.Header = http.Header{}
	}
	if o.TLSConfig != nil {
		o.TLSConfig = o.TLSConfig.Clone()
	}
	if o.Clock == nil {
		o.Clock = reauth.SystemClock
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// State is the state of a Client.
type State int

const (
	// Connecting: fetching a token (and exchanging it for a ticket) and
	// opening a socket, or waiting to retry.
	Connecting State = iota
	// Authenticating: the socket is open and the auth frame sent (or the
	// token or ticket went with the upgrade); waiting for auth_ok. Sends
	// are queued.
	Authenticating
	// Active: authenticated; queued messages are written in order.
	Active
	// Reauthenticating: fetching a fresh token and sending it on the same
	// socket; waiting for auth_ok. Sends are queued.
	Reauthenticating
	// Closed: the client ended (see Client.Err). It never leaves this state.
	Closed
)

// String returns the state's name in lower case, e.g. "active".
func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Authenticating:
		return "authenticating"
	case Active:
		return "active"
	case Reauthenticating:
		return "reauthenticating"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}
