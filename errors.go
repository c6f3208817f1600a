package wsauth

import (
	"errors"

	"github.com/wsauth/wsauth/protocol"
)

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
	Code    protocol.ErrorCode // preferably 4000-4399; protocol lists the server's own
	Message string
}

// Error implements error.
func (e *MessageError) Error() string { return "wsauth: message refused: " + e.Message }

// The fixed close reasons of the server. A reason never carries client
// input or a token, and names one code only: docs/protocol.md lists them.
// (4401 and 1013 also carry the name of the check a token failed, which
// the Verifier gives: see Verifier.)
var (
	// Before authentication.
	closeAuthRequired = &protocol.CloseError{Code: protocol.CloseUnauthorized, Reason: "auth required"}
	closeAuthTimeout  = &protocol.CloseError{Code: protocol.CloseAuthTimeout, Reason: "auth timeout"}
	closeFlood        = &protocol.CloseError{Code: protocol.CloseTooManyRequests, Reason: "too many bytes before auth"}
	// Frames.
	closeBinary    = &protocol.CloseError{Code: protocol.CloseMalformed, Reason: "binary frame"}
	closeMalformed = &protocol.CloseError{Code: protocol.CloseMalformed, Reason: "malformed frame"}
	closeTooLarge  = &protocol.CloseError{Code: protocol.CloseTooLarge, Reason: "frame too large"}
	// Tokens the Verifier accepted that the server refuses.
	closeInvalidToken = &protocol.CloseError{Code: protocol.CloseUnauthorized, Reason: "invalid token"}
	closeMissingExp   = &protocol.CloseError{Code: protocol.CloseUnauthorized, Reason: "missing exp"}
	closeMissingSub   = &protocol.CloseError{Code: protocol.CloseUnauthorized, Reason: "missing sub"}
	closeTokenExpired = &protocol.CloseError{Code: protocol.CloseUnauthorized, Reason: "token expired"}
	// Identity and expiry.
	closeSubject      = &protocol.CloseError{Code: protocol.CloseForbidden, Reason: "subject changed"}
	closeForbidden    = &protocol.CloseError{Code: protocol.CloseForbidden, Reason: "forbidden"}
	closeRevoked      = &protocol.CloseError{Code: protocol.CloseForbidden, Reason: "session revoked"}
	closeTokenRevoked = &protocol.CloseError{Code: protocol.CloseForbidden, Reason: "token revoked"}
	// Upgrade credentials, answered with HTTP statuses (refuseCredential).
	closeBadTicket          = &protocol.CloseError{Code: protocol.CloseUnauthorized, Reason: "invalid ticket"}
	closeTicketsUnavailable = &protocol.CloseError{Code: protocol.CloseTryAgainLater, Reason: "tickets unavailable"}
	closeSessionExpired     = &protocol.CloseError{Code: protocol.CloseSessionExpired, Reason: "session expired"}
	// closeStreamUnavailable refuses a resume whose history the broker
	// cannot read now.
	closeStreamUnavailable = &protocol.CloseError{Code: protocol.CloseTryAgainLater, Reason: "stream unavailable"}
	// Outbound.
	closeOverflow = &protocol.CloseError{Code: protocol.CloseBufferOverflow, Reason: "buffer overflow"}
	// closeNotReading is what OnClose reports for a client that did not
	// read for WriteTimeout: its socket is full, so it is closed without a
	// close frame.
	closeNotReading = &protocol.CloseError{Code: protocol.CloseBufferOverflow, Reason: "client not reading"}
	// The server.
	closeInternal = &protocol.CloseError{Code: protocol.CloseInternal, Reason: "internal error"}
	closeShutdown = &protocol.CloseError{Code: protocol.CloseGoingAway, Reason: "server shutting down"}
	// closeConnectionLost is what OnClose reports for a client that went
	// away without a close frame; it is never sent.
	closeConnectionLost = &protocol.CloseError{Code: protocol.CloseAbnormal, Reason: "connection lost"}
)
