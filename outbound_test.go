package wsauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
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

// Flow control (docs/protocol.md, "Flow control"): a client that reads is
// never disconnected for being behind; the work its own messages cause
// slows its reading instead.

// countMessages reads message frames from c until it has n, checking that
// data are the numbers 0..n-1 in order, and returns the first error.
func countMessages(c *wstest.Conn, n int, data func(m map[string]any) any) error {
	for i := range n {
		m, err := c.ReadJSON()
		if err != nil {
			return fmt.Errorf("after %d messages: %w", i, err)
		}
		if m["type"] != "message" {
			return fmt.Errorf("after %d messages: frame %v", i, m)
		}
		if got := data(m); got != float64(i) {
			return fmt.Errorf("message %d carries %v", i, got)
		}
	}
	return nil
}

// TestPipeliningClientIsNotDisconnected: a client that keeps up to N
// messages in flight, N up to 4x BufferMessages or without limit, and reads
// every reply, is never closed and loses nothing, whether the handler
// answers with Reply or sends to its own principal with the handler's ctx.
func TestPipeliningClientIsNotDisconnected(t *testing.T) {
	t.Parallel()
	const buffer, total = 16, 3000
	reply := func(ctx context.Context, s *wsauth.Session, m wsauth.Message) error { return s.Reply(m.Data) }
	var srv *wsauth.Server
	toSelf := func(ctx context.Context, s *wsauth.Session, m wsauth.Message) error {
		_, err := srv.SendToPrincipals(ctx, m.Data, s.Principal())
		return err
	}
	for _, handler := range []struct {
		name string
		h    func(context.Context, *wsauth.Session, wsauth.Message) error
	}{{"Reply", reply}, {"SendToPrincipals", toSelf}} {
		h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
			o.BufferMessages = buffer
			o.OnMessage = handler.h
		}})
		srv = h.srv
		for _, inFlight := range []int{buffer, 4 * buffer, total} {
			t.Run(fmt.Sprintf("%s/%d in flight", handler.name, inFlight), func(t *testing.T) {
				c, _ := h.loginT(t, h.idp.Token("pipe", time.Hour))
				window := make(chan struct{}, inFlight)
				werr := make(chan error, 1)
				go func() {
					for i := range total {
						window <- struct{}{}
						if err := c.WriteText(fmt.Sprintf(`{"type":"message","data":%d}`, i)); err != nil {
							werr <- err
							return
						}
					}
					werr <- nil
				}()
				c.Timeout = 10 * time.Second
				for i := range total {
					m, err := c.ReadJSON()
					require.NoError(t, err, "after %d replies", i)
					require.Equal(t, "message", m["type"], "frame %v", m)
					require.Equal(t, float64(i), m["data"])
					<-window
				}
				require.NoError(t, <-werr)
				quiet(t, c)
			})
		}
	}
}

// TestBurstFanOutKeepsReaders is red team item 10: one client's burst of
// 300 messages in one TCP write, each broadcast to 50 reading sessions
// from OnMessage, used to trip the 256-message cap of readers whose writer
// had not been scheduled yet. With the handler's ctx the sender is slowed
// instead: nobody is closed and every reader gets all 300, in order.
func TestBurstFanOutKeepsReaders(t *testing.T) {
	t.Parallel()
	const readers, burst = 50, 300
	var srv *wsauth.Server
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.MaxPendingPerIP = readers + 1
		o.OnMessage = func(ctx context.Context, _ *wsauth.Session, m wsauth.Message) error {
			_, err := srv.Broadcast(ctx, m.Data)
			return err
		}
	}})
	srv = h.srv
	conns := make([]*wstest.Conn, readers)
	for i := range conns {
		conns[i], _ = h.loginT(t, h.idp.Token(fmt.Sprintf("reader%d", i), time.Hour))
		conns[i].Timeout = 20 * time.Second
	}
	sender, _ := h.loginT(t, h.idp.Token("sender", time.Hour))
	sender.Timeout = 20 * time.Second
	_, err := sender.Write(repeatFrame(burst, func(i int) []byte {
		return text(fmt.Sprintf(`{"type":"message","data":%d}`, i))
	}))
	require.NoError(t, err)

	var wg sync.WaitGroup
	errs := make([]error, readers+1)
	for i, c := range append(conns, sender) {
		wg.Go(func() { errs[i] = countMessages(c, burst, func(m map[string]any) any { return m["data"] }) })
	}
	wg.Wait()
	for i, err := range errs {
		assert.NoError(t, err, "session %d", i)
	}
	select {
	case ev := <-h.rec.closes:
		t.Fatalf("a session closed: %+v", ev)
	default:
	}
}

// TestLargeMessageFansOut is red team item 10's other half: a message
// larger than BufferBytes (a client's message under MaxFrame, broadcast in
// an envelope) is taken by an empty outbox and delivered, not refused
// with 4413 by every receiver at once.
func TestLargeMessageFansOut(t *testing.T) {
	t.Parallel()
	var srv *wsauth.Server
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.OnMessage = func(ctx context.Context, s *wsauth.Session, m wsauth.Message) error {
			b, _ := json.Marshal(map[string]any{"from": s.Principal().Subject, "data": m.Data})
			_, err := srv.Broadcast(ctx, b)
			return err
		}
	}})
	srv = h.srv
	var conns []*wstest.Conn
	for i := range 5 {
		c, _ := h.loginT(t, h.idp.Token(fmt.Sprintf("r%d", i), time.Hour))
		conns = append(conns, c)
	}
	big := strings.Repeat("x", wsauth.DefaultMaxFrame-30) // a client frame of MaxFrame-2 bytes
	require.NoError(t, conns[0].WriteText(`{"type":"message","data":"`+big+`"}`))
	for i, c := range conns {
		m := readType(t, c, "message")
		d := m["data"].(map[string]any)
		assert.Equal(t, big, d["data"], "session %d", i)
	}
}

// TestStalledReaderDoesNotSlowOthers: a broadcaster working from OnMessage
// waits for receivers that read, but not for one that stopped reading: the
// others get everything long before that one's WriteTimeout would drop it
// (waiting for it would take at least that long).
func TestStalledReaderDoesNotSlowOthers(t *testing.T) {
	t.Parallel()
	const (
		readers      = 3
		messages     = 300
		writeTimeout = 20 * time.Second
	)
	var srv *wsauth.Server
	full := make(chan error, messages)
	h := newHostileEnv(t, hostileOptions{server: func(o *wsauth.Options) {
		o.WriteTimeout = writeTimeout
		o.BufferMessages = 16
		o.OnMessage = func(ctx context.Context, _ *wsauth.Session, m wsauth.Message) error {
			pad := strings.Repeat("p", 16<<10)
			b, _ := json.Marshal(map[string]any{"n": json.RawMessage(m.Data), "pad": pad})
			if _, err := srv.Broadcast(ctx, b); errors.Is(err, wsauth.ErrBufferFull) {
				full <- err
			}
			return nil
		}
	}})
	srv = h.srv

	// The stalled reader: a tiny receive buffer, never read.
	nc, err := net.DialTimeout("tcp", h.host(), 5*time.Second)
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, nc.(*net.TCPConn).SetReadBuffer(4096))
	auth := wstest.Frame(true, wstest.OpText, []byte(`{"type":"auth","token":"`+h.idp.Token("stalled", time.Hour)+`"}`))
	_, err = nc.Write(append([]byte(rawUpgrade(h.host())), auth...))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return h.srv.Len() == 1 }, 5*time.Second, time.Millisecond)

	var conns []*wstest.Conn
	for i := range readers {
		c, _ := h.loginT(t, h.idp.Token(fmt.Sprintf("reader%d", i), time.Hour))
		c.Timeout = writeTimeout
		conns = append(conns, c)
	}
	start := time.Now()
	go func() {
		for i := range messages {
			if conns[0].WriteText(fmt.Sprintf(`{"type":"message","data":%d}`, i)) != nil {
				return
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make([]error, readers)
	for i, c := range conns {
		wg.Go(func() {
			errs[i] = countMessages(c, messages, func(m map[string]any) any { return m["data"].(map[string]any)["n"] })
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i, err := range errs {
		require.NoError(t, err, "reader %d", i)
	}
	assert.Less(t, elapsed, writeTimeout/2, "the readers were held up by the stalled one")
	assert.NotEmpty(t, full, "the stalled reader was never skipped")
	assert.Equal(t, readers+1, h.srv.Len(), "nobody was closed")
	nc.Close() // its blocked write fails now, instead of after WriteTimeout
	assert.Equal(t, "stalled", h.closeEventT(t).subject)
}

// replyEnv is a server whose OnMessage acts on the message's data:
//
//	"block"  replies "r1", then waits for release
//	"many"   replies 0..39
//	"refuse" replies "before-error", then refuses the message
//	"panic"  replies "last-words", then panics
//	"bad"    replies with invalid JSON and reports the error on errs
type replyEnv struct {
	*env
	replied chan struct{}
	release chan struct{}
	errs    chan error
}

func newReplyEnv(t *testing.T) *replyEnv {
	r := &replyEnv{replied: make(chan struct{}, 1), release: make(chan struct{}), errs: make(chan error, 1)}
	r.env = newEnv(t, func(o *wsauth.Options) {
		o.OnMessage = func(_ context.Context, s *wsauth.Session, m wsauth.Message) error {
			switch string(m.Data) {
			case `"block"`:
				if err := s.Reply(json.RawMessage(`"r1"`)); err != nil {
					return err
				}
				r.replied <- struct{}{}
				<-r.release
			case `"many"`:
				for i := range 40 {
					if err := s.Reply(json.RawMessage(fmt.Sprint(i))); err != nil {
						return err
					}
				}
			case `"refuse"`:
				if err := s.Reply(json.RawMessage(`"before-error"`)); err != nil {
					return err
				}
				return &wsauth.MessageError{Code: 4000, Message: "no"}
			case `"panic"`:
				if err := s.Reply(json.RawMessage(`"last-words"`)); err != nil {
					return err
				}
				panic("handler bug")
			case `"bad"`:
				r.errs <- s.Reply(json.RawMessage(`{bad`))
			}
			return nil
		}
	})
	return r
}

func (r *replyEnv) waitReplied(t *testing.T) {
	t.Helper()
	select {
	case <-r.replied:
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not reply within 5s")
	}
}

func TestReply(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func(t *testing.T, r *replyEnv, c *wstest.Conn, s *wsauth.Session)
	}{
		{"written when the handler returns", func(t *testing.T, r *replyEnv, c *wstest.Conn, _ *wsauth.Session) {
			require.NoError(t, c.WriteText(`{"type":"message","data":"block"}`))
			r.waitReplied(t)
			// The handler has replied but not returned: nothing is written yet.
			c.Timeout = 100 * time.Millisecond
			_, _, err := c.ReadFrame()
			var ne net.Error
			require.ErrorAs(t, err, &ne, "a frame arrived while the handler ran")
			require.True(t, ne.Timeout())
			c.Timeout = 5 * time.Second
			close(r.release)
			assert.Equal(t, "r1", readType(t, c, "message")["data"])
		}},
		{"a Send from another goroutine does not wait for the handler", func(t *testing.T, r *replyEnv, c *wstest.Conn, s *wsauth.Session) {
			require.NoError(t, c.WriteText(`{"type":"message","data":"block"}`))
			r.waitReplied(t)
			require.NoError(t, s.Send(json.RawMessage(`"s1"`)))
			// Both arrive, in order, while the handler is still blocked.
			assert.Equal(t, "r1", readType(t, c, "message")["data"])
			assert.Equal(t, "s1", readType(t, c, "message")["data"])
			close(r.release)
		}},
		{"many replies keep their order", func(t *testing.T, _ *replyEnv, c *wstest.Conn, _ *wsauth.Session) {
			require.NoError(t, c.WriteText(`{"type":"message","data":"many"}`))
			for i := range 40 {
				require.Equal(t, float64(i), readType(t, c, "message")["data"])
			}
		}},
		{"replies go before the message's error frame", func(t *testing.T, _ *replyEnv, c *wstest.Conn, _ *wsauth.Session) {
			require.NoError(t, c.WriteText(`{"type":"message","id":"q","data":"refuse"}`))
			assert.Equal(t, "before-error", readType(t, c, "message")["data"])
			e := readType(t, c, "error")
			assert.Equal(t, float64(4000), e["code"])
			assert.Equal(t, "q", e["ref"])
		}},
		{"replies go before the close of a panicking handler", func(t *testing.T, r *replyEnv, c *wstest.Conn, _ *wsauth.Session) {
			require.NoError(t, c.WriteText(`{"type":"message","data":"panic"}`))
			texts := r.expectClose(c, protocol.CloseInternal, "internal error")
			require.Len(t, texts, 1)
			assert.JSONEq(t, `{"type":"message","data":"last-words"}`, string(texts[0]))
		}},
		{"invalid data is refused", func(t *testing.T, r *replyEnv, c *wstest.Conn, _ *wsauth.Session) {
			require.NoError(t, c.WriteText(`{"type":"message","data":"bad"}`))
			select {
			case err := <-r.errs:
				assert.ErrorIs(t, err, wsauth.ErrInvalidData)
			case <-time.After(5 * time.Second):
				t.Fatal("handler did not run")
			}
		}},
		{"outside a handler Reply is Send", func(t *testing.T, _ *replyEnv, c *wstest.Conn, s *wsauth.Session) {
			require.NoError(t, s.Reply(json.RawMessage(`"unprompted"`)))
			assert.Equal(t, "unprompted", readType(t, c, "message")["data"])
		}},
		{"after close", func(t *testing.T, r *replyEnv, c *wstest.Conn, s *wsauth.Session) {
			s.Close(protocol.CloseCode(4000), "bye")
			r.expectClose(c, 4000, "bye")
			assert.ErrorIs(t, s.Reply(json.RawMessage(`1`)), wsauth.ErrSessionClosed)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newReplyEnv(t)
			c, ok := r.login("alice", time.Hour)
			s, found := r.srv.Session(ok["session"].(string))
			require.True(t, found)
			tc.run(t, r, c, s)
		})
	}
}
