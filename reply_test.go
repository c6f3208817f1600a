package wsauth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

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
			s.Close(wsauth.CloseCode(4000), "bye")
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
