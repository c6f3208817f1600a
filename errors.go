package wsauth

import (
	"context"
	"errors"

	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/reauth"
	"github.com/wsauth/wsauth/session"
)

// Verifier verifies the token of an auth frame and returns the identity it
// proves. Verify must honour ctx: it is bounded by the connection's auth
// deadline. Its error is never shown to the client; with a jwks.Verifier the
// close reason says which check failed ("token expired", "unknown key").
type Verifier interface {
	Verify(ctx context.Context, token string) (Identity, error)
}

var _ Verifier = (*jwks.Verifier)(nil)

// Identity is the verified identity bound to a session.
type Identity = session.Identity

// Clock is the time source of a Server (see Options.Clock).
type Clock = reauth.Clock

// Principal names one user: a subject of one issuer (see session.Principal).
type Principal = session.Principal

// CloseError is a close code with a short reason. Hooks return it to choose
// how a session closes; OnClose receives it. errors.Is matches on the code.
type CloseError = protocol.CloseError

// CloseCode is a WebSocket close code from the wsauth vocabulary.
type CloseCode = protocol.CloseCode

// Sentinel errors of the Server API.
var (
	// ErrSessionNotFound: no live, authenticated session has that id.
	ErrSessionNotFound = errors.New("wsauth: session not found")
	// ErrSessionClosed: the session closed; the message was not queued.
	ErrSessionClosed = errors.New("wsauth: session closed")
	// ErrInvalidData: the data passed to a Send method is not one valid JSON value.
	ErrInvalidData = errors.New("wsauth: data is not a valid JSON value")
)

// MessageError refuses one client message: the client receives an error
// frame with Code, Message and the message's id as ref, and the connection
// stays open. Return it from Options.OnMessage. Message is sent to the
// client: keep it short and free of secrets.
type MessageError struct {
	Code    int
	Message string
}

// Error implements error.
func (e *MessageError) Error() string { return "wsauth: message refused: " + e.Message }

// Error-frame codes the server itself uses. Applications choose their own
// codes for MessageError, preferably in 4000-4399.
const (
	// ErrorCodeReauthRequired refuses a message sent while the session's
	// token is expired (ref names it: reauthenticate, then send it again),
	// and a reauthentication's token (no ref; the message says why, e.g.
	// "token expired"): the session keeps its current token until its exp
	// and grace run out.
	ErrorCodeReauthRequired = 4401
	// ErrorCodeNotAccepted refuses every message when the server has no OnMessage.
	ErrorCodeNotAccepted = 4405
	// ErrorCodeTooManyRequests refuses an auth frame sent less than a
	// second after the session's previous one (other than the answer to a
	// reauth_required): it is not verified.
	ErrorCodeTooManyRequests = 4429
	// ErrorCodeInternal refuses a message whose handler failed.
	ErrorCodeInternal = 4500
)
