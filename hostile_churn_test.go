package wsauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
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

var heavy = flag.Bool("wsauth.heavy", false, "run the churn case of TestHostileResources at 10,000 connections")

// churnKind is what one churning connection does before it vanishes.
type churnKind int

const (
	churnCloseFrame      churnKind = iota // a close frame, pending or authenticated
	churnReset                            // a TCP reset, pending or authenticated
	churnMidFrame                         // half a frame, then a reset or FIN
	churnMidAuth                          // half an auth frame, then FIN
	churnMidReauth                        // half an auth frame after reauth_required, then a reset
	churnHalfOpenPending                  // upgraded, then silent for ever
	churnHalfOpenAuthed                   // authenticated, then silent and reading nothing
	churnHalfOpenWritten                  // the same, while the server writes to it
	churnAtShutdown                       // open, pending or authenticated, when Shutdown comes
	churnKinds
)

var churnKindNames = [...]string{"close frame", "reset", "mid-frame", "mid-auth", "mid-reauth",
	"half-open pending", "half-open authenticated", "half-open written to", "at Shutdown"}

// smallBuffers gives every accepted socket a small send buffer, so that a
// client that reads nothing fills it with a few KiB.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		_ = c.(*net.TCPConn).SetWriteBuffer(4 << 10)
	}
	return c, err
}

// hostileChurn: thousands of connections (10,000 with -wsauth.heavy), each
// doing something else before it vanishes: a close frame, a reset, half a
// frame, half an auth frame, half a reauth, or nothing at all, pending,
// authenticated or written to; and a last batch open, or being dialed,
// when Shutdown comes. Every one of them ends, each with the close code
// its way of ending calls for, and afterwards the server holds nothing and
// the process is back to its goroutines, descriptors and heap.
//
// Half-open connections (a peer that vanished without a FIN looks the same
// to the server as one that is silent) are reaped by the auth deadline
// while pending, by the token's expiry (exp + ReauthGrace, 4440) once
// authenticated, and by WriteTimeout (4413) as soon as the server writes
// more to them than their socket holds. All deadlines are the fake
// clock's except WriteTimeout and the one-second linger of a closed
// socket, which are real socket deadlines.
func hostileChurn(t *testing.T) {
	// writeTimeout is the real time the written-to sessions take to go.
	// Every write's deadline is real time too: on a machine so busy that a
	// goroutine waits nearly this long between setting a deadline and
	// writing, a session that reads would be dropped as not reading. Ten
	// thousand connections under -race on a shared machine come close to
	// two seconds; the default, 10 s, is far from it.
	n, writeTimeout := 1000, 2*time.Second
	if *heavy {
		n, writeTimeout = 10000, 10*time.Second
	}
	const (
		// authTimeout is long in real time too: the read backstop
		// (authTimeout + writeTimeout of real time) must not end a
		// half-open pending socket while the flood still runs.
		authTimeout = 5 * time.Minute
		// The short tokens: reauth_required 30 s before expiry, after the
		// auth deadline.
		shortTTL = authTimeout + time.Minute
	)
	var (
		tallyMu     sync.Mutex
		tally       = map[protocol.CloseError]int{}
		undelivered atomic.Int64
	)
	h := newHostileEnv(t, hostileOptions{closeBuffer: 1, server: func(o *wsauth.Options) {
		o.Logger = slog.New(slog.DiscardHandler) // the heap is measured
		o.MaxPending, o.MaxPendingPerIP = 1<<16, 1<<16
		o.WriteTimeout = writeTimeout
		o.AuthTimeout = authTimeout
		o.BufferMessages = 8
		o.OnUndelivered = func(_ wsauth.Principal, data []json.RawMessage) { undelivered.Add(int64(len(data))) }
		o.OnClose = func(_ *wsauth.Session, ce *protocol.CloseError) {
			tallyMu.Lock()
			tally[*ce]++
			tallyMu.Unlock()
		}
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serve(t, &http.Server{Handler: h.srv, ReadHeaderTimeout: 5 * time.Second}, smallBuffers{ln})
	url := "ws://" + ln.Addr().String() + "/ws"
	counts := func() map[protocol.CloseError]int {
		tallyMu.Lock()
		defer tallyMu.Unlock()
		m := make(map[protocol.CloseError]int, len(tally))
		for k, v := range tally {
			m[k] = v
		}
		return m
	}
	ce := func(code protocol.CloseCode, reason string) protocol.CloseError {
		return protocol.CloseError{Code: code, Reason: reason}
	}
	var (
		clientClose = ce(protocol.CloseNormal, "")
		lost        = ce(protocol.CloseAbnormal, "connection lost")
		timedOut    = ce(protocol.CloseAuthTimeout, "auth timeout")
		expired     = ce(protocol.CloseSessionExpired, "session expired")
		notReading  = ce(protocol.CloseBufferOverflow, "client not reading")
		shutdown    = ce(protocol.CloseGoingAway, "server shutting down")
	)
	// patience bounds every wait. A busy machine (a shared CI runner under
	// -race) can take many times as long as an idle one; nothing waits for
	// it when all goes well.
	const patience = 2 * time.Minute
	want := map[protocol.CloseError]int{}
	waitTally := func(what string) {
		t.Helper()
		require.Eventually(t, func() bool {
			got := counts()
			for k, v := range want {
				if got[k] != v {
					return false
				}
			}
			return len(got) == len(want)
		}, patience, 10*time.Millisecond, "%s: OnClose calls %v, want %v", what, counts(), want)
	}

	// Tokens are signed before the flood: the IdP's RSA signing is not
	// what this test measures.
	tokens := map[time.Duration][]string{}
	for _, ttl := range []time.Duration{shortTTL, time.Hour} {
		for i := range 64 {
			tokens[ttl] = append(tokens[ttl], h.idp.Token(fmt.Sprintf("churn%d", i), ttl))
		}
	}
	token := func(i int, ttl time.Duration) string { return tokens[ttl][i%64] }

	// The runtime keeps the descriptor of every goroutine that ever ran
	// for reuse, a few hundred bytes each: run as many as the churn will
	// at its peak first, so that the heap measures the server, not that.
	var started, finished sync.WaitGroup
	release := make(chan struct{})
	for range 2 * n {
		started.Add(1)
		finished.Go(func() {
			started.Done()
			<-release
		})
	}
	started.Wait()
	close(release)
	finished.Wait()
	runtime.GC()
	runtime.GC()
	base := measure(t)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBase := ms.HeapAlloc
	gcPercent := debug.SetGCPercent(-1) // see hostileRefusalPaths
	defer debug.SetGCPercent(gcPercent)
	start := time.Now()

	// Phase 1: the flood: every kind but the last, in turn.
	var mu sync.Mutex
	parked := make([][]*wstest.Conn, churnKinds)
	count := make([]int, churnKinds)
	park := func(k churnKind, c *wstest.Conn) {
		if c != nil {
			mu.Lock()
			parked[k] = append(parked[k], c)
			mu.Unlock()
		}
	}
	dial := func() *wstest.Conn {
		c, err := wstest.Dial(url, nil)
		if !assert.NoError(t, err) {
			return nil
		}
		c.Timeout = patience
		return c
	}
	login := func(i int, ttl time.Duration) *wstest.Conn {
		c := dial()
		if c == nil {
			return nil
		}
		if err := c.Auth(token(i, ttl)); !assert.NoError(t, err) {
			c.Close()
			return nil
		}
		if m, err := c.ReadJSON(); !assert.NoError(t, err) || !assert.Equal(t, "auth_ok", m["type"], "frame %v", m) {
			c.Close()
			return nil
		}
		return c
	}
	open := func(i int, authed bool) *wstest.Conn {
		if authed {
			return login(i, time.Hour)
		}
		return dial()
	}
	reset := func(c *wstest.Conn) {
		_ = c.Conn.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	half := func(c *wstest.Conn, frame []byte) bool {
		_, err := c.Write(frame[:len(frame)/2])
		return assert.NoError(t, err)
	}
	authFrame := func(i int) []byte {
		return text(`{"type":"auth","token":"` + token(i, time.Hour) + `"}`)
	}
	kindOf := func(i int) churnKind { return churnKind(i % int(churnKinds-1)) }
	flood := n - n/int(churnKinds)
	for i := range flood {
		count[kindOf(i)]++
	}
	parallel(flood, 64, func(i int) {
		k := kindOf(i)
		authed := i/int(churnKinds-1)%2 == 1 // every other connection of a kind
		switch k {
		case churnCloseFrame:
			if c := open(i, authed); c != nil {
				assert.NoError(t, c.WriteFrame(true, wstest.OpClose, []byte{0x03, 0xe8}))
				cl, _, err := c.ReadClose() // and close, as browsers do
				assert.NoError(t, err)
				assert.Equal(t, 1000, cl.Code)
			}
		case churnReset:
			if c := open(i, authed); c != nil {
				reset(c)
			}
		case churnMidFrame:
			if c := open(i, authed); c != nil {
				half(c, text(`{"type":"message","data":"`+strings.Repeat("x", 100)+`"}`))
				if i%4 < 2 {
					reset(c)
				} else {
					c.Close()
				}
			}
		case churnMidAuth:
			if c := dial(); c != nil {
				half(c, authFrame(i))
				c.Close()
			}
		case churnMidReauth, churnHalfOpenAuthed:
			park(k, login(i, shortTTL))
		case churnHalfOpenPending:
			park(k, dial())
		case churnHalfOpenWritten:
			c := login(i, time.Hour)
			if c != nil {
				assert.NoError(t, c.Conn.(*net.TCPConn).SetReadBuffer(4<<10))
			}
			park(k, c)
		}
	})
	want[clientClose] = count[churnCloseFrame]
	want[lost] = count[churnReset] + count[churnMidFrame] + count[churnMidAuth]
	waitTally("the connections that vanished at once")
	t.Logf("flood of %d connections: %v", flood, time.Since(start))

	// Phase 2: to the reauth_required of the short tokens, past the auth
	// deadline. The pending half-open sockets reach their auth deadline;
	// the sessions are asked for a fresh token, and the mid-reauth clients
	// vanish with half of one; the server writes to the written-to
	// sessions until their WriteTimeout drops them. (Only they hold
	// one-hour tokens now.)
	var ids []string
	for i := range 64 {
		for _, s := range h.srv.Sessions(h.p(fmt.Sprintf("churn%d", i))) {
			if s.Identity().ExpiresAt.Sub(h.clock.Now()) > 30*time.Minute {
				ids = append(ids, s.ID())
			}
		}
	}
	require.Len(t, ids, count[churnHalfOpenWritten])
	h.clock.Advance(shortTTL - 30*time.Second)
	var wg sync.WaitGroup
	for _, c := range parked[churnMidReauth] {
		wg.Go(func() {
			m, err := c.ReadJSON()
			if assert.NoError(t, err) && assert.Equal(t, "reauth_required", m["type"]) {
				half(c, authFrame(0))
			}
			reset(c)
		})
	}
	chunk := json.RawMessage(`"` + strings.Repeat("x", 1<<10) + `"`)
	for _, id := range ids {
		wg.Go(func() {
			for deadline := time.Now().Add(patience); time.Now().Before(deadline); {
				err := h.srv.Send(context.Background(), id, chunk)
				if errors.Is(err, wsauth.ErrSessionNotFound) || errors.Is(err, wsauth.ErrSessionClosed) {
					return
				}
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
			t.Errorf("session %s still takes messages after %v", id, patience)
		})
	}
	wg.Wait()
	want[lost] += count[churnMidReauth]
	want[timedOut] = count[churnHalfOpenPending]
	want[notReading] = count[churnHalfOpenWritten]
	waitTally("the auth deadline, the mid-reauth clients, WriteTimeout")

	// Phase 3: past the short tokens' expiry and grace.
	h.clock.Advance(30*time.Second + wsauth.DefaultReauthGrace)
	want[expired] = count[churnHalfOpenAuthed]
	waitTally("the reauth grace")
	assert.Equal(t, wsauth.Holdings{}, wsauth.HoldingsOf(h.srv), "everything that vanished is gone")
	assert.Positive(t, undelivered.Load(), "nothing the written-to sessions missed reached OnUndelivered")

	// Phase 4: connections open, and being dialed, when Shutdown comes.
	last := n - flood
	count[churnAtShutdown] = last
	parallel(last, 64, func(i int) { park(churnAtShutdown, open(i, i%2 == 1)) })
	var upgradedDuring atomic.Int64
	var readers sync.WaitGroup
	closeAtShutdown := func(c *wstest.Conn) {
		readers.Go(func() {
			cl, _, err := c.ReadClose()
			assert.NoError(t, err)
			assert.Equal(t, wstest.Close{Code: int(shutdown.Code), Reason: shutdown.Reason}, cl)
		})
	}
	for _, c := range parked[churnAtShutdown] {
		closeAtShutdown(c)
	}
	var dialers sync.WaitGroup
	for range 16 {
		dialers.Go(func() {
			for range 50 {
				c, err := wstest.Dial(url, nil)
				var he *wstest.HandshakeError
				if errors.As(err, &he) {
					assert.Equal(t, http.StatusServiceUnavailable, he.Status)
					return
				}
				if !assert.NoError(t, err) {
					return
				}
				c.Timeout = patience
				upgradedDuring.Add(1)
				closeAtShutdown(c)
			}
		})
	}
	require.Eventually(t, func() bool { return upgradedDuring.Load() >= 32 }, patience, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	require.NoError(t, h.srv.Shutdown(ctx))
	assert.Equal(t, wsauth.Holdings{}, wsauth.HoldingsOf(h.srv), "held after Shutdown")
	dialers.Wait()
	readers.Wait()
	want[shutdown] = last + int(upgradedDuring.Load())
	waitTally("Shutdown")
	assert.Zero(t, h.srv.Pending())
	assert.Zero(t, h.srv.Len())
	for k, name := range churnKindNames {
		t.Logf("%-24s %d", name, count[k])
	}
	t.Logf("%d connections and %d dialed during Shutdown in %v; OnClose calls: %v",
		n, upgradedDuring.Load(), time.Since(start), counts())

	// The clients let go of their sockets; the process is back to where
	// it was.
	for _, cs := range parked {
		for _, c := range cs {
			c.Close()
		}
	}
	backToBaseline(t, base, 5)
	debug.SetGCPercent(gcPercent)
	// Twice: gws puts each connection's read buffer in a sync.Pool when
	// the connection ends, which only the second collection empties.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	grown := int64(ms.HeapAlloc) - int64(heapBase)
	t.Logf("heap %d KiB before, %d KiB after (%+d B per connection)", heapBase>>10, ms.HeapAlloc>>10, grown/int64(n))
	// A session kept reachable keeps more than its 4 KiB read buffer.
	assert.Less(t, grown, int64(128*n), "the heap kept %d B per connection", grown/int64(n))
}
