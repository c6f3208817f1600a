package wsauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// stillOpen asserts that the server sent nothing on c for a short real
// while, without writing anything (a ping cannot be sent in the middle of a
// frame).
func stillOpen(t *testing.T, c *wstest.Conn) {
	t.Helper()
	c.Timeout = 50 * time.Millisecond
	defer func() { c.Timeout = 5 * time.Second }()
	op, p, err := c.ReadFrame()
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "the server sent opcode %d %q, err %v", op, p, err)
}

// TestHostileAuthDeadline: the auth deadline is absolute on the server's
// clock. Nothing a client sends short of a valid auth frame moves it, and it
// fires exactly on time.
func TestHostileAuthDeadline(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) { o.AuthTimeout = timeout }})
	cases := []struct {
		name string
		// run drives the client and the fake clock up to 1ms before the
		// deadline.
		run func(t *testing.T, c *wstest.Conn)
	}{
		{"no frame at all", func(t *testing.T, c *wstest.Conn) {
			h.clock.Advance(timeout - time.Millisecond)
			quiet(t, c)
		}},
		{"a ping every 100ms", func(t *testing.T, c *wstest.Conn) {
			for range 19 {
				h.clock.Advance(100 * time.Millisecond)
				quiet(t, c)
			}
			h.clock.Advance(100*time.Millisecond - time.Millisecond)
			quiet(t, c)
		}},
		{"half a frame, then silence", func(t *testing.T, c *wstest.Conn) {
			f := text(`{"type":"auth","token":"` + strings.Repeat("x", 100) + `"}`)
			_, err := c.Write(f[:len(f)/2])
			require.NoError(t, err)
			h.clock.Advance(timeout - time.Millisecond)
			stillOpen(t, c)
		}},
		{"an auth frame dribbled one byte per 100ms", func(t *testing.T, c *wstest.Conn) {
			f := text(fmt.Sprintf(`{"type":"auth","token":%q}`, h.idp.Token("slow", time.Hour)))
			for i := range 20 {
				_, err := c.Write(f[i : i+1])
				require.NoError(t, err)
				if i < 19 {
					h.clock.Advance(100 * time.Millisecond)
				}
			}
			h.clock.Advance(100*time.Millisecond - time.Millisecond)
			stillOpen(t, c)
		}},
		{"fragments of a message, then silence", func(t *testing.T, c *wstest.Conn) {
			require.NoError(t, c.WriteFrame(false, wstest.OpText, []byte(`{"type":"auth",`)))
			for range 10 {
				require.NoError(t, c.WriteFrame(false, wstest.OpContinuation, []byte(` `)))
				h.clock.Advance(100 * time.Millisecond)
				quiet(t, c)
			}
			h.clock.Advance(timeout - time.Second - time.Millisecond)
			quiet(t, c)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := h.open(t, nil)
			tc.run(t, c)
			h.clock.Advance(time.Millisecond) // exactly AuthTimeout after the upgrade
			h.refused(t, c, protocol.CloseAuthTimeout, "auth timeout")
		})
	}
	t.Run("a valid token one tick late", func(t *testing.T) {
		c := h.open(t, nil)
		h.clock.Advance(timeout)
		require.NoError(t, c.Auth(h.idp.Token("late", time.Hour)))
		h.refused(t, c, protocol.CloseAuthTimeout, "auth timeout")
	})
	h.noApplication(t)
	h.settled(t)
}

// hostileSlowloris: a client that sends its upgrade request one byte at a
// time is cut off by the http.Server's ReadHeaderTimeout (real time, as it
// should be): net/http answers 400 and closes, before wsauth ever sees the
// request.
func hostileSlowloris(t *testing.T) {
	h := newHostileEnv(t, hostileOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	const readHeaderTimeout = 300 * time.Millisecond
	hs := &http.Server{Handler: h.srv, ReadHeaderTimeout: readHeaderTimeout}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, hs.Shutdown(ctx))
		assert.ErrorIs(t, <-served, http.ErrServerClosed)
	})
	base := measure(t)

	req := rawUpgrade(ln.Addr().String())
	const clients = 20
	var wg sync.WaitGroup
	results := make(chan string, clients)
	for range clients {
		wg.Go(func() {
			// Before the dial: the server's clock starts after it, when
			// net/http begins to read the request, so whatever delays this
			// goroutine (a busy machine) cannot make the timeout look early.
			start := time.Now()
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				results <- err.Error()
				return
			}
			defer nc.Close()
			answer := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(nc) // until the server closes
				answer <- b
			}()
			sent := 0
			for ; sent < len(req); sent++ {
				select {
				case b := <-answer:
					elapsed := time.Since(start)
					switch {
					case len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 400 Bad Request\r\n"):
						// net/http answers a request whose headers
						// timed out with a plain 400, then closes. When
						// a byte of ours arrived meanwhile, the close
						// is a reset and the 400 may be lost: fine.
						results <- fmt.Sprintf("the server answered %q", b)
					case elapsed < readHeaderTimeout:
						results <- fmt.Sprintf("closed after %v, before ReadHeaderTimeout", elapsed)
					case elapsed > readHeaderTimeout+3*time.Second: // a busy machine answers late

						results <- fmt.Sprintf("closed only after %v", elapsed)
					default:
						results <- ""
					}
					return
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := nc.Write([]byte{req[sent]}); err != nil {
					continue // the server closed: the reader reports it
				}
			}
			results <- fmt.Sprintf("the whole request went through in %v", time.Since(start))
		})
	}
	wg.Wait()
	close(results)
	for r := range results {
		assert.Empty(t, r)
	}
	assert.Zero(t, h.closed.Load(), "a session was upgraded")
	assert.Zero(t, h.srv.Pending())
	backToBaseline(t, base, 5)
}

// hostileSlowReader: a client that stops reading while the server sends
// large messages. Sends from a goroutine that is not handling a client's
// message never block: a full outbox refuses them (ErrBufferFull) and the
// server never holds more than the outbox bound. The write timeout (real
// time) then ends the session, 4413 "client not reading"; every message
// Send accepted is either in the client's socket, complete, or handed to
// OnUndelivered, in order, never both.
func hostileSlowReader(t *testing.T) {
	const (
		bufferMessages = 16
		messages       = 400
		size           = 64 << 10
	)
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.WriteTimeout = time.Second // time enough to fill the outbox on a loaded machine before the write times out
		o.BufferMessages = bufferMessages
		o.BufferBytes = 8 << 20
	}})
	c, ok := h.loginT(t, h.idp.Token("sloth", time.Hour))
	id := ok["session"].(string)
	base := measure(t)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapBase := ms.HeapAlloc

	pad := strings.Repeat("x", size)
	var accepted []int
	full := 0
	for i := range messages {
		err := h.srv.Send(context.Background(), id, json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, pad)))
		switch {
		case err == nil:
			accepted = append(accepted, i)
		case errors.Is(err, wsauth.ErrBufferFull):
			full++
		case errors.Is(err, wsauth.ErrSessionNotFound):
		default:
			require.ErrorIs(t, err, wsauth.ErrSessionClosed)
		}
	}
	require.Positive(t, full, "the server took every message of a client that does not read")
	runtime.GC()
	runtime.ReadMemStats(&ms)
	grown := int64(ms.HeapAlloc) - int64(heapBase)
	t.Logf("accepted %d of %d messages of %d KiB (%d refused as full); heap grew by %d KiB",
		len(accepted), messages, size>>10, full, grown>>10)
	assert.Less(t, grown, int64(8<<20), "the server's heap grew with the messages of a stalled client")

	ev := h.closeEventT(t)
	assert.Equal(t, protocol.CloseBufferOverflow, ev.code, "closed with %d %q", ev.code, ev.reason)
	assert.Equal(t, "client not reading", ev.reason)

	// Now read what reached the client's socket: complete message frames,
	// then at most a cut frame.
	var delivered []int
	for {
		op, p, err := c.ReadFrame()
		if err != nil {
			break
		}
		if op != wstest.OpText {
			continue
		}
		var f struct {
			Type string
			Data struct{ N int }
		}
		if json.Unmarshal(p, &f) != nil || f.Type != "message" {
			break
		}
		delivered = append(delivered, f.Data.N)
	}
	var undelivered []int
	for _, d := range h.undeliveredFor("sloth") {
		var v struct{ N int }
		require.NoError(t, json.Unmarshal([]byte(d), &v))
		undelivered = append(undelivered, v.N)
	}
	t.Logf("delivered %d, undelivered %d", len(delivered), len(undelivered))
	assert.Equal(t, accepted, slices.Concat(delivered, undelivered), "delivered then undelivered must be exactly what Send accepted, in order")
	assert.LessOrEqual(t, len(undelivered), bufferMessages, "the outbox (frames being written stay in it until written)")
	c.Close()
	h.settled(t)
	backToBaseline(t, base, 5)
}
