package protocol

import (
	"errors"
	"strconv"
)

// CloseCode is a WebSocket close status code from the wsauth vocabulary.
// docs/protocol.md lists every code, its meaning and whether a client should
// reconnect after it.
type CloseCode uint16

// The close codes a wsauth server sends. 1006 is never sent on the wire: a
// client reports it when the connection dropped without a close frame.
const (
	CloseNormal          CloseCode = 1000 // normal closure
	CloseGoingAway       CloseCode = 1001 // server shutting down: reconnect
	CloseNoStatus        CloseCode = 1005 // a close frame without a code (client side only; a proxy may send one)
	CloseAbnormal        CloseCode = 1006 // no close frame received (client side only)
	CloseTooLarge        CloseCode = 1009 // frame larger than allowed
	CloseInternal        CloseCode = 1011 // internal error, e.g. a handler panicked
	CloseTryAgainLater   CloseCode = 1013 // a transient fault of the server, e.g. no keys of the IdP yet
	CloseMalformed       CloseCode = 4400 // malformed frame
	CloseUnauthorized    CloseCode = 4401 // token invalid, or a non-auth frame before auth_ok
	CloseForbidden       CloseCode = 4403 // subject changed on reauth, or session revoked
	CloseAuthTimeout     CloseCode = 4408 // no valid auth within the auth timeout
	CloseBufferOverflow  CloseCode = 4413 // outbound buffer full: client too slow or reauth too late
	CloseTooManyRequests CloseCode = 4429 // too many bytes before authentication
	CloseSessionExpired  CloseCode = 4440 // no fresh token by the reauth deadline
)

var codeNames = map[CloseCode]string{
	CloseNormal:          "normal closure",
	CloseGoingAway:       "going away",
	CloseNoStatus:        "no status",
	CloseAbnormal:        "abnormal closure",
	CloseTooLarge:        "frame too large",
	CloseInternal:        "internal error",
	CloseTryAgainLater:   "try again later",
	CloseMalformed:       "malformed frame",
	CloseUnauthorized:    "unauthorized",
	CloseForbidden:       "forbidden",
	CloseAuthTimeout:     "auth timeout",
	CloseBufferOverflow:  "buffer overflow",
	CloseTooManyRequests: "too many requests",
	CloseSessionExpired:  "session expired",
}

// String returns the code's short name, e.g. "unauthorized", or the number
// for a code outside the vocabulary.
func (c CloseCode) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return strconv.Itoa(int(c))
}

// Retryable reports whether a client should reconnect (with backoff) after
// the server closed with this code. Terminal codes (4400, 4401, 4403, 1009)
// mean that reconnecting with the same input fails again.
func (c CloseCode) Retryable() bool {
	switch c {
	case CloseGoingAway, CloseNoStatus, CloseAbnormal, CloseInternal, CloseTryAgainLater, CloseAuthTimeout,
		CloseBufferOverflow, CloseTooManyRequests, CloseSessionExpired:
		return true
	}
	return false
}

// CloseError is a close code with its short reason. Server hooks return it to
// choose how a session ends; clients return it when the server closed the
// connection. Reasons are fixed, short texts: never a token, never input.
type CloseError struct {
	Code   CloseCode
	Reason string
}

// Error implements error: "wsauth: closed 4401 (unauthorized): token expired".
func (e *CloseError) Error() string {
	s := "wsauth: closed " + strconv.Itoa(int(e.Code)) + " (" + e.Code.String() + ")"
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Is reports whether target is a *CloseError with the same code, so that
// errors.Is(err, &protocol.CloseError{Code: protocol.CloseForbidden}) works.
func (e *CloseError) Is(target error) bool {
	t, ok := target.(*CloseError)
	return ok && t != nil && t.Code == e.Code
}

// MaxReasonLen is the longest close reason RFC 6455 allows (a control frame
// payload is at most 125 bytes, two of which carry the code).
const MaxReasonLen = 123

// CloseStatus returns the code of the first *CloseError in err's chain, or
// 0 if there is none. A client uses it on the error a closed connection
// reported, a server on the error a hook returned:
//
//	if protocol.CloseStatus(err) == protocol.CloseUnauthorized {
//		// sign in again
//	}
func CloseStatus(err error) CloseCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}
