package wsauth_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// identityVerifier is a custom Verifier that accepts every token as the
// identity it was built with.
type identityVerifier struct{ id wsauth.Identity }

func (v identityVerifier) Verify(context.Context, string) (wsauth.Identity, error) { return v.id, nil }

// TestEmptySubjectIsRefused is red team item 14 at the server: whatever
// the Verifier, an identity without a subject is refused (4401 "missing
// sub"), since every such token would be the same user.
func TestEmptySubjectIsRefused(t *testing.T) {
	t.Parallel()
	v := identityVerifier{wsauth.Identity{Issuer: "https://idp.test/", ExpiresAt: time.Now().Add(time.Hour)}}
	cl, texts, ce := firstAuthWith(t, v)
	assert.Empty(t, texts)
	assert.Equal(t, wstest.Close{Code: int(protocol.CloseUnauthorized), Reason: "missing sub"}, cl)
	assert.Equal(t, "missing sub", ce.Reason)
}

// TestClientCloseReasonIsValidUTF8 is part of red team item 20: gws does
// not check the UTF-8 of a client's close reason; OnClose gets it made
// valid.
func TestClientCloseReasonIsValidUTF8(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	c, ok := h.loginT(t, h.idp.Token("utf", time.Hour))
	require.NoError(t, c.WriteFrame(true, wstest.OpClose, []byte("\x0f\xa0bad \xff\xfe reason")))
	ev := h.closeEventOf(t, ok["session"].(string))
	assert.Equal(t, protocol.CloseCode(4000), ev.code)
	assert.Equal(t, "bad \uFFFD reason", ev.reason)
}
