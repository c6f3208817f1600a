package wsauth_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/protocol"
)

// TestHostileResources runs the cases that must leave the process as they
// found it: after each, goroutines and open file descriptors return to
// their baseline. It is deliberately not parallel: Go runs it before any
// parallel test is released, so nothing else moves the counts.
func TestHostileResources(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"slowloris upgrade request", hostileSlowloris},
		{"client that stops reading", hostileSlowReader},
		{"pending-connection flood", hostilePendingFlood},
		{"unknown-kid flood", hostileUnknownKIDFlood},
		{"connect and reset cycles", hostileConnectReset},
		{"refusal paths", hostileRefusalPaths},
		{"churn", hostileChurn},
		{"flapping identity provider", hostileFlappingIdP},
	} {
		t.Run(tc.name, tc.run)
	}
}

// parallel runs f(i) for i in [0, n) on at most workers goroutines.
func parallel(n, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// chatting keeps an authenticated session busy in both directions until
// stop is closed, and returns how many round trips worked and the first
// error.
func chatting(h *hostileEnv, c *wstest.Conn, sessionID string, stop <-chan struct{}) func() (int, error) {
	var n int
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err = c.WriteText(fmt.Sprintf(`{"type":"message","id":"%d","data":%d}`, i, i)); err != nil {
				return
			}
			select {
			case m := <-h.rec.messages:
				if m.data != fmt.Sprint(i) {
					err = fmt.Errorf("OnMessage got %q, want %d", m.data, i)
					return
				}
			case <-time.After(5 * time.Second):
				err = errors.New("message not handled within 5s")
				return
			}
			if err = h.srv.Send(context.Background(), sessionID, json.RawMessage(fmt.Sprint(i))); err != nil {
				return
			}
			var got map[string]any
			if got, err = c.ReadJSON(); err != nil {
				return
			}
			if got["type"] != "message" || got["data"] != float64(i) {
				err = fmt.Errorf("client got %v, want message %d", got, i)
				return
			}
			n++
		}
	}()
	return func() (int, error) {
		<-done
		return n, err
	}
}

// hostilePendingFlood: more unauthenticated sockets than the caps allow get
// 503 with Retry-After before the upgrade, per IP and server wide, while an
// authenticated session keeps working; the pending ones are all closed by
// their deadline.
func hostilePendingFlood(t *testing.T) {
	const maxPending, maxPerIP = 40, 10
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.MaxPending, o.MaxPendingPerIP = maxPending, maxPerIP
		o.ClientIP = func(r *http.Request) string { return r.Header.Get("X-Test-IP") }
	}})
	c, ok := h.loginT(t, h.idp.Token("steady", time.Hour))
	base := measure(t)
	stop := make(chan struct{})
	result := chatting(h, c, ok["session"].(string), stop)

	var mu sync.Mutex
	var pending []*wstest.Conn
	flood := func(ip string, n int) (upgraded, refused int) {
		parallel(n, 16, func(int) {
			pc, err := wstest.Dial(h.url, http.Header{"X-Test-IP": {ip}})
			mu.Lock()
			defer mu.Unlock()
			var he *wstest.HandshakeError
			switch {
			case err == nil:
				pending = append(pending, pc)
				upgraded++
			case errors.As(err, &he):
				assert.Equal(t, http.StatusServiceUnavailable, he.Status)
				assert.Equal(t, "1", he.Header.Get("Retry-After"))
				refused++
			default:
				t.Errorf("dial: %v", err)
			}
		})
		return upgraded, refused
	}
	up, ref := flood("10.0.0.1", 3*maxPerIP)
	assert.Equal(t, [2]int{maxPerIP, 2 * maxPerIP}, [2]int{up, ref}, "one IP: upgraded, refused")
	total := up
	for _, ip := range []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"} {
		up, _ := flood(ip, 2*maxPerIP)
		total += up
	}
	assert.Equal(t, maxPending, total, "server-wide cap")
	up, ref = flood("10.0.0.6", 5)
	assert.Equal(t, [2]int{0, 5}, [2]int{up, ref}, "a fresh IP once the server-wide cap is full")
	assert.Equal(t, maxPending, h.srv.Pending())

	close(stop)
	n, err := result()
	require.NoError(t, err, "the authenticated session failed during the flood")
	t.Logf("%d round trips on the authenticated session during the flood", n)
	assert.Positive(t, n)

	// Every pending socket is closed by its deadline, and the caps free up.
	for _, pc := range pending {
		_, err := pc.Sync()
		require.NoError(t, err)
	}
	h.clock.Advance(wsauth.DefaultAuthTimeout)
	for _, pc := range pending {
		cl, texts, err := pc.ReadClose()
		require.NoError(t, err)
		assert.Empty(t, texts)
		assert.Equal(t, wstest.Close{Code: int(protocol.CloseAuthTimeout), Reason: "auth timeout"}, cl)
		pc.Close()
	}
	require.Eventually(t, func() bool { return h.srv.Pending() == 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 1, h.srv.Len())
	late := h.open(t, http.Header{"X-Test-IP": {"10.0.0.6"}})
	late.Close()
	require.NoError(t, c.WriteText(`{"type":"message","data":"still here"}`))
	assert.Equal(t, `"still here"`, h.nextMessage().data)
	assert.EqualValues(t, 1, h.authn.Load(), "only the legitimate session authenticated")
	backToBaseline(t, base, 5)
}

// randomKID returns a kid no key set holds.
func randomKID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "flood-" + hex.EncodeToString(b)
}

// hostileUnknownKIDFlood: sockets presenting tokens with fresh random kids
// make the verifier refetch the JWK Set at most once per UnknownKIDRate of
// the server's clock; every one of them is closed (4401 "unknown key", or
// 4408 at its deadline for the one waiting on a slow refetch).
func hostileUnknownKIDFlood(t *testing.T) {
	const rate = 5 * time.Minute
	h := newHostileEnv(t, hostileOptions{verifier: func(o *jwks.Options) {
		o.UnknownKIDRate = rate
		// No idle keep-alive connection to the IdP: fds stay countable.
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	}})
	idp := h.idp
	c, _ := h.loginT(t, idp.Token("steady", time.Hour))
	base := measure(t)

	type outcome struct {
		code   int
		reason string
	}
	flood := func(n int) map[outcome]int {
		var mu sync.Mutex
		got := map[outcome]int{}
		parallel(n, 32, func(int) {
			tok := idp.SignWith(nil, nil, map[string]any{"kid": randomKID()}, h.claimsFor(idp, "flooder"))
			fc, err := wstest.Dial(h.url, nil)
			if !assert.NoError(t, err) {
				return
			}
			defer fc.Close()
			if !assert.NoError(t, fc.Auth(tok)) {
				return
			}
			cl, _, err := fc.ReadClose()
			if !assert.NoError(t, err) {
				return
			}
			mu.Lock()
			got[outcome{cl.Code, cl.Reason}]++
			mu.Unlock()
		})
		return got
	}
	unknown := outcome{int(protocol.CloseUnauthorized), "unknown key"}

	fetches := idp.Fetches()
	assert.Equal(t, map[outcome]int{unknown: 200}, flood(200))
	assert.LessOrEqual(t, idp.Fetches()-fetches, 1, "refetches in the first window")
	fetches = idp.Fetches()

	h.clock.Advance(rate / 2)
	assert.Equal(t, map[outcome]int{unknown: 100}, flood(100))
	assert.Equal(t, fetches, idp.Fetches(), "refetches later in the same window")

	h.clock.Advance(rate / 2)
	assert.Equal(t, map[outcome]int{unknown: 100}, flood(100))
	assert.LessOrEqual(t, idp.Fetches()-fetches, 1, "refetches in the second window")
	fetches = idp.Fetches()

	// A slow JWK Set: every socket with an unknown kid waits for the one
	// refetch (it belongs to the verifier, so no client can abort it), and
	// each waits at most until its own auth deadline.
	// slowFlood dials n sockets and returns once the server has made each
	// of them a pending session, whose auth deadline it took from its
	// clock; once start is closed, they send their auth frames. (Pending
	// counts a socket earlier, from before its upgrade.)
	slowFlood := func(n int, start <-chan struct{}) <-chan outcome {
		// The sockets of the flood before hold their slots of
		// MaxPendingPerIP (64) until the server has read their answer to
		// its close frame: too many would have these upgrades refused.
		require.Eventually(t, func() bool { return h.srv.Pending() == 0 }, 5*time.Second, time.Millisecond)
		results := make(chan outcome, n)
		var pending sync.WaitGroup
		pending.Add(n)
		go parallel(n, n, func(int) {
			tok := idp.SignWith(nil, nil, map[string]any{"kid": randomKID()}, h.claimsFor(idp, "flooder"))
			fc, err := wstest.Dial(h.url, nil)
			if err != nil {
				pending.Done()
				results <- outcome{reason: err.Error()}
				return
			}
			defer fc.Close()
			_, err = fc.Sync() // a pong: the server's read loop, so the session, exists
			pending.Done()
			if err != nil {
				results <- outcome{reason: err.Error()}
				return
			}
			<-start
			_ = fc.Auth(tok)
			cl, _, err := fc.ReadClose()
			if err != nil {
				cl.Reason = err.Error()
			}
			results <- outcome{cl.Code, cl.Reason}
		})
		pending.Wait()
		return results
	}
	collect := func(results <-chan outcome, n int) map[outcome]int {
		got := map[outcome]int{}
		for range n {
			select {
			case o := <-results:
				got[o]++
			case <-time.After(10 * time.Second):
				t.Fatalf("only %v closed", got)
			}
		}
		return got
	}
	const n = 50
	h.clock.Advance(rate)
	idp.SetDelay(300 * time.Millisecond)
	now := make(chan struct{})
	close(now)
	assert.Equal(t, map[outcome]int{unknown: n}, collect(slowFlood(n, now), n), "all wait for the refetch, then fail")
	assert.Equal(t, fetches+1, idp.Fetches(), "one refetch for all of them")
	fetches = idp.Fetches()

	h.clock.Advance(rate)
	idp.SetDelay(3 * time.Second)
	start := make(chan struct{})
	results := slowFlood(n, start)
	require.Equal(t, n, h.srv.Pending(), "every socket is pending")
	close(start)
	require.Eventually(t, func() bool { return idp.Fetches() == fetches+1 }, 5*time.Second, time.Millisecond)
	h.clock.Advance(wsauth.DefaultAuthTimeout)
	assert.Equal(t, map[outcome]int{{int(protocol.CloseAuthTimeout), "auth timeout"}: n}, collect(results, n))
	idp.SetDelay(0)

	// The legitimate session never noticed.
	quiet(t, c)
	require.NoError(t, c.WriteText(`{"type":"message","data":"still here"}`))
	assert.Equal(t, `"still here"`, h.nextMessage().data)
	assert.EqualValues(t, 1, h.authn.Load())
	backToBaseline(t, base, 5)
}

// hostileConnectReset: ten thousand clients that connect and vanish with a
// TCP reset at every point of the handshake. Nothing is left behind.
func hostileConnectReset(t *testing.T) {
	h := newHostileEnv(t, hostileOptions{closeBuffer: 1, server: func(o *wsauth.Options) {
		o.MaxPending, o.MaxPendingPerIP = 1<<14, 1<<14
	}})
	c, _ := h.loginT(t, h.idp.Token("steady", time.Hour))
	base := measure(t)
	addr := h.host()
	req := []byte(rawUpgrade(addr))
	badAuth := text(`{"type":"auth","token":"not-a-jwt"}`)
	const cycles = 10000
	var upgraded, other atomic.Int64
	start := time.Now()
	parallel(cycles, 64, func(i int) {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if !assert.NoError(t, err) {
			return
		}
		tc := nc.(*net.TCPConn)
		_ = tc.SetLinger(0) // Close sends RST
		defer tc.Close()
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		switch i % 6 {
		case 0: // connect only
		case 1: // half the request line
			_, _ = tc.Write(req[:7])
		case 2: // all but the blank line that ends the headers
			_, _ = tc.Write(req[:len(req)-2])
		case 3: // the whole request, gone before the answer
			_, _ = tc.Write(req)
		default: // upgraded, then gone: pending, or mid-frame, or mid-auth
			_, _ = tc.Write(req)
			var b [129]byte // the 101 response is shorter
			n, err := io.ReadAtLeast(tc, b[:], 12)
			if err != nil || string(b[:12]) != "HTTP/1.1 101" {
				t.Logf("answer %q, %v", b[:n], err)
				other.Add(1)
				return
			}
			upgraded.Add(1)
			if i%6 == 5 {
				if i%12 == 5 {
					_, _ = tc.Write(badAuth[:len(badAuth)/2])
				} else {
					_, _ = tc.Write(badAuth)
				}
			}
		}
	})
	t.Logf("%d cycles in %v: %d upgraded and reset, %d other answers", cycles, time.Since(start), upgraded.Load(), other.Load())
	assert.Zero(t, other.Load())
	require.Eventually(t, func() bool { return h.srv.Pending() == 0 }, 10*time.Second, 10*time.Millisecond,
		"pending %d", h.srv.Pending())
	assert.Equal(t, 1, h.srv.Len(), "only the legitimate session")
	quiet(t, c)
	require.NoError(t, c.WriteText(`{"type":"message","data":"still here"}`))
	assert.Equal(t, `"still here"`, h.nextMessage().data)
	backToBaseline(t, base, 5)
	c.Close()
	h.settled(t)
}
