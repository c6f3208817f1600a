package wsauth

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/testlog"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/wsauthtest"
)

// panicListener hands out connections whose next Read panics once armed: a
// stand-in for a bug in gws (such as its negative frame length) or in
// wsauth, reached on the read goroutine outside every callback.
type panicListener struct {
	net.Listener
	armed *atomic.Bool
}

func (l panicListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return panicConn{Conn: c, armed: l.armed}, nil
}

type panicConn struct {
	net.Conn
	armed *atomic.Bool
}

func (c panicConn) Read(p []byte) (int, error) {
	if c.armed.CompareAndSwap(true, false) {
		panic("injected read panic")
	}
	return c.Conn.Read(p)
}

// CloseWrite keeps the lingering close of gateConn working.
func (c panicConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// TestReadLoopPanicClosesOneSession checks that a panic on a connection's
// read goroutine closes that session with 1011, runs OnClose once, is
// logged, and leaves the server serving.
func TestReadLoopPanicClosesOneSession(t *testing.T) {
	t.Parallel()
	idp := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := jwks.New(ctx, jwks.Options{Issuers: []jwks.Issuer{{Issuer: idp.Issuer(), JWKSURL: idp.JWKSURL()}}})
	require.NoError(t, err)
	defer v.Close()
	logger, logs := testlog.New()
	closes := make(chan *protocol.CloseError, 4)
	srv, err := New(Options{Verifier: v, Logger: logger, OnClose: func(_ *Session, ce *protocol.CloseError) { closes <- ce }})
	require.NoError(t, err)
	var armed atomic.Bool
	hs := httptest.NewUnstartedServer(srv)
	hs.Listener = panicListener{Listener: hs.Listener, armed: &armed}
	hs.Start()
	defer hs.Close()
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		require.NoError(t, srv.Shutdown(sctx))
	}()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")

	login := func() *wstest.Conn {
		c, err := wstest.Dial(url, nil)
		require.NoError(t, err)
		require.NoError(t, c.Auth(idp.Token("alice", time.Hour)))
		m, err := c.ReadJSON()
		require.NoError(t, err)
		require.Equal(t, "auth_ok", m["type"])
		return c
	}
	c := login()
	defer c.Close()
	armed.Store(true)
	// The read goroutine is inside Read already: the ping completes that
	// Read, and the next one panics.
	require.NoError(t, c.WriteFrame(true, wstest.OpPing, []byte("p")))
	cl, _, err := c.ReadClose()
	require.NoError(t, err)
	assert.Equal(t, 1011, cl.Code)
	assert.Equal(t, "internal error", cl.Reason)
	select {
	case ce := <-closes:
		assert.Equal(t, protocol.CloseInternal, ce.Code)
	case <-time.After(5 * time.Second):
		t.Fatal("no OnClose")
	}
	assert.Contains(t, logs.String(), "read loop panicked")
	require.Eventually(t, func() bool { return srv.Len() == 0 }, 5*time.Second, 5*time.Millisecond)

	c2 := login()
	defer c2.Close()
	assert.Equal(t, 1, srv.Len())
	select {
	case ce := <-closes:
		t.Fatalf("a second OnClose: %v", ce)
	default:
	}
}
