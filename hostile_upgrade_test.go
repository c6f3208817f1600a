package wsauth_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// The upgrade and the pre-auth read backstop (issue 13, item 1). ServeHTTP
// sets a socket read deadline of AuthTimeout + WriteTimeout before it lets
// gws write the 101; the scheduler's auth deadline (AuthTimeout on
// Options.Clock) starts once the 101 is written. The 101 write itself is
// bounded by WriteTimeout (gateConn.Write). So the backstop can never run
// out during the upgrade: the write fails first.

// slowLink serves a handler on loopback through sockets whose 101 answer
// (or another write, see holdWrites) can be held. A fresh socket's send
// buffer always takes the 130 bytes of a 101 at once, so a client whose
// receive window is full (a congested link, or a client that pipelined
// requests and reads nothing) is emulated: the write is held for hold, or
// until release is closed, or fails like the kernel's write at the write
// deadline the server set on the socket, whichever comes first.
// Everything else is a plain TCP socket.
type slowLink struct {
	url     string                 // ws:// URL of the endpoint
	addr    string                 // host:port
	hold    atomic.Int64           // how long a held write takes, as a time.Duration
	held    atomic.Pointer[[]byte] // a write that contains this is held; default the 101
	release chan struct{}          // closing it lets every held write go
	writing chan struct{}          // receives a value when a held write starts
}

// holdWrites makes the writes that contain s the held ones, instead of
// the 101.
func (l *slowLink) holdWrites(s string) {
	b := []byte(s)
	l.held.Store(&b)
}

func newSlowLink(t testing.TB, handler http.Handler, hold time.Duration) *slowLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := &slowLink{addr: ln.Addr().String(), writing: make(chan struct{}, 1024), release: make(chan struct{})}
	l.holdWrites("HTTP/1.1 101 ")
	l.url = "ws://" + l.addr + "/ws"
	l.hold.Store(int64(hold))
	serve(t, &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}, slowListener{ln, l})
	return l
}

// serve runs hs on ln until the end of the test.
func serve(t testing.TB, hs *http.Server, ln net.Listener) {
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = hs.Serve(ln)
	}()
	t.Cleanup(func() {
		hs.Close()
		<-served
	})
}

type slowListener struct {
	net.Listener
	link *slowLink
}

func (l slowListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &slowConn{TCPConn: c.(*net.TCPConn), link: l.link}, nil
}

type slowConn struct {
	*net.TCPConn
	link *slowLink
	mu   sync.Mutex
	wdl  time.Time // the write deadline set last
}

func (c *slowConn) SetDeadline(t time.Time) error {
	c.setWriteDeadline(t)
	return c.TCPConn.SetDeadline(t)
}

func (c *slowConn) SetWriteDeadline(t time.Time) error {
	c.setWriteDeadline(t)
	return c.TCPConn.SetWriteDeadline(t)
}

func (c *slowConn) setWriteDeadline(t time.Time) {
	c.mu.Lock()
	c.wdl = t
	c.mu.Unlock()
}

func (c *slowConn) Write(p []byte) (int, error) {
	if bytes.Contains(p, *c.link.held.Load()) {
		select {
		case c.link.writing <- struct{}{}:
		default:
		}
		c.mu.Lock()
		deadline := c.wdl
		c.mu.Unlock()
		var expired <-chan time.Time
		if !deadline.IsZero() {
			timer := time.NewTimer(time.Until(deadline))
			defer timer.Stop()
			expired = timer.C
		}
		held := time.NewTimer(time.Duration(c.link.hold.Load()))
		defer held.Stop()
		select {
		case <-held.C:
		case <-c.link.release:
		case <-expired:
			return 0, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
		}
	}
	return c.TCPConn.Write(p)
}

// waitWriting waits until the server has begun a held write.
func (l *slowLink) waitWriting(t testing.TB) {
	t.Helper()
	select {
	case <-l.writing:
	case <-time.After(5 * time.Second):
		t.Fatal("the server began no held write within 5s")
	}
}

// dialAsync dials url in the background.
func dialAsync(url string) <-chan dialed {
	ch := make(chan dialed, 1)
	go func() {
		c, err := wstest.Dial(url, nil)
		ch <- dialed{c, err}
	}()
	return ch
}

type dialed struct {
	c   *wstest.Conn
	err error
}

func (d dialed) conn(t testing.TB) *wstest.Conn {
	t.Helper()
	require.NoError(t, d.err)
	t.Cleanup(func() { d.c.Close() })
	return d.c
}

func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing within 10s")
		var zero T
		return zero
	}
}

// TestSlowUpgrade: a slow 101 write and the read backstop, over real
// sockets. The backstop and WriteTimeout are real socket deadlines, so
// those cases take real time (under a second each); the scheduler runs on
// a fake clock that only the first case moves.
func TestSlowUpgrade(t *testing.T) {
	t.Parallel()

	// A 101 that takes a long time to go out (on the server's clock) is not
	// taken from the client's AuthTimeout: the deadline starts when the 101
	// is written.
	t.Run("the 101 write does not count against AuthTimeout", func(t *testing.T) {
		t.Parallel()
		const authTimeout = 2 * time.Second
		h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) { o.AuthTimeout = authTimeout }})
		link := newSlowLink(t, h.srv, 100*time.Millisecond)
		d := dialAsync(link.url)
		link.waitWriting(t)
		h.clock.Advance(authTimeout - time.Millisecond) // the 101 is still on its way
		c := recv(t, d).conn(t)
		_, err := c.Sync()
		require.NoError(t, err)
		h.clock.Advance(authTimeout - time.Millisecond)
		stillOpen(t, c)
		h.clock.Advance(time.Millisecond)
		h.refused(t, c, protocol.CloseAuthTimeout, "auth timeout")
		h.settled(t)
	})

	// The scheduler's clock never moves here, as when it lags real time (a
	// wall clock stepped back): the backstop ends the pending socket,
	// AuthTimeout + WriteTimeout after ServeHTTP began, and it does so as
	// the auth deadline does, with 4408. (It used to be gws's "normal
	// closure", 1000, which tells a client not to reconnect.)
	t.Run("the backstop after a slow 101", func(t *testing.T) {
		t.Parallel()
		const (
			authTimeout  = 200 * time.Millisecond
			writeTimeout = time.Second // leaves the held 101 some margin on a busy machine
			hold         = 150 * time.Millisecond
		)
		h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
			o.AuthTimeout, o.WriteTimeout = authTimeout, writeTimeout
		}})
		link := newSlowLink(t, h.srv, hold)
		start := time.Now()
		c := recv(t, dialAsync(link.url)).conn(t)
		upgraded := time.Since(start)
		assert.GreaterOrEqual(t, upgraded, hold, "the 101 was not held")
		h.refused(t, c, protocol.CloseAuthTimeout, "auth timeout")
		elapsed := time.Since(start)
		assert.GreaterOrEqual(t, elapsed, authTimeout+writeTimeout, "the backstop fired early")
		assert.Less(t, elapsed, authTimeout+writeTimeout+3*time.Second, "the backstop fired late")
		h.settled(t)
		h.noApplication(t)
		assert.Zero(t, wsauth.HoldingsOf(h.srv))
	})

	// A 101 that cannot be written within WriteTimeout fails the upgrade
	// there, well before the backstop: no session, nothing held, the
	// socket closed without a byte.
	t.Run("a 101 slower than WriteTimeout", func(t *testing.T) {
		t.Parallel()
		const writeTimeout = 300 * time.Millisecond
		h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) { o.WriteTimeout = writeTimeout }})
		link := newSlowLink(t, h.srv, time.Minute)
		start := time.Now()
		nc, br := dialRaw(t, link.addr, []byte(rawUpgrade(link.addr)))
		require.NoError(t, nc.SetDeadline(time.Now().Add(10*time.Second)))
		b, err := io.ReadAll(br)
		elapsed := time.Since(start)
		if err != nil {
			var ne net.Error
			require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server held the socket: %v", err)
		}
		assert.Empty(t, b, "the client got an answer")
		assert.GreaterOrEqual(t, elapsed, writeTimeout)
		assert.Less(t, elapsed, writeTimeout+3*time.Second)
		require.Eventually(t, func() bool { return wsauth.HoldingsOf(h.srv) == wsauth.Holdings{} },
			5*time.Second, 5*time.Millisecond, "holdings %+v", wsauth.HoldingsOf(h.srv))
		assert.Zero(t, h.closed.Load(), "OnClose ran for a connection that was never upgraded")
	})

	// Shutdown waits for an upgrade in progress: that connection gets its
	// 101 and then 1001, and its OnClose has run when Shutdown returns.
	t.Run("Shutdown during the upgrade", func(t *testing.T) {
		t.Parallel()
		h := newHostileEnv(t, hostileOptions{})
		link := newSlowLink(t, h.srv, 300*time.Millisecond)
		d := dialAsync(link.url)
		link.waitWriting(t)
		require.Equal(t, 1, h.srv.Pending())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, h.srv.Shutdown(ctx))
		assert.Equal(t, wsauth.Holdings{}, wsauth.HoldingsOf(h.srv), "held after Shutdown returned")
		assert.EqualValues(t, 1, h.closed.Load(), "OnClose calls when Shutdown returned")
		c := recv(t, d).conn(t)
		cl, texts, err := c.ReadClose()
		require.NoError(t, err)
		assert.Empty(t, texts)
		assert.Equal(t, wstest.Close{Code: int(protocol.CloseGoingAway), Reason: "server shutting down"}, cl)
	})

	// net/http's own deadlines (ReadTimeout, WriteTimeout of the
	// http.Server) end with the hijack: they do not cut a session short.
	t.Run("http.Server deadlines stop at the hijack", func(t *testing.T) {
		t.Parallel()
		const short = 100 * time.Millisecond
		h := newHostileEnv(t, hostileOptions{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		serve(t, &http.Server{Handler: h.srv, ReadTimeout: short, WriteTimeout: short}, ln)
		c, err := wstest.Dial("ws://"+ln.Addr().String()+"/ws", nil)
		require.NoError(t, err)
		defer c.Close()
		time.Sleep(3 * short)
		_, err = c.Sync()
		require.NoError(t, err, "pending socket")
		require.NoError(t, c.Auth(h.idp.Token("nadia", time.Hour)))
		readType(t, c, "auth_ok")
		time.Sleep(3 * short)
		require.NoError(t, c.WriteText(`{"type":"message","data":"late"}`))
		assert.Equal(t, `"late"`, h.nextMessage().data)
	})
}
