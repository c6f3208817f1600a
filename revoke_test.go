package wsauth_test

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/wsauthtest"
)

// tokenWithID mints a token of sub living ttl with "jti" id.
func tokenWithID(idp *wsauthtest.IdP, now time.Time, sub, id string, ttl time.Duration) string {
	return idp.Sign(jwt.MapClaims{"iss": idp.Issuer(), "aud": idp.Audience(), "sub": sub, "jti": id,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix()})
}

// TestRevokeSticks: revoking a user closes its sessions and refuses every
// token of it issued up to the revocation (a client reconnecting with the
// same token gets 4403 "token revoked" and does not retry), for
// RevokeFor; a token issued after it gets in.
func TestRevokeSticks(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) { o.RevokeFor = time.Hour }})
	old := h.idp.Token("mal", 48*time.Hour)
	c, _ := h.loginT(t, old)
	n, err := h.srv.Revoke(context.Background(), h.p("mal"))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	h.expectClose(c, protocol.CloseForbidden, "session revoked")

	h.authClosed(t, old, protocol.CloseForbidden, "token revoked")
	assert.False(t, protocol.CloseForbidden.Retryable(), "clients do not loop on it")
	h.authClosed(t, h.idp.Token("mal", time.Hour), protocol.CloseForbidden, "token revoked") // the same second

	h.clock.Advance(time.Second)
	_, ok := h.loginT(t, h.idp.Token("mal", time.Hour))
	assert.Equal(t, "mal", ok["sub"], "a token issued after the revocation gets in")

	h.clock.Advance(time.Hour)
	_, ok = h.loginT(t, old)
	assert.Equal(t, "mal", ok["sub"], "RevokeFor is over")
}

// TestRevokeToken: revoking one token ("jti") closes the sessions holding
// it, refuses it at auth and at reauth, and leaves the user's other tokens
// alone.
func TestRevokeToken(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	now := h.clock.Now()
	stolen := tokenWithID(h.idp, now, "ned", "t-stolen", time.Hour)
	good := tokenWithID(h.idp, now, "ned", "t-good", time.Hour)
	c1, ok1 := h.loginT(t, stolen)
	c2, _ := h.loginT(t, good)
	n, err := h.srv.RevokeToken(context.Background(), h.p("ned"), "t-stolen")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	cl, _, err := c1.ReadClose()
	require.NoError(t, err)
	assert.Equal(t, int(protocol.CloseForbidden), cl.Code)
	assert.Equal(t, protocol.CloseForbidden, h.closeEventOf(t, ok1["session"].(string)).code)
	quiet(t, c2)

	h.authClosed(t, stolen, protocol.CloseForbidden, "token revoked")
	_, ok := h.loginT(t, tokenWithID(h.idp, now, "ned", "t-other", time.Hour))
	assert.Equal(t, "ned", ok["sub"])

	// A reauth with the revoked token ends the session.
	h.clock.Advance(2 * time.Second)
	require.NoError(t, c2.Auth(stolen))
	cl, _, err = c2.ReadClose()
	require.NoError(t, err)
	assert.Equal(t, int(protocol.CloseForbidden), cl.Code)
	assert.Equal(t, "token revoked", cl.Reason)
}

// TestRevokeAcrossTheCluster: a revocation on one node closes the user's
// sessions on the others, every node refuses the revoked token, and so does
// a node that starts afterwards.
func TestRevokeAcrossTheCluster(t *testing.T) {
	t.Parallel()
	nodes, b := newCluster(t, 2, memory(broker.MemoryOptions{}))
	a, bn := nodes[0], nodes[1]
	old := a.idp.Token("oz", time.Hour)
	c, _ := bn.loginT(t, old)
	_, err := a.srv.Revoke(context.Background(), a.p("oz"))
	require.NoError(t, err)
	cl, _, err := c.ReadClose()
	require.NoError(t, err)
	assert.Equal(t, wstest.Close{Code: int(protocol.CloseForbidden), Reason: "session revoked"}, cl)
	assert.Equal(t, "session revoked", bn.closeEventT(t).reason)
	bn.authClosed(t, old, protocol.CloseForbidden, "token revoked")

	later := newHostileEnv(t, hostileOptions{peer: a, broker: func(func() time.Time) broker.Broker { return b }})
	later.authClosed(t, old, protocol.CloseForbidden, "token revoked")
}

// TestRevokeOwnUserFromHandler: a handler that revokes its own user (a
// "sign out everywhere") with the ctx it got reaches the other nodes, though
// closing its own session ends that ctx.
func TestRevokeOwnUserFromHandler(t *testing.T) {
	t.Parallel()
	errs := make(chan error, 1)
	var b broker.Broker
	shared := func(now func() time.Time) broker.Broker {
		if b == nil {
			b = ctxBroker{broker.NewMemory(broker.MemoryOptions{Now: now})}
		}
		return b
	}
	a := newHostileEnv(t, hostileOptions{broker: shared, server: func(o *wsauth.Options) {
		o.OnMessage = func(ctx context.Context, s *wsauth.Session, _ wsauth.Message) error {
			_, err := s.Server().Revoke(ctx, s.Principal())
			errs <- err
			return nil
		}
	}})
	other := newHostileEnv(t, hostileOptions{peer: a, broker: shared})
	elsewhere, _ := other.loginT(t, a.idp.Token("sig", time.Hour))
	here, _ := a.loginT(t, a.idp.Token("sig", time.Hour))
	require.NoError(t, here.WriteText(`{"type":"message","data":"sign out everywhere"}`))
	require.NoError(t, <-errs)
	cl, _, err := elsewhere.ReadClose()
	require.NoError(t, err)
	assert.Equal(t, int(protocol.CloseForbidden), cl.Code)
}

// ctxBroker is a Memory whose members honour the ctx of Revoke, as a
// networked broker does.
type ctxBroker struct{ broker.Broker }

func (c ctxBroker) Join(ctx context.Context, node string, h broker.Handler) (broker.Member, error) {
	m, err := c.Broker.Join(ctx, node, h)
	return ctxMember{m}, err
}

type ctxMember struct{ broker.Member }

func (m ctxMember) Revoke(ctx context.Context, r broker.Revocation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return m.Member.Revoke(ctx, r)
}
