package wsauth_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/internal/testlog"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/wsauthtest"
)

// The hostile-input suite (issue 5). Its environment is env (helpers_test.go)
// plus what hostile cases need on top: several trusted issuers, a verifier
// built while the identity provider is down, verifier options, and counters
// of every hook call, so that a test can assert that no application code ran
// at all.

// hostileEnv is an env with hook counters.
type hostileEnv struct {
	*env
	idps     []*wsauthtest.IdP // idps[0] is env.idp
	verifier *jwks.Verifier
	authn    atomic.Int64 // OnAuthenticated calls
	handled  atomic.Int64 // OnMessage calls
	closed   atomic.Int64 // OnClose calls
}

type hostileOptions struct {
	issuers int // trusted identity providers, each with its own issuer; default 1
	// idpDown builds the verifier while every identity provider answers 503.
	// They stay down until the test calls SetDown(false).
	idpDown bool
	// closeBuffer is the capacity of the OnClose event channel (default
	// 1000). Events past it are counted in closed but not queued, so that a
	// flood cannot block the server's goroutines on the recorder.
	closeBuffer int
	verifier    func(*jwks.Options)
	server      func(*wsauth.Options)
	// peer, if set, is another node of the same cluster: the new server
	// trusts the same identity providers and runs on the same clock.
	peer *hostileEnv
	// broker, if set, makes the server's Broker, given the env's clock.
	broker func(now func() time.Time) broker.Broker
}

// newHostileEnv starts a server like newEnv does. tb may be a *testing.F: the
// fuzz target shares one server between all its inputs.
func newHostileEnv(tb testing.TB, ho hostileOptions) *hostileEnv {
	tb.Helper()
	if ho.issuers == 0 {
		ho.issuers = 1
	}
	if ho.closeBuffer == 0 {
		ho.closeBuffer = 1000
	}
	clock := wsauthtest.NewClock(epoch)
	logger, logs := testlog.New()

	h := &hostileEnv{}
	if ho.peer != nil {
		clock = ho.peer.clock
		h.idps = ho.peer.idps
	}
	for len(h.idps) < ho.issuers {
		idp := wsauthtest.NewIdP(tb, wsauthtest.IdPOptions{})
		idp.SetNow(clock.Now)
		idp.SetDown(ho.idpDown)
		h.idps = append(h.idps, idp)
	}
	var issuers []jwks.Issuer
	for _, idp := range h.idps {
		issuers = append(issuers, jwks.Issuer{Issuer: idp.Issuer(), JWKSURL: idp.JWKSURL(), Audience: []string{idp.Audience()}})
	}
	vopts := jwks.Options{Issuers: issuers, Now: clock.Now, Logger: logger}
	if ho.verifier != nil {
		ho.verifier(&vopts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	v, err := jwks.New(ctx, vopts)
	require.NoError(tb, err)
	h.verifier = v

	rec := &recorder{
		closes:      make(chan closeEvent, ho.closeBuffer),
		messages:    make(chan received, 1000),
		undelivered: map[wsauth.Principal][]string{},
	}
	opts := wsauth.Options{
		Logger:   logger,
		Verifier: v,
		Clock:    clock,
		OnMessage: func(_ context.Context, s *wsauth.Session, m wsauth.Message) error {
			rec.messages <- received{session: s.ID(), subject: s.Principal().Subject, id: m.ID, data: string(m.Data)}
			return nil
		},
		OnUndelivered: func(p wsauth.Principal, data []json.RawMessage) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			for _, d := range data {
				rec.undelivered[p] = append(rec.undelivered[p], string(d))
			}
		},
	}
	if ho.broker != nil {
		opts.Broker = ho.broker(clock.Now)
	}
	if ho.server != nil {
		ho.server(&opts)
	}
	// Count every hook call, whatever the test configured.
	authn, onMessage, onClose := opts.OnAuthenticated, opts.OnMessage, opts.OnClose
	opts.OnAuthenticated = func(ctx context.Context, s *wsauth.Session) error {
		h.authn.Add(1)
		if authn != nil {
			return authn(ctx, s)
		}
		return nil
	}
	if onMessage != nil {
		opts.OnMessage = func(ctx context.Context, s *wsauth.Session, m wsauth.Message) error {
			h.handled.Add(1)
			return onMessage(ctx, s, m)
		}
	}
	opts.OnClose = func(s *wsauth.Session, ce *protocol.CloseError) {
		h.closed.Add(1)
		select {
		case rec.closes <- closeEvent{session: s.ID(), subject: s.Principal().Subject, code: ce.Code, reason: ce.Reason}:
		default:
		}
		if onClose != nil {
			onClose(s, ce)
		}
	}
	srv, err := wsauth.New(opts)
	require.NoError(tb, err)
	hs := httptest.NewServer(srv)
	t, _ := tb.(*testing.T)
	h.env = &env{t: t, clock: clock, idp: h.idps[0], srv: srv, http: hs, rec: rec, logs: logs,
		url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
	tb.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		require.NoError(tb, srv.Shutdown(sctx))
		hs.Close()
		v.Close()
		cancel()
	})
	return h
}

// host is the server's host:port.
func (h *hostileEnv) host() string { return strings.TrimPrefix(h.http.URL, "http://") }

// open dials and waits until the server's read loop runs (a ping round trip).
func (h *hostileEnv) open(t testing.TB, header http.Header) *wstest.Conn {
	t.Helper()
	c, err := wstest.Dial(h.url, header)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = c.Sync()
	require.NoError(t, err)
	return c
}

// loginT is env.login for subtests: it reports to t.
func (h *hostileEnv) loginT(t testing.TB, token string) (*wstest.Conn, map[string]any) {
	t.Helper()
	c := h.open(t, nil)
	require.NoError(t, c.Auth(token))
	ok, err := c.ReadJSON()
	require.NoError(t, err)
	require.Equal(t, "auth_ok", ok["type"], "frame: %v", ok)
	return c, ok
}

// closeEventT waits for the next OnClose event.
func (h *hostileEnv) closeEventT(t testing.TB) closeEvent {
	t.Helper()
	select {
	case ev := <-h.rec.closes:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no OnClose within 5s")
		return closeEvent{}
	}
}

// refused reads c until the server's close frame and checks that it is
// exactly code and reason, that nothing came before it, and that OnClose
// reported the same. It returns the reason for leak checks.
func (h *hostileEnv) refused(t testing.TB, c *wstest.Conn, code protocol.CloseCode, reason string) string {
	t.Helper()
	// The server's side first, so that a failure on the client's side does
	// not leave this event to the next case.
	ev := h.closeEventT(t)
	cl, texts, err := c.ReadClose()
	require.NoError(t, err, "no close frame; the server closed with %d %q", ev.code, ev.reason)
	require.Empty(t, texts, "frames before the close")
	require.Equal(t, int(code), cl.Code, "close reason %q", cl.Reason)
	require.Equal(t, reason, cl.Reason)
	require.Equal(t, code, ev.code, "OnClose reason %q", ev.reason)
	require.Equal(t, reason, ev.reason)
	return cl.Reason
}

// noApplication asserts that no application hook other than OnClose ran.
func (h *hostileEnv) noApplication(t testing.TB) {
	t.Helper()
	require.Zero(t, h.authn.Load(), "OnAuthenticated ran")
	require.Zero(t, h.handled.Load(), "OnMessage ran")
	select {
	case m := <-h.rec.messages:
		t.Fatalf("message reached OnMessage: %+v", m)
	default:
	}
}

// settled waits until the server holds no pending connection and no
// session, i.e. every connection it upgraded has finished.
func (h *hostileEnv) settled(t testing.TB) {
	t.Helper()
	require.Eventually(t, func() bool { return h.srv.Pending() == 0 && h.srv.Len() == 0 },
		5*time.Second, 5*time.Millisecond, "pending %d, sessions %d", h.srv.Pending(), h.srv.Len())
}

// claimsFor returns valid claims for sub from idp, at the env's clock.
func (h *hostileEnv) claimsFor(idp *wsauthtest.IdP, sub string) map[string]any {
	now := h.clock.Now()
	return map[string]any{
		"iss": idp.Issuer(),
		"aud": idp.Audience(),
		"sub": sub,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

// noSecret asserts that no token, nor its payload or signature segment on
// its own, appears in any of texts.
func noSecret(t testing.TB, tokens []string, texts ...string) {
	t.Helper()
	for _, tok := range tokens {
		parts := []string{tok}
		for _, seg := range strings.Split(tok, ".") {
			if len(seg) >= 16 && !isHeaderSegment(tok, seg) {
				parts = append(parts, seg)
			}
		}
		for _, text := range texts {
			for _, p := range parts {
				if strings.Contains(text, p) {
					t.Fatalf("a token (or part of one, %d bytes) leaked into %.200q", len(p), text)
				}
			}
		}
	}
}

// isHeaderSegment reports whether seg is tok's JOSE header: tokens of one
// key share it, so it is not a secret of any one token.
func isHeaderSegment(tok, seg string) bool { return strings.HasPrefix(tok, seg+".") }

// resources counts goroutines and open file descriptors of the process.
type resources struct{ goroutines, fds int }

func measure(t testing.TB) resources {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return resources{goroutines: runtime.NumGoroutine(), fds: len(fds)}
}

// backToBaseline polls until goroutines and file descriptors are back
// within slack of base. The tests that call it are not parallel, so nothing
// else moves the counts.
func backToBaseline(t testing.TB, base resources, slack int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		now := measure(t)
		if now.goroutines <= base.goroutines+slack && now.fds <= base.fds+slack {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("resources not back to baseline: goroutines %d (baseline %d), fds %d (baseline %d), slack %d\n%s",
				now.goroutines, base.goroutines, now.fds, base.fds, slack, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawUpgrade is the upgrade request wstest.Dial sends, for tests that write
// it themselves (byte by byte, or followed by frames in one write).
func rawUpgrade(host string) string {
	return "GET /ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// readRawClose reads server frames from br until a close frame and returns
// its code and reason. It is for connections wstest did not dial.
func readRawClose(br *bufio.Reader) (code int, reason string, err error) {
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return 0, "", err
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(br, e[:]); err != nil {
				return 0, "", err
			}
			n = uint64(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(br, e[:]); err != nil {
				return 0, "", err
			}
			n = binary.BigEndian.Uint64(e[:])
		}
		if n > 1<<20 {
			return 0, "", errors.New("frame too large")
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return 0, "", err
		}
		if hdr[0]&0x0f == wstest.OpClose {
			if len(p) < 2 {
				return 1005, "", nil
			}
			return int(binary.BigEndian.Uint16(p)), string(p[2:]), nil
		}
	}
}

// dialRaw opens a TCP connection to the server and writes b in one write.
func dialRaw(t testing.TB, host string, b []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", host, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	require.NoError(t, nc.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = nc.Write(b)
	require.NoError(t, err)
	return nc, bufio.NewReader(nc)
}

// readUpgradeResponse reads the server's answer to an upgrade request.
func readUpgradeResponse(t testing.TB, br *bufio.Reader) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	require.NoError(t, err)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
	}
	return resp
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("hostile test setup: %v", err))
	}
	return v
}
