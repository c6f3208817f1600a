package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/lxzan/gws"

	"github.com/wsauth/wsauth/protocol"
)

// Sentinel errors of the client API.
var (
	// ErrClosed: Close was called. Err returns it unless the client had
	// already ended for another reason.
	ErrClosed = errors.New("client: closed")
	// ErrQueueFull: the send queue stayed full until Send's context ended.
	// The error also matches the context's error.
	ErrQueueFull = errors.New("client: send queue full")
	// ErrInvalidData: the data passed to Send is not one valid JSON value.
	ErrInvalidData = errors.New("client: data is not a valid JSON value")
	// ErrTokenSource: the TokenSource failed (or returned an empty token).
	// The error also wraps the source's error. It ends the client.
	ErrTokenSource = errors.New("client: token source failed")
)

// errReceiveWithHandler is returned by Receive when messages go to OnMessage.
var errReceiveWithHandler = errors.New("client: Receive is unavailable: Options.OnMessage receives the messages")

// errHandshakeTimeout ends a connection attempt that outlived
// Options.HandshakeTimeout. It is retryable, unlike the caller's context
// ending.
var errHandshakeTimeout = fmt.Errorf("client: handshake timeout: %w", context.DeadlineExceeded)

// errSubjectChanged ends the client when an auth_ok on a socket names
// another subject than the socket's first: the server broke the protocol.
var errSubjectChanged = fmt.Errorf("client: the server changed the subject of the session on reauth: %w", protocol.ErrMalformed)

// lostConnection is how a connection that the client gave up on ends, as
// one that dropped without a close frame: 1006 with a reason of the
// client's own ("reauth timeout", "keepalive timeout"). It is retryable.
func lostConnection(reason string) error {
	return &protocol.CloseError{Code: protocol.CloseAbnormal, Reason: reason}
}

// HandshakeError reports that the server answered the upgrade request
// with an HTTP status instead of switching protocols: 403 for a refused
// Origin, 503 while it shuts down or has too many unauthenticated
// connections, 401 for a refused credential (Options.TokenInHeader,
// Options.TicketURL). With Exchange set it is the ticket exchange that
// answered so. A 401 is a refused token, as a 4401 close is for the auth
// frame: errors.As finds a *protocol.CloseError of code 4401 in it, and
// it ends the client.
type HandshakeError struct {
	// StatusCode is the HTTP status of the response.
	StatusCode int
	// RetryAfter is the response's Retry-After (seconds form); 0 if none.
	// Reconnection waits at least this long (at most Backoff.Max).
	RetryAfter time.Duration
	// Exchange reports that the ticket exchange (Options.TicketURL), not
	// the upgrade, answered with StatusCode.
	Exchange bool
	// reason is the check the server names in the body of a 401 (e.g.
	// "token expired"), when the client could read it.
	reason string
}

// Error implements error.
func (e *HandshakeError) Error() string {
	what := "upgrade"
	if e.Exchange {
		what = "ticket exchange"
	}
	s := "client: " + what + " refused: HTTP " + strconv.Itoa(e.StatusCode) + " " + http.StatusText(e.StatusCode)
	if e.reason != "" {
		s += ": " + e.reason
	}
	return s
}

// Unwrap returns, for a 401, the refusal as a 4401 close with the
// server's reason, so that a refused token looks the same whatever
// carried it; nil otherwise.
func (e *HandshakeError) Unwrap() error {
	if e.StatusCode != http.StatusUnauthorized {
		return nil
	}
	return &protocol.CloseError{Code: protocol.CloseUnauthorized, Reason: e.reason}
}

// newHandshakeError describes a refusal from resp, whose body (what the
// client could read of it) may name the check that failed; a reason that
// repeats one of secrets is dropped.
func newHandshakeError(resp *http.Response, body []byte, secrets ...string) *HandshakeError {
	e := &HandshakeError{StatusCode: resp.StatusCode}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	if e.StatusCode == http.StatusUnauthorized {
		e.reason = refusalReason(body, secrets...)
	}
	return e
}

// retryable reports whether a connection that ended with err, or an attempt
// that failed with it, may be retried: the close codes of
// protocol.CloseCode.Retryable (1005 among them), timeouts, 408, 429 and
// 5xx answers to the upgrade or the ticket exchange, and network errors. A
// token source error, a malformed server frame, a subprotocol mismatch, an
// untrusted TLS certificate, a 401 (a refused token: it unwraps to 4401)
// and other 4xx, and Close are final.
func retryable(err error) bool {
	var ce *protocol.CloseError
	var he *HandshakeError
	var cve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cve):
		return false
	case errors.Is(err, ErrTokenSource), errors.Is(err, ErrClosed),
		errors.Is(err, protocol.ErrMalformed), errors.Is(err, gws.ErrSubprotocolNegotiation),
		errors.Is(err, context.Canceled):
		return false
	case errors.As(err, &ce):
		return ce.Code.Retryable()
	case errors.As(err, &he):
		return he.StatusCode == http.StatusRequestTimeout || he.StatusCode == http.StatusTooManyRequests ||
			he.StatusCode >= 500
	}
	return true
}

// closeErrorFrom turns the error that ended gws's read loop into the close
// the connection is reported to have ended with.
func closeErrorFrom(err error) *protocol.CloseError {
	var ce *gws.CloseError
	if errors.As(err, &ce) { // the server's close frame
		code := protocol.CloseCode(ce.Code)
		if code == 0 {
			code = protocol.CloseNoStatus
		}
		return &protocol.CloseError{Code: code, Reason: string(ce.Reason)}
	}
	// gws closed the connection itself (protocol error, frame too large) and
	// reports the code it sent as its internal StatusCode type.
	var sc interface{ Uint16() uint16 }
	if errors.As(err, &sc) && sc.Uint16() >= 1000 {
		code := protocol.CloseCode(sc.Uint16())
		return &protocol.CloseError{Code: code, Reason: code.String()}
	}
	return &protocol.CloseError{Code: protocol.CloseAbnormal, Reason: "connection lost"}
}
