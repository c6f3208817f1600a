package wsauth_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// TestDroppedClientIsConnectionLost: a client that goes away without a
// close frame, with a FIN or a reset, before or after authenticating, is
// reported to OnClose as 1006 "connection lost", as Options.OnClose
// says. It used to be 1000 "normal closure": gws answers the read error
// with a 1000 close frame of its own, and that code was reported as the
// server's.
func TestDroppedClientIsConnectionLost(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	for _, tc := range []struct {
		name        string
		reset, auth bool
	}{
		{"FIN while pending", false, false},
		{"reset while pending", true, false},
		{"FIN after auth", false, true},
		{"reset after auth", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.open(t, nil)
			if tc.auth {
				require.NoError(t, c.Auth(h.idp.Token("ruth", time.Hour)))
				readType(t, c, "auth_ok")
			}
			if tc.reset {
				require.NoError(t, c.Conn.(*net.TCPConn).SetLinger(0))
			}
			c.Close()
			ev := h.closeEventT(t)
			assert.Equal(t, protocol.CloseAbnormal, ev.code, "reason %q", ev.reason)
			assert.Equal(t, "connection lost", ev.reason)
		})
	}
	h.settled(t)
}

// readUntilClose reads raw frames until the server's close frame, without
// answering it or closing the socket, and returns the text frames before it
// and the close code.
func readUntilClose(t testing.TB, c *wstest.Conn) (texts []string, code int) {
	t.Helper()
	for {
		op, p, err := c.ReadFrame()
		require.NoError(t, err)
		switch op {
		case wstest.OpText:
			texts = append(texts, string(p))
		case wstest.OpClose:
			require.GreaterOrEqual(t, len(p), 2)
			return texts, int(p[0])<<8 | int(p[1])
		}
	}
}

// blockingHistory is a Memory broker whose History waits, once armed,
// until released: a hook inside a session's first authentication (the
// read of its stream's history), between OnAuthenticated and auth_ok.
type blockingHistory struct {
	broker.Broker
	armed            atomic.Bool
	entered, release chan struct{}
}

func (b *blockingHistory) Join(ctx context.Context, node string, h broker.Handler) (broker.Member, error) {
	m, err := b.Broker.Join(ctx, node, h)
	return blockingMember{m, b}, err
}

type blockingMember struct {
	broker.Member
	b *blockingHistory
}

func (m blockingMember) History(ctx context.Context, p session.Principal, after protocol.Position) ([]broker.Message, protocol.Position, error) {
	if m.b.armed.CompareAndSwap(true, false) {
		close(m.b.entered)
		<-m.b.release
	}
	return m.Member.History(ctx, p, after)
}

// TestShutdownDuringFirstAuth: a session closed while its first
// authentication completes, between OnAuthenticated and auth_ok (here by
// Shutdown, while the session's stream is being read), lingers like any
// closed socket: a client that neither reads nor closes is let go after a
// second. activate used to clear the socket's read deadline after such a
// close had set the linger deadline, so the drain waited for the client
// for ever, and Shutdown with it.
func TestShutdownDuringFirstAuth(t *testing.T) {
	t.Parallel()
	b := &blockingHistory{entered: make(chan struct{}), release: make(chan struct{})}
	h := newHostileEnv(t, hostileOptions{broker: func(now func() time.Time) broker.Broker {
		b.Broker = broker.NewMemory(broker.MemoryOptions{Now: now})
		return b
	}})
	b.armed.Store(true)
	c := h.open(t, nil)
	require.NoError(t, c.Auth(h.idp.Token("pat", time.Hour)))
	recv(t, b.entered)
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		shutdown <- h.srv.Shutdown(ctx)
	}()
	texts, code := readUntilClose(t, c) // and then neither answer nor close
	assert.Empty(t, texts)
	assert.Equal(t, int(protocol.CloseGoingAway), code)
	// The end of the stream: the close has shut the server's write side,
	// and it sets the linger deadline right after that. Only then may
	// activate go on, for this test to be able to fail.
	_, _, err := c.ReadFrame()
	require.ErrorIs(t, err, io.EOF)
	time.Sleep(20 * time.Millisecond)
	close(b.release)
	start := time.Now()
	require.NoError(t, recv(t, shutdown), "Shutdown waited for a client that never closes")
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.Equal(t, wsauth.Holdings{}, wsauth.HoldingsOf(h.srv))
}

// The refusal paths (issue 13, item 3): every way a connection is refused
// or closed, before and after the upgrade, must release what it holds: its
// pending slot, its scheduler entry, its outbox (to OnUndelivered), its
// registry entry, its entry in
// the server's connections, and its socket. Each path runs on a rig whose
// hooks can take every turn; TestRefusalPathsReleaseEverything runs each
// once and checks the server's holdings (HoldingsOf) and the OnClose calls,
// and the serial "refusal paths" case of TestHostileResources runs each
// several times and checks goroutines and file descriptors.

// refusalRig is a hostileEnv whose hooks decide by subject, with handlers in
// front of the server that break the hijack and a slow link that holds the
// 101 past WriteTimeout.
type refusalRig struct {
	*hostileEnv
	noHijack  string // ws URL: the ResponseWriter is no http.Hijacker
	hijackErr string // ws URL: Hijack fails
	hijacks   atomic.Int64
	slow      *slowLink
	waiting   chan struct{} // OnAuthenticated of "waiter" has begun
}

const (
	rigWriteTimeout = time.Second // real time: see hostileChurn's writeTimeout
	rigBuffer       = 4           // BufferMessages
)

func newRefusalRig(t testing.TB) *refusalRig {
	t.Helper()
	r := &refusalRig{waiting: make(chan struct{}, 16)}
	r.hostileEnv = newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.WriteTimeout = rigWriteTimeout
		o.BufferMessages = rigBuffer
		o.MaxPending, o.MaxPendingPerIP = 4, 2
		o.ClientIP = func(r *http.Request) string {
			if ip := r.Header.Get("X-Test-IP"); ip != "" {
				return ip
			}
			return "127.0.0.1"
		}
		o.OnAuthenticated = func(ctx context.Context, s *wsauth.Session) error {
			reauth := s.State() != session.Pending
			switch s.Principal().Subject {
			case "refused":
				return errors.New("not today")
			case "custom":
				return &protocol.CloseError{Code: 4000, Reason: "custom"}
			case "panicky":
				panic("OnAuthenticated bug")
			case "waiter":
				r.waiting <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			case "sender":
				if err := s.Send(json.RawMessage(`"hello"`)); err != nil {
					return err
				}
				return errors.New("not today")
			case "fickle":
				if reauth {
					return errors.New("not any more")
				}
			}
			return nil
		}
		next := o.OnMessage
		o.OnMessage = func(ctx context.Context, s *wsauth.Session, m wsauth.Message) error {
			switch string(m.Data) {
			case `"panic"`:
				panic("OnMessage bug")
			case `"kick"`:
				return &protocol.CloseError{Code: protocol.CloseForbidden, Reason: "kicked"}
			}
			return next(ctx, s, m)
		}
	}})
	front := func(wrap func(http.ResponseWriter) http.ResponseWriter) string {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			r.srv.ServeHTTP(wrap(w), req)
		}))
		t.Cleanup(hs.Close)
		return "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	}
	r.noHijack = front(func(w http.ResponseWriter) http.ResponseWriter { return noHijacker{w} })
	r.hijackErr = front(func(w http.ResponseWriter) http.ResponseWriter { return failingHijacker{w, &r.hijacks} })
	r.slow = newSlowLink(t, r.srv, time.Minute)
	return r
}

// noHijacker hides the Hijacker of the ResponseWriter it wraps, as an
// HTTP/2 stream or a middleware's writer does.
type noHijacker struct{ http.ResponseWriter }

// failingHijacker's Hijack fails.
type failingHijacker struct {
	http.ResponseWriter
	calls *atomic.Int64
}

func (f failingHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	f.calls.Add(1)
	return nil, nil, errors.New("hijack refused")
}

// status sends an upgrade request to url with extra header lines (see
// upgradeRequest) and returns the answer's status and Retry-After.
func status(t testing.TB, url, extra string) (int, string) {
	t.Helper()
	host := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/ws")
	return rawStatus(t, host, upgradeRequest(host, extra))
}

func rawStatus(t testing.TB, host, req string) (int, string) {
	t.Helper()
	nc, br := dialRaw(t, host, []byte(req))
	defer nc.Close()
	resp := readUpgradeResponse(t, br)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// closedWith reads c until the server's close frame and checks it and what
// OnClose got (onClose, when it differs from what the client got); it
// returns the text frames before the close. The client answers the close
// and closes its socket first, as browsers do, so that the server need not
// linger for it.
func (r *refusalRig) closedWith(t testing.TB, c *wstest.Conn, want protocol.CloseError, onClose ...protocol.CloseError) []string {
	t.Helper()
	cl, texts, err := c.ReadClose()
	ev := r.closeEventT(t)
	require.NoError(t, err, "no close frame; OnClose got %d %q", ev.code, ev.reason)
	assert.Equal(t, wstest.Close{Code: int(want.Code), Reason: want.Reason}, cl, "the client's close")
	if len(onClose) > 0 {
		want = onClose[0]
	}
	assert.Equal(t, want, protocol.CloseError{Code: ev.code, Reason: ev.reason}, "OnClose")
	var s []string
	for _, b := range texts {
		s = append(s, string(b))
	}
	return s
}

// shutdown starts Shutdown and returns a function that waits for it to
// return nil. The clients read their 1001 meanwhile, and close, as
// browsers do; the server would otherwise linger a second for each.
func (r *refusalRig) shutdown(t testing.TB) (wait func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.srv.Shutdown(context.Background()) }()
	return func() {
		t.Helper()
		require.NoError(t, recv(t, done))
	}
}

// lost waits for OnClose of a connection that dropped.
func (r *refusalRig) lost(t testing.TB) {
	t.Helper()
	ev := r.closeEventT(t)
	assert.Equal(t, protocol.CloseError{Code: protocol.CloseAbnormal, Reason: "connection lost"},
		protocol.CloseError{Code: ev.code, Reason: ev.reason})
}

// login authenticates a new connection as sub (a one-hour token).
func (r *refusalRig) login(t testing.TB, sub string) *wstest.Conn {
	t.Helper()
	c, _ := r.loginT(t, r.idp.Token(sub, time.Hour))
	return c
}

// expired logs sub in with a one-minute token and lets it expire: the
// session buffers what is sent to it.
func (r *refusalRig) expired(t *testing.T, sub string) *wstest.Conn {
	t.Helper()
	c, ok := r.loginT(t, r.idp.Token(sub, time.Minute))
	r.clock.Advance(time.Minute)
	readType(t, c, "reauth_required")
	s, found := r.srv.Session(ok["session"].(string))
	require.True(t, found)
	require.Equal(t, session.Expired, s.State())
	return c
}

// sendTo sends data to every session of sub and returns how many took it.
func (r *refusalRig) sendTo(t testing.TB, sub, data string) int {
	t.Helper()
	n, err := r.srv.SendToPrincipals(context.Background(), json.RawMessage(data), r.p(sub))
	require.NoError(t, err)
	return n
}

// handedOver checks that sub's undelivered messages reached
// OnUndelivered: want more of them than before the path (before).
func (r *refusalRig) handedOver(t testing.TB, sub string, before, want int) {
	t.Helper()
	require.Eventually(t, func() bool { return len(r.undeliveredFor(sub)) == before+want }, 5*time.Second, time.Millisecond,
		"undelivered %d, want %d", len(r.undeliveredFor(sub)), before+want)
}

// revokedUsers numbers the users the "Revoke" path revokes.
var revokedUsers atomic.Int64

// refusalPath is one way a connection ends. run drives it and checks what
// the client and OnClose saw.
type refusalPath struct {
	name string
	// own: the path shuts the server down, so it needs a rig of its own.
	own bool
	// rounds in the serial resource check; default 10, 3 for own.
	rounds int
	run    func(t *testing.T, r *refusalRig)
}

var refusalSubjects = []string{"ann", "bob", "refused", "custom", "panicky", "waiter", "sender", "fickle", "late", "flood", "sloth"}

func refusalPaths() []refusalPath {
	httpOnly := func(name, extra string, want int) refusalPath {
		return refusalPath{name: name, run: func(t *testing.T, r *refusalRig) {
			got, _ := status(t, r.url, extra)
			assert.Equal(t, want, got)
		}}
	}
	pending := func(name string, wire func(r *refusalRig) []byte, want protocol.CloseError) refusalPath {
		return refusalPath{name: name, run: func(t *testing.T, r *refusalRig) {
			c := r.open(t, nil)
			_, err := c.Write(wire(r))
			require.NoError(t, err)
			assert.Empty(t, r.closedWith(t, c, want))
		}}
	}
	authFails := func(name, sub string, want protocol.CloseError) refusalPath {
		return refusalPath{name: name, run: func(t *testing.T, r *refusalRig) {
			c := r.open(t, nil)
			require.NoError(t, c.Auth(r.idp.Token(sub, time.Hour)))
			r.closedWith(t, c, want)
		}}
	}
	ce := func(code protocol.CloseCode, reason string) protocol.CloseError {
		return protocol.CloseError{Code: code, Reason: reason}
	}
	return []refusalPath{
		// Refused before the hijack: plain HTTP, nothing taken.
		{name: "405 method", run: func(t *testing.T, r *refusalRig) {
			req := strings.Replace(upgradeRequest(r.host(), "Content-Length: 0"), "GET", "POST", 1)
			got, _ := rawStatus(t, r.host(), req)
			assert.Equal(t, http.StatusMethodNotAllowed, got)
		}},
		httpOnly("426 no Upgrade header", "Upgrade:", http.StatusUpgradeRequired),
		httpOnly("426 Connection without upgrade", "Connection: keep-alive", http.StatusUpgradeRequired),
		httpOnly("426 version 8", "Sec-WebSocket-Version: 8", http.StatusUpgradeRequired),
		httpOnly("400 bad key", "Sec-WebSocket-Key: not base64!", http.StatusBadRequest),
		httpOnly("403 origin", "Origin: https://evil.example", http.StatusForbidden),
		{name: "503 per-IP cap", run: func(t *testing.T, r *refusalRig) {
			ip := http.Header{"X-Test-IP": {"10.1.0.1"}}
			a, b := r.open(t, ip), r.open(t, ip)
			got, retry := status(t, r.url, "X-Test-IP: 10.1.0.1")
			assert.Equal(t, [2]any{http.StatusServiceUnavailable, "1"}, [2]any{got, retry})
			a.Close()
			b.Close()
			r.lost(t)
			r.lost(t)
		}},
		{name: "503 global cap", run: func(t *testing.T, r *refusalRig) {
			var held []*wstest.Conn
			for _, ip := range []string{"10.2.0.1", "10.2.0.1", "10.2.0.2", "10.2.0.2"} {
				held = append(held, r.open(t, http.Header{"X-Test-IP": {ip}}))
			}
			got, retry := status(t, r.url, "X-Test-IP: 10.2.0.3")
			assert.Equal(t, [2]any{http.StatusServiceUnavailable, "1"}, [2]any{got, retry})
			for _, c := range held {
				c.Close()
				r.lost(t)
			}
		}},
		{name: "500 no Hijacker", run: func(t *testing.T, r *refusalRig) {
			got, _ := status(t, r.noHijack, "")
			assert.Equal(t, http.StatusInternalServerError, got)
		}},
		{name: "Hijack fails", run: func(t *testing.T, r *refusalRig) {
			before := r.hijacks.Load()
			got, _ := status(t, r.hijackErr, "")
			assert.NotEqual(t, http.StatusSwitchingProtocols, got)
			assert.Equal(t, before+1, r.hijacks.Load())
		}},
		// After the hijack, before a session: the 101 cannot be written.
		// As many at once as the pending caps allow, so that a leaked
		// descriptor shows in two rounds.
		{name: "101 write times out", rounds: 2, run: func(t *testing.T, r *refusalRig) {
			parallel(4, 4, func(i int) {
				req := upgradeRequest(r.slow.addr, fmt.Sprintf("X-Test-IP: 10.3.0.%d", i%2))
				nc, br := dialRaw(t, r.slow.addr, []byte(req))
				defer nc.Close()
				b, _ := io.ReadAll(br)
				assert.Empty(t, b)
			})
		}},

		// Upgraded, pending.
		pending("4401 bad token", func(*refusalRig) []byte { return text(`{"type":"auth","token":"not-a-jwt"}`) },
			ce(protocol.CloseUnauthorized, "malformed token")),
		pending("4401 message before auth", func(*refusalRig) []byte { return text(`{"type":"message","data":1}`) },
			ce(protocol.CloseUnauthorized, "auth required")),
		pending("4400 binary frame", func(*refusalRig) []byte { return wstest.Frame(true, wstest.OpBinary, []byte("{}")) },
			ce(protocol.CloseMalformed, "binary frame")),
		pending("4400 malformed frame", func(*refusalRig) []byte { return text(`{"type":`) },
			ce(protocol.CloseMalformed, "malformed frame")),
		pending("1009 frame too large", func(*refusalRig) []byte { return wstest.HeaderOnly(true, wstest.OpText, 1<<20) },
			ce(protocol.CloseTooLarge, "frame too large")),
		pending("4429 bytes before auth", func(*refusalRig) []byte {
			return repeatFrame(1000, func(int) []byte { return wstest.Frame(true, wstest.OpPing, []byte("0123456789abcdef")) })
		}, ce(protocol.CloseTooManyRequests, "too many bytes before auth")),
		{name: "4408 auth deadline", run: func(t *testing.T, r *refusalRig) {
			c := r.open(t, nil)
			r.clock.Advance(wsauth.DefaultAuthTimeout)
			assert.Empty(t, r.closedWith(t, c, ce(protocol.CloseAuthTimeout, "auth timeout")))
		}},
		{name: "client close frame, pending", run: func(t *testing.T, r *refusalRig) {
			c := r.open(t, nil)
			require.NoError(t, c.WriteFrame(true, wstest.OpClose, []byte{0x03, 0xe8}))
			r.closedWith(t, c, ce(protocol.CloseNormal, "normal closure"), ce(protocol.CloseNormal, ""))
		}},
		{name: "client reset, pending", run: func(t *testing.T, r *refusalRig) {
			c := r.open(t, nil)
			require.NoError(t, c.Conn.(*net.TCPConn).SetLinger(0))
			c.Close()
			r.lost(t)
		}},
		authFails("OnAuthenticated refuses", "refused", ce(protocol.CloseForbidden, "forbidden")),
		authFails("OnAuthenticated closes 4000", "custom", ce(4000, "custom")),
		authFails("OnAuthenticated panics", "panicky", ce(protocol.CloseInternal, "internal error")),
		{name: "closed while OnAuthenticated runs, which then fails", run: func(t *testing.T, r *refusalRig) {
			c := r.open(t, nil)
			require.NoError(t, c.Auth(r.idp.Token("waiter", time.Hour)))
			recv(t, r.waiting)
			r.clock.Advance(wsauth.DefaultAuthTimeout)
			r.closedWith(t, c, ce(protocol.CloseAuthTimeout, "auth timeout"))
		}},
		{name: "OnAuthenticated sends, then refuses", run: func(t *testing.T, r *refusalRig) {
			before := len(r.undeliveredFor("sender"))
			c := r.open(t, nil)
			require.NoError(t, c.Auth(r.idp.Token("sender", time.Hour)))
			r.closedWith(t, c, ce(protocol.CloseForbidden, "forbidden"))
			r.handedOver(t, "sender", before, 1)
		}},

		// Authenticated.
		{name: "Revoke", run: func(t *testing.T, r *refusalRig) {
			// A user of its own each time: a revocation refuses the
			// user's tokens for RevokeFor, and the rig's clock stands.
			sub := fmt.Sprintf("revoked-%d", revokedUsers.Add(1))
			c := r.login(t, sub)
			n, err := r.srv.Revoke(context.Background(), r.p(sub))
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			r.closedWith(t, c, ce(protocol.CloseForbidden, "session revoked"))
		}},
		{name: "reauth as another subject", run: func(t *testing.T, r *refusalRig) {
			c := r.login(t, "ann")
			r.clock.Advance(time.Second) // the reauth budget
			require.NoError(t, c.Auth(r.idp.Token("bob", time.Hour)))
			r.closedWith(t, c, ce(protocol.CloseForbidden, "subject changed"))
		}},
		{name: "OnAuthenticated refuses a reauth", run: func(t *testing.T, r *refusalRig) {
			c := r.login(t, "fickle")
			r.clock.Advance(time.Second)
			require.NoError(t, c.Auth(r.idp.Token("fickle", time.Hour)))
			r.closedWith(t, c, ce(protocol.CloseForbidden, "forbidden"))
		}},
		{name: "4400 after auth", run: func(t *testing.T, r *refusalRig) {
			c := r.login(t, "ann")
			require.NoError(t, c.WriteText(`{"type":"message","data":}`))
			r.closedWith(t, c, ce(protocol.CloseMalformed, "malformed frame"))
		}},
		{name: "1009 after auth", run: func(t *testing.T, r *refusalRig) {
			c := r.login(t, "ann")
			_, err := c.Write(wstest.HeaderOnly(true, wstest.OpText, 1<<63))
			require.NoError(t, err)
			r.closedWith(t, c, ce(protocol.CloseTooLarge, "frame too large"))
		}},
		{name: "OnMessage panics", run: func(t *testing.T, r *refusalRig) {
			c := r.login(t, "ann")
			require.NoError(t, c.WriteText(`{"type":"message","data":"panic"}`))
			r.closedWith(t, c, ce(protocol.CloseInternal, "internal error"))
		}},
		{name: "OnMessage closes", run: func(t *testing.T, r *refusalRig) {
			c := r.login(t, "ann")
			require.NoError(t, c.WriteText(`{"type":"message","data":"kick"}`))
			r.closedWith(t, c, ce(protocol.CloseForbidden, "kicked"))
		}},
		{name: "4440 with messages buffered", run: func(t *testing.T, r *refusalRig) {
			before := len(r.undeliveredFor("late"))
			c := r.expired(t, "late")
			assert.Equal(t, 1, r.sendTo(t, "late", `1`))
			assert.Equal(t, 1, r.sendTo(t, "late", `2`))
			r.clock.Advance(wsauth.DefaultReauthGrace)
			assert.Empty(t, r.closedWith(t, c, ce(protocol.CloseSessionExpired, "session expired")))
			r.handedOver(t, "late", before, 2)
		}},
		{name: "4413 overflow while expired", run: func(t *testing.T, r *refusalRig) {
			before := len(r.undeliveredFor("flood"))
			c := r.expired(t, "flood")
			for i := range rigBuffer + 1 {
				assert.Equal(t, 1, r.sendTo(t, "flood", fmt.Sprint(i)))
			}
			assert.Empty(t, r.closedWith(t, c, ce(protocol.CloseBufferOverflow, "buffer overflow")))
			r.handedOver(t, "flood", before, rigBuffer+1)
		}},
		{name: "4413 client not reading", rounds: 2, run: func(t *testing.T, r *refusalRig) {
			before := len(r.undeliveredFor("sloth"))
			c, ok := r.loginT(t, r.idp.Token("sloth", time.Hour))
			require.NoError(t, c.Conn.(*net.TCPConn).SetReadBuffer(4096))
			chunk := json.RawMessage(`"` + strings.Repeat("x", 64<<10) + `"`)
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				err := r.srv.Send(context.Background(), ok["session"].(string), chunk)
				if errors.Is(err, wsauth.ErrSessionNotFound) || errors.Is(err, wsauth.ErrSessionClosed) {
					break
				}
				if err != nil {
					require.ErrorIs(t, err, wsauth.ErrBufferFull)
					time.Sleep(5 * time.Millisecond)
				}
			}
			ev := r.closeEventT(t)
			assert.Equal(t, ce(protocol.CloseBufferOverflow, "client not reading"), ce(ev.code, ev.reason))
			require.Eventually(t, func() bool { return len(r.undeliveredFor("sloth")) > before }, 5*time.Second, time.Millisecond)
		}},
		{name: "client close frame, authenticated", run: func(t *testing.T, r *refusalRig) {
			c := r.login(t, "ann")
			require.NoError(t, c.WriteFrame(true, wstest.OpClose, []byte{0x0f, 0xa0, 'b', 'y', 'e'}))
			r.closedWith(t, c, ce(4000, "4000"), ce(4000, "bye"))
		}},
		{name: "client reset, authenticated", run: func(t *testing.T, r *refusalRig) {
			c := r.login(t, "ann")
			require.NoError(t, c.Conn.(*net.TCPConn).SetLinger(0))
			c.Close()
			r.lost(t)
		}},

		// Shutdown: each on a server of its own.
		{name: "503 shutting down", own: true, run: func(t *testing.T, r *refusalRig) {
			require.NoError(t, r.srv.Shutdown(context.Background()))
			got, retry := status(t, r.url, "")
			assert.Equal(t, [2]any{http.StatusServiceUnavailable, "5"}, [2]any{got, retry})
		}},
		{name: "1001 at Shutdown, pending and authenticated", own: true, run: func(t *testing.T, r *refusalRig) {
			p, a := r.open(t, nil), r.login(t, "ann")
			assert.Equal(t, 1, r.sendTo(t, "ann", `"queued"`))
			readType(t, a, "message")
			wait := r.shutdown(t)
			for _, c := range []*wstest.Conn{p, a} {
				r.closedWith(t, c, ce(protocol.CloseGoingAway, "server shutting down"))
			}
			wait()
		}},
		{name: "Shutdown while OnAuthenticated runs", own: true, run: func(t *testing.T, r *refusalRig) {
			c := r.open(t, nil)
			require.NoError(t, c.Auth(r.idp.Token("waiter", time.Hour)))
			recv(t, r.waiting)
			wait := r.shutdown(t)
			r.closedWith(t, c, ce(protocol.CloseGoingAway, "server shutting down"))
			wait()
		}},
		{name: "Shutdown while expired, with messages buffered", own: true, run: func(t *testing.T, r *refusalRig) {
			c := r.expired(t, "late")
			assert.Equal(t, 1, r.sendTo(t, "late", `1`))
			wait := r.shutdown(t)
			assert.Empty(t, r.closedWith(t, c, ce(protocol.CloseGoingAway, "server shutting down")))
			wait()
			// Shutdown keeps nothing for resume.
			assert.Equal(t, []string{"1"}, r.undeliveredFor("late"))
		}},
		{name: "Shutdown during the upgrade", own: true, run: func(t *testing.T, r *refusalRig) {
			r.slow.hold.Store(int64(100 * time.Millisecond))
			d := dialAsync(r.slow.url)
			r.slow.waitWriting(t)
			wait := r.shutdown(t)
			r.closedWith(t, recv(t, d).conn(t), ce(protocol.CloseGoingAway, "server shutting down"))
			wait()
		}},
	}
}

// releasedAll checks that the rig's server holds nothing and that OnClose
// got no call the path did not expect.
func (r *refusalRig) releasedAll(t testing.TB) {
	t.Helper()
	require.Eventually(t, func() bool { return wsauth.HoldingsOf(r.srv) == wsauth.Holdings{} },
		5*time.Second, 5*time.Millisecond, "holdings %+v", wsauth.HoldingsOf(r.srv))
	for _, sub := range refusalSubjects {
		assert.Empty(t, r.srv.Sessions(r.p(sub)), sub)
	}
	select {
	case ev := <-r.rec.closes:
		t.Errorf("an OnClose call the path did not expect: %+v", ev)
	default:
	}
}

// TestRefusalPathsReleaseEverything runs every refusal path once and
// checks that the server holds nothing afterwards: no pending slot, no
// connection, no registry or scheduler entry, nothing kept for resume.
func TestRefusalPathsReleaseEverything(t *testing.T) {
	t.Parallel()
	shared := newRefusalRig(t)
	for _, p := range refusalPaths() {
		if p.own {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			p.run(t, shared)
			shared.releasedAll(t)
		})
	}
	for _, p := range refusalPaths() {
		if !p.own {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			r := newRefusalRig(t)
			p.run(t, r)
			r.releasedAll(t)
		})
	}
}

// hostileRefusalPaths runs every refusal path several times, in a row,
// and checks that goroutines and file descriptors are back to where they
// were after each path. It is a case of TestHostileResources: nothing may
// run beside it.
func hostileRefusalPaths(t *testing.T) {
	shared := newRefusalRig(t)
	for _, p := range refusalPaths() {
		rounds := p.rounds
		switch {
		case rounds > 0:
		case p.own:
			rounds = 3
		default:
			rounds = 10
		}
		t.Run(p.name, func(t *testing.T) {
			// No GC meanwhile: a socket dropped without Close is closed by
			// a finalizer at the next GC, which would hide the leak.
			defer debug.SetGCPercent(debug.SetGCPercent(-1))
			base := measure(t)
			for i := range rounds {
				if !p.own {
					p.run(t, shared)
					shared.releasedAll(t)
					continue
				}
				// The rig goes with the round's subtest.
				t.Run(fmt.Sprint(i), func(t *testing.T) {
					r := newRefusalRig(t)
					p.run(t, r)
					r.releasedAll(t)
				})
			}
			backToBaseline(t, base, 5)
		})
	}
}
