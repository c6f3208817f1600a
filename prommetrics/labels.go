package prommetrics

import (
	"strconv"
	"sync/atomic"

	"github.com/wsauth/wsauth/protocol"
)

// Every label takes its values from a fixed vocabulary: what the server
// says (Event's Stage, Reason, Code, Status) is looked up in it, and a
// value outside it counts as "other". An Event carries no subject, session
// id, token or address to begin with; the vocabularies also bound what a
// client chooses (the code of its own close frame) and what a custom
// Verifier might put in a reason.

// other is the label value of everything outside a vocabulary.
const other = "other"

// stages are the Stage values of Verified events.
var stages = [...]string{"auth", "reauth", "upgrade", "ticket", "message", other}

func stageIndex(s string) int {
	switch s {
	case "auth":
		return 0
	case "reauth":
		return 1
	case "upgrade":
		return 2
	case "ticket":
		return 3
	case "message":
		return 4
	}
	return len(stages) - 1
}

// verifyReasons are the reasons a token is refused with: the server's own
// (errors.go) and jwks's (jwks/errors.go). "" is an accepted token.
var verifyReasons = []string{
	"",
	// The server's.
	"auth timeout", "missing exp", "missing sub", "token expired", "token revoked", "invalid token",
	// jwks's, besides those.
	"keys unavailable", "missing kid", "algorithm not allowed", "unknown issuer", "unknown key",
	"malformed token", "invalid signature", "token not valid yet", "wrong issuer", "wrong audience",
}

// refusalReasons are the Reason values of Refused events.
var refusalReasons = [...]string{"method", "upgrade", "key", "origin", "shutdown", "pending", "hijack",
	"credential", "subprotocol", "ticket", other}

func refusalIndex(r string) int {
	for i, name := range refusalReasons[:len(refusalReasons)-1] {
		if r == name {
			return i
		}
	}
	return len(refusalReasons) - 1
}

// refusalStatuses are the HTTP statuses of Refused events.
var refusalStatuses = [...]int{400, 401, 403, 405, 426, 429, 500, 503, 0}

func statusIndex(status int) int {
	for i, s := range refusalStatuses[:len(refusalStatuses)-1] {
		if status == s {
			return i
		}
	}
	return len(refusalStatuses) - 1
}

func statusLabel(i int) string {
	if i == len(refusalStatuses)-1 {
		return other
	}
	return strconv.Itoa(refusalStatuses[i])
}

// protocolCloseCodes are the close codes that always get a label value of
// their own: RFC 6455's range of registered codes (1000-1015; 1005, 1006
// and 1015 are never sent, but reported) and wsauth's (docs/protocol.md).
func protocolCloseCodes() []protocol.CloseCode {
	codes := make([]protocol.CloseCode, 0, 16+7)
	for c := protocol.CloseCode(1000); c <= 1015; c++ {
		codes = append(codes, c)
	}
	return append(codes, protocol.CloseMalformed, protocol.CloseUnauthorized, protocol.CloseForbidden,
		protocol.CloseAuthTimeout, protocol.CloseBufferOverflow, protocol.CloseTooManyRequests,
		protocol.CloseSessionExpired)
}

// operations are the Member methods of BrokerCall events, as label values.
var operations = [...]string{"publish", "interest", "history", "broadcast", "send", "revoke",
	"put_once", "take_once", other}

func operationIndex(op string) int {
	switch op {
	case "Publish":
		return 0
	case "Interest":
		return 1
	case "History":
		return 2
	case "Broadcast":
		return 3
	case "Send":
		return 4
	case "Revoke":
		return 5
	case "PutOnce":
		return 6
	case "TakeOnce":
		return 7
	}
	return len(operations) - 1
}

// A slot holds one child of a metric vector (the series of one set of
// label values) once it is first used: Observe then finds it with one
// atomic load, where the vector's WithLabelValues would hash the label
// values and allocate. Series appear when first used, so a scrape lists
// only the label values that occurred.
type slot[M any] struct{ p atomic.Pointer[M] }

// get returns the child, made by make (the vector's WithLabelValues) on
// first use: two goroutines that make it at once get the same child.
// make does not escape, so the closures Observe passes cost no
// allocation.
func (s *slot[M]) get(make func() M) M {
	if p := s.p.Load(); p != nil {
		return *p
	}
	m := make()
	s.p.Store(&m)
	return m
}
