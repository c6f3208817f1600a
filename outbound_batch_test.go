package wsauth_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// The drain writes a batch of queued messages in one socket write
// (gateConn.writeTexts), beside gws, which writes pongs, error frames and
// close frames on other goroutines. These tests read the raw stream.

// sendNumbers sends the numbers 0..n-1 to s, retrying while the outbox is
// full, until one is refused otherwise; it returns how many were accepted.
func sendNumbers(s *wsauth.Session, n int) int {
	for i := 0; i < n; {
		switch err := s.Send(json.RawMessage(strconv.Itoa(i))); {
		case err == nil:
			i++
		case errors.Is(err, wsauth.ErrBufferFull):
			time.Sleep(50 * time.Microsecond)
		default:
			return i
		}
	}
	return n
}

// messageNumber decodes a message frame sent by sendNumbers.
func messageNumber(t *testing.T, p []byte) int {
	t.Helper()
	var m struct {
		Type string `json:"type"`
		Data int    `json:"data"`
	}
	require.NoError(t, json.Unmarshal(p, &m), "frame %q", p)
	require.Equal(t, "message", m.Type, "frame %q", p)
	return m.Data
}

// TestBatchedWritesInterleaveWithPongs: while batches of messages go out,
// the client pings; every frame arrives whole, the messages all and in
// order, the pongs all and in order.
func TestBatchedWritesInterleaveWithPongs(t *testing.T) {
	t.Parallel()
	const messages, pings = 5000, 200
	e := newEnv(t, nil)
	c, ok := e.login("batch", time.Hour)
	s, found := e.srv.Session(ok["session"].(string))
	require.True(t, found)

	sent := make(chan int, 1)
	go func() { sent <- sendNumbers(s, messages) }()
	pingErr := make(chan error, 1)
	go func() {
		for i := range pings {
			if err := c.WriteFrame(true, wstest.OpPing, []byte(fmt.Sprint("p", i))); err != nil {
				pingErr <- err
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
		pingErr <- nil
	}()

	nextMsg, nextPong := 0, 0
	for nextMsg < messages || nextPong < pings {
		op, p, err := c.ReadFrame()
		require.NoError(t, err, "after %d messages and %d pongs", nextMsg, nextPong)
		switch op {
		case wstest.OpText:
			require.Equal(t, nextMsg, messageNumber(t, p))
			nextMsg++
		case wstest.OpPong:
			require.Equal(t, fmt.Sprint("p", nextPong), string(p))
			nextPong++
		default:
			t.Fatalf("unexpected frame %d %q", op, p)
		}
	}
	require.Equal(t, messages, <-sent)
	require.NoError(t, <-pingErr)
}

// TestCloseFrameIsNeverHeld: the session is closed, by the server or by
// gws (a protocol error), while batches of messages are being written to a
// client that reads slowly, so that writes block on a full socket. The
// client gets a prefix of the messages, in order, then the close frame and
// nothing after it; every message it did not get went to OnUndelivered, in
// order, and none went both ways.
func TestCloseFrameIsNeverHeld(t *testing.T) {
	t.Parallel()
	const messages = 2000
	pad := strings.Repeat("x", 4000) // 8 MB in all: more than the socket buffers hold
	number := func(t *testing.T, data []byte) int {
		var d struct{ N int }
		require.NoError(t, json.Unmarshal(data, &d), "data %q", data)
		return d.N
	}
	for _, by := range []string{"server", "gws"} {
		t.Run("closed by "+by, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(o *wsauth.Options) { o.BufferMessages, o.BufferBytes = messages, 16<<20 })
			for round := range 2 {
				sub := fmt.Sprint("closer", round)
				c, ok := e.login(sub, time.Hour)
				require.NoError(t, c.Conn.(*net.TCPConn).SetReadBuffer(64<<10))
				s, found := e.srv.Session(ok["session"].(string))
				require.True(t, found)
				for i := range messages {
					require.NoError(t, s.Send(json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":%q}`, i, pad))))
				}
				// The drain is now blocked on the full socket.
				time.Sleep(50 * time.Millisecond)
				wantCode := 4000
				if by == "server" {
					go s.Close(4000, "bye")
				} else {
					// A frame with a reserved opcode: gws closes with 1002.
					wantCode = 1002
					require.NoError(t, c.WriteFrame(true, 0x3, nil))
				}
				got := 0
				for {
					op, p, err := c.ReadFrame()
					require.NoError(t, err, "after %d messages", got)
					if op == wstest.OpClose {
						require.GreaterOrEqual(t, len(p), 2)
						require.Equal(t, wantCode, int(binary.BigEndian.Uint16(p)))
						break
					}
					require.Equal(t, byte(wstest.OpText), op)
					var m struct{ Data json.RawMessage }
					require.NoError(t, json.Unmarshal(p, &m))
					require.Equal(t, got, number(t, m.Data))
					got++
					if got%50 == 0 {
						time.Sleep(time.Millisecond) // a slow reader
					}
				}
				require.Less(t, got, messages, "the close came after every message: nothing was tested")
				// Nothing follows the close frame.
				_ = c.WriteFrame(true, wstest.OpClose, []byte{0x03, 0xe8})
				op, p, err := c.ReadFrame()
				require.Error(t, err, "frame %d %q after the close frame", op, p)
				require.Equal(t, protocol.CloseCode(wantCode), e.nextClose().code)
				undelivered := e.undeliveredFor(sub)
				require.Len(t, undelivered, messages-got)
				for i, d := range undelivered {
					require.Equal(t, got+i, number(t, []byte(d)))
				}
			}
		})
	}
}

// TestPipelinedRepliesKeepTheirPlace: a client writes several messages in
// one write, so that they are all read at once and their replies may be
// written together. Whatever follows them in the same write (a ping, a
// message the handler refuses, a malformed frame, a frame gws refuses, a
// close frame), every reply arrives, in order, before what the server
// answers to it.
func TestPipelinedRepliesKeepTheirPlace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *wsauth.Options) {
		o.OnMessage = func(_ context.Context, s *wsauth.Session, m wsauth.Message) error {
			if string(m.Data) == `"refuse"` {
				return &wsauth.MessageError{Code: 4000, Message: "no"}
			}
			return s.Reply(m.Data)
		}
	})
	const n = 40 // more than drainBatch: some replies are written before the rest are read
	messages := func() []byte {
		var b []byte
		for i := range n {
			b = append(b, wstest.Frame(true, wstest.OpText, fmt.Appendf(nil, `{"type":"message","data":%d}`, i))...)
		}
		return b
	}
	cases := []struct {
		name  string
		after []byte
		want  func(t *testing.T, op byte, p []byte) // the frame after the replies
	}{
		{"nothing", nil, nil},
		{"ping", wstest.Frame(true, wstest.OpPing, []byte("p")), func(t *testing.T, op byte, p []byte) {
			require.Equal(t, byte(wstest.OpPong), op)
			require.Equal(t, "p", string(p))
		}},
		{"refused message", wstest.Frame(true, wstest.OpText, []byte(`{"type":"message","data":"refuse"}`)), func(t *testing.T, op byte, p []byte) {
			require.Equal(t, byte(wstest.OpText), op)
			require.Contains(t, string(p), `"type":"error"`)
		}},
		{"malformed frame", wstest.Frame(true, wstest.OpText, []byte(`{`)), closeWith(protocol.CloseMalformed)},
		{"reserved opcode", wstest.Frame(true, 0x3, nil), closeWith(1002)},
		{"close frame", wstest.Frame(true, wstest.OpClose, []byte{0x03, 0xe8}), closeWith(1000)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := e.login("pipeliner", time.Hour)
			require.NoError(t, c.WriteFrame(true, wstest.OpPing, []byte("sync")))
			_, err := c.Conn.Write(append(messages(), tc.after...))
			require.NoError(t, err)
			got := 0
			for got < n {
				op, p, err := c.ReadFrame()
				require.NoError(t, err, "after %d replies", got)
				if op == wstest.OpPong && string(p) == "sync" {
					continue
				}
				require.Equal(t, byte(wstest.OpText), op, "frame %q after %d replies", p, got)
				require.Equal(t, got, messageNumber(t, p))
				got++
			}
			if tc.want != nil {
				op, p, err := c.ReadFrame()
				require.NoError(t, err)
				tc.want(t, op, p)
			}
		})
	}
}

func closeWith(code protocol.CloseCode) func(t *testing.T, op byte, p []byte) {
	return func(t *testing.T, op byte, p []byte) {
		require.Equal(t, byte(wstest.OpClose), op, "frame %q", p)
		require.GreaterOrEqual(t, len(p), 2)
		require.Equal(t, int(code), int(binary.BigEndian.Uint16(p)))
	}
}
