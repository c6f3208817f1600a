package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/client"
	"github.com/wsauth/wsauth/protocol"
)

func TestDialAuthenticatesAndExchangesMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	p, opts := e.newProbe("alice", time.Hour, nil)
	c := e.dial(opts)
	e.expect("auth:alice")
	assert.Empty(t, p.states, "Dial's own transitions are not reported")

	sessions := e.server().Sessions(e.p("alice"))
	require.Len(t, sessions, 1)
	assert.Equal(t, sessions[0].ID(), c.Session())
	assert.Equal(t, "alice", c.Subject())
	assert.Equal(t, epoch.Add(time.Hour).Unix(), c.Expiry().Unix())
	assert.Equal(t, client.Active, c.State())
	assert.EqualValues(t, 1, p.calls.Load())
	assert.NoError(t, c.Err())

	ctx := context.Background()
	require.NoError(t, c.Send(ctx, json.RawMessage(`{"text":"hi"}`)))
	require.NoError(t, c.Send(ctx, json.RawMessage(` 2 `)))
	e.expect(`msg:1:{"text":"hi"}`, `msg:2:2`)
	assert.ErrorIs(t, c.Send(ctx, json.RawMessage(`{bad`)), client.ErrInvalidData)
	assert.ErrorIs(t, c.Send(ctx, nil), client.ErrInvalidData)

	e.send("alice", `{"n":1}`)
	e.send("alice", `"two"`)
	receive(t, c, `{"n":1}`)
	receive(t, c, `"two"`)

	require.NoError(t, c.Close())
	e.expect("close:1000")
	waitDone(t, c)
	assert.ErrorIs(t, c.Err(), client.ErrClosed)
	assert.Equal(t, client.Closed, c.State())
	assert.Equal(t, client.Closed, <-p.states)
	_, err := c.Receive(ctx)
	assert.ErrorIs(t, err, client.ErrClosed)
	assert.ErrorIs(t, c.Send(ctx, json.RawMessage(`1`)), client.ErrClosed)
	assert.NoError(t, c.Close(), "a second Close does nothing")
}

func TestDialFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) { o.OriginPatterns = []string{"app.example.com"} })
	sourceDown := errors.New("idp down")
	cases := []struct {
		name   string
		token  func(ctx context.Context, call int) (string, error)
		header http.Header
		check  func(t *testing.T, err error)
	}{
		{"expired token", func(context.Context, int) (string, error) {
			return e.idp.Token("bob", -time.Minute), nil
		}, nil, closedWith(protocol.CloseUnauthorized, "token expired")},
		{"garbage token", func(context.Context, int) (string, error) {
			return "not.a.jwt", nil
		}, nil, closedWith(protocol.CloseUnauthorized, "malformed token")},
		{"token source fails", func(context.Context, int) (string, error) {
			return "", sourceDown
		}, nil, func(t *testing.T, err error) {
			assert.ErrorIs(t, err, client.ErrTokenSource)
			assert.ErrorIs(t, err, sourceDown)
		}},
		{"empty token", func(context.Context, int) (string, error) {
			return "", nil
		}, nil, func(t *testing.T, err error) { assert.ErrorIs(t, err, client.ErrTokenSource) }},
		{"origin refused", nil, http.Header{"Origin": {"https://evil.example"}}, func(t *testing.T, err error) {
			var he *client.HandshakeError
			require.ErrorAs(t, err, &he)
			assert.Equal(t, http.StatusForbidden, he.StatusCode)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, opts := e.newProbe("bob", time.Hour, tc.token)
			opts.Header = tc.header
			c, err := client.Dial(context.Background(), e.url, opts)
			require.Error(t, err)
			assert.Nil(t, c)
			tc.check(t, err)
			assert.EqualValues(t, 1, p.calls.Load(), "one attempt, no retry")
			assert.Empty(t, p.states, "a failed Dial reports no state: its error does")
		})
	}

	_, opts := e.newProbe("bob", time.Hour, nil)
	for _, url := range []string{"http://example.com/ws", "ws://", "://"} {
		_, err := client.Dial(context.Background(), url, opts)
		assert.Error(t, err, url)
	}
	_, err := client.Dial(context.Background(), e.url, client.Options{})
	assert.ErrorContains(t, err, "Token is required")
	opts.Backoff.Multiplier = 0.5
	_, err = client.Dial(context.Background(), e.url, opts)
	assert.ErrorContains(t, err, "Multiplier")
}

func closedWith(code protocol.CloseCode, reason string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		var ce *protocol.CloseError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, code, ce.Code)
		assert.Equal(t, reason, ce.Reason)
	}
}

func TestDialContextBoundsTheAttempt(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	e := newEnv(t, func(o *wsauth.Options) {
		v := o.Verifier
		o.Verifier = verifierFunc(func(ctx context.Context, tok string) (wsauth.Identity, error) {
			if strings.Contains(tok, ".") { // a real token: verify it
				return v.Verify(ctx, tok)
			}
			select { // "hang": a verification that never ends by itself
			case <-release:
			case <-ctx.Done():
			}
			return wsauth.Identity{}, errors.New("released")
		})
	})
	t.Cleanup(func() { close(release) })
	hang := func(context.Context, int) (string, error) { return "hang", nil }

	t.Run("token source blocks", func(t *testing.T) {
		_, opts := e.newProbe("cat", time.Hour, func(ctx context.Context, _ int) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := client.Dial(ctx, e.url, opts)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("no auth_ok: ctx ends", func(t *testing.T) {
		_, opts := e.newProbe("cat", time.Hour, hang)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := client.Dial(ctx, e.url, opts)
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Run("no auth_ok: handshake timeout", func(t *testing.T) {
		_, opts := e.newProbe("cat", time.Hour, hang)
		opts.HandshakeTimeout = 50 * time.Millisecond
		_, err := client.Dial(context.Background(), e.url, opts)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorContains(t, err, "handshake timeout")
	})
	t.Run("no upgrade answer", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		accepted := make(chan net.Conn, 1)
		go func() {
			if c, err := ln.Accept(); err == nil {
				accepted <- c
			}
			close(accepted)
		}()
		_, opts := e.newProbe("cat", time.Hour, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err = client.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", opts)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		ln.Close() // ends Accept if the dial never got that far
		if c, ok := <-accepted; ok {
			c.Close()
		}
	})
}

type verifierFunc func(ctx context.Context, token string) (wsauth.Identity, error)

func (f verifierFunc) Verify(ctx context.Context, token string) (wsauth.Identity, error) {
	return f(ctx, token)
}

func TestRevokeIsTerminal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	p, opts := e.newProbe("dora", time.Hour, nil)
	c := e.dial(opts)
	e.expect("auth:dora")

	n, err := e.server().Revoke(context.Background(), e.p("dora"))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	waitDone(t, c)
	var ce *protocol.CloseError
	require.ErrorAs(t, c.Err(), &ce)
	assert.Equal(t, protocol.CloseForbidden, ce.Code)
	assert.Equal(t, "session revoked", ce.Reason)
	assert.EqualValues(t, 1, p.calls.Load(), "no reconnection")
	e.expect("close:4403")
	e.quiet()

	_, err = c.Receive(context.Background())
	assert.ErrorIs(t, err, ce)
	assert.ErrorIs(t, c.Send(context.Background(), json.RawMessage(`1`)), ce)
	assert.Equal(t, client.Closed, c.State())
}

func TestErrorFramesReachOnError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) {
		o.OnMessage = func(_ context.Context, _ *wsauth.Session, m wsauth.Message) error {
			if string(m.Data) == `"refuse"` {
				return &wsauth.MessageError{Code: 4001, Message: "no thanks"}
			}
			return nil
		}
	})
	p, opts := e.newProbe("erin", time.Hour, nil)
	c := e.dial(opts)
	require.NoError(t, c.Send(context.Background(), json.RawMessage(`"ok"`)))
	require.NoError(t, c.Send(context.Background(), json.RawMessage(`"refuse"`)))
	select {
	case f := <-p.errors:
		assert.Equal(t, client.ErrorFrame{Code: 4001, Message: "no thanks", Ref: "2", Data: json.RawMessage(`"refuse"`)}, f)
	case <-time.After(wait):
		t.Fatal("no error frame")
	}
	assert.Equal(t, client.Active, c.State(), "error frames are not fatal")
}

func TestOnMessageReplacesReceive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	got := make(chan string, 10)
	_, opts := e.newProbe("fred", time.Hour, nil)
	opts.OnMessage = func(data json.RawMessage) {
		if string(data) == `"panic"` {
			panic("handler bug")
		}
		got <- string(data)
	}
	c := e.dial(opts)
	e.send("fred", `"panic"`) // recovered and logged: the client carries on
	e.send("fred", `1`)
	e.send("fred", `2`)
	assert.Equal(t, "1", <-got)
	assert.Equal(t, "2", <-got)
	_, err := c.Receive(context.Background())
	assert.ErrorContains(t, err, "OnMessage")
	assert.Equal(t, client.Active, c.State())
}

// A server that breaks the protocol ends the client: reconnecting would
// meet the same server.
func TestMalformedServerFrames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		reply func(*gws.Conn)
	}{
		{"not a frame", func(s *gws.Conn) { _ = s.WriteString(`{"type":"welcome"}`) }},
		{"binary", func(s *gws.Conn) { _ = s.WriteMessage(gws.OpcodeBinary, []byte(`{"type":"auth_ok"}`)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := dialFake(t, tc.reply)
			assert.ErrorIs(t, err, protocol.ErrMalformed)
		})
	}
}

// dialFake dials a fake server that answers every frame with reply.
func dialFake(t *testing.T, reply func(*gws.Conn)) (*client.Client, error) {
	t.Helper()
	up := gws.NewUpgrader(replier(reply), &gws.ServerOption{SubProtocols: []string{protocol.Subprotocol}})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s, err := up.Upgrade(w, r); err == nil {
			s.ReadLoop()
		}
	}))
	t.Cleanup(hs.Close)
	c, err := client.Dial(context.Background(), "ws"+strings.TrimPrefix(hs.URL, "http"), client.Options{
		Token:  client.StaticToken("t"),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

// replier is a gws event handler answering every frame with itself.
type replier func(*gws.Conn)

func (replier) OnOpen(*gws.Conn)                        {}
func (replier) OnClose(*gws.Conn, error)                {}
func (replier) OnPing(*gws.Conn, []byte)                {}
func (replier) OnPong(*gws.Conn, []byte)                {}
func (r replier) OnMessage(s *gws.Conn, m *gws.Message) { m.Close(); r(s) }

// Messages that arrived before a terminal close are still received, in
// order, and then Receive returns the close.
func TestReceiveDrainsBeforeTheError(t *testing.T) {
	t.Parallel()
	var frames atomic.Int32
	c, err := dialFake(t, func(s *gws.Conn) {
		if frames.Add(1) == 1 { // the auth frame
			_ = s.WriteString(`{"type":"auth_ok","session":"s1","sub":"uma","exp":0}`)
			return
		}
		_ = s.WriteString(`{"type":"message","data":1}`)
		_ = s.WriteString(`{"type":"message","data":2}`)
		_ = s.WriteClose(uint16(protocol.CloseForbidden), []byte("go away"))
	})
	require.NoError(t, err)
	assert.Equal(t, "s1", c.Session())
	assert.True(t, c.Expiry().IsZero(), "exp 0: the server ignores expiry")
	require.NoError(t, c.Send(context.Background(), json.RawMessage(`"bye?"`)))
	waitDone(t, c)
	receive(t, c, `1`)
	receive(t, c, `2`)
	_, err = c.Receive(context.Background())
	assert.ErrorIs(t, err, &protocol.CloseError{Code: protocol.CloseForbidden, Reason: ""})
}

func TestDialTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	hs := httptest.NewUnstartedServer(e.server())
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	hs.StartTLS()
	t.Cleanup(hs.Close)
	url := "wss" + strings.TrimPrefix(hs.URL, "https") + "/ws"

	_, opts := e.newProbe("wes", time.Hour, nil)
	_, err := client.Dial(context.Background(), url, opts)
	var cve *tls.CertificateVerificationError
	require.ErrorAs(t, err, &cve, "the test server's certificate is not in the system roots")

	roots := x509.NewCertPool()
	roots.AddCert(hs.Certificate())
	opts.TLSConfig = &tls.Config{RootCAs: roots}
	c, err := client.Dial(context.Background(), url, opts)
	require.NoError(t, err)
	defer c.Close()
	e.expect("auth:wes") // the first attempt never reached the server
	require.NoError(t, c.Send(context.Background(), json.RawMessage(`"over tls"`)))
	e.expect(`msg:1:"over tls"`)
}

// OnState reports the changes of the client Dial returned, not Dial's own
// transitions: it is first called when the connection is lost.
func TestOnStateStartsAfterDial(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	p, opts := e.newProbe("olly", time.Hour, nil)
	opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	c := e.dial(opts)
	assert.Equal(t, client.Active, c.State())
	assert.Empty(t, p.states, "Dial reports nothing")
	e.restart()
	for _, want := range []client.State{client.Connecting, client.Authenticating, client.Active} {
		select {
		case got := <-p.states:
			require.Equal(t, want, got)
		case <-time.After(wait):
			t.Fatalf("no state %v", want)
		}
		if want == client.Connecting {
			p.advanceUntilActive(c, 10*time.Millisecond)
		}
	}
	require.NoError(t, c.Close())
	assert.Equal(t, client.Closed, <-p.states)
}
