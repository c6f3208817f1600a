package wsauth

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"

	"github.com/wsauth/wsauth/protocol"
)

// TestFixedCloseReasons: every fixed close reason fits a close frame and
// names one code only, so a client (or an operator reading OnClose) can
// tell the code from the reason; docs/protocol.md lists them.
func TestFixedCloseReasons(t *testing.T) {
	t.Parallel()
	all := []*protocol.CloseError{
		closeAuthRequired, closeAuthTimeout, closeFlood, closeBinary, closeMalformed, closeTooLarge,
		closeMissingExp, closeMissingSub, closeTokenExpired, closeSubject, closeForbidden, closeRevoked, closeTokenRevoked, closeBadTicket, closeTicketsUnavailable,
		closeSessionExpired, closeStreamUnavailable, closeOverflow, closeNotReading, closeInternal, closeShutdown, closeConnectionLost,
	}
	codeOf := map[string]protocol.CloseCode{}
	for _, ce := range all {
		assert.NotEmpty(t, ce.Reason)
		assert.LessOrEqual(t, len(ce.Reason), protocol.MaxReasonLen, ce.Reason)
		assert.True(t, utf8.ValidString(ce.Reason), ce.Reason)
		if code, seen := codeOf[ce.Reason]; seen {
			assert.Equal(t, code, ce.Code, "reason %q names two codes", ce.Reason)
		}
		codeOf[ce.Reason] = ce.Code
	}
	assert.Len(t, codeOf, len(all), "a reason is listed twice")
}
