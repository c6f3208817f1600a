package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/client"
	"github.com/wsauth/wsauth/protocol"
)

// Clients against a hostile or faulty server (fake_test.go).

// floodThenClose answers every auth with auth_ok; on the first connection
// it then sends n messages and closes with 4413, as a server does whose
// buffer for the client overflowed, dropping the TCP connection.
func floodThenClose(n int) func(*fakeConn, protocol.ClientFrame) {
	return func(fc *fakeConn, f protocol.ClientFrame) {
		if f.Type != protocol.TypeAuth {
			return
		}
		fc.authOK("fay", time.Time{})
		if fc.n > 1 {
			return
		}
		for i := 1; i <= n; i++ {
			fc.send(fmt.Sprint(i))
		}
		_ = fc.WriteClose(uint16(protocol.CloseBufferOverflow), []byte("buffer overflow"))
	}
}

// waitBuffered waits until n messages wait for Receive.
func waitBuffered(t *testing.T, c *client.Client, n int) {
	t.Helper()
	require.Eventually(t, func() bool { got, _ := client.Buffered(c); return got == n }, wait, time.Millisecond)
}

// reconnects moves the client's clock by step, with do run at every step,
// until the client reports Connecting: it noticed that its connection
// died. (Its state may be Active again by the time a test looks: moving
// the clock also ends the backoff.)
func (p *probe) reconnects(step time.Duration, do func()) {
	p.t.Helper()
	require.Eventually(p.t, func() bool {
		if do != nil {
			do()
		}
		p.clock.Advance(step)
		for {
			select {
			case s := <-p.states:
				if s == client.Connecting {
					return true
				}
			default:
				return false
			}
		}
	}, wait, 5*time.Millisecond, "the client never noticed that its connection died")
}

// A client whose application does not call Receive still notices that
// the server closed the connection, though the close frame waits behind
// messages it does not read: a write fails (a ping, or a message), and
// the client reconnects. The messages it had read stay for Receive.
func TestDeadConnectionNoticedWhileReceiveIsBehind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ping bool // else the application sends
	}{
		{"a ping notices", true},
		{"a send notices", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fk := newFake(t, floodThenClose(100))
			p, opts := newProbe(t, fakeSource)
			opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}
			if tc.ping {
				opts.PingInterval, opts.PongTimeout = time.Second, time.Second
			}
			c := dial(t, fk.url, opts)
			waitBuffered(t, c, 64) // and the reader waits with the 65th

			var send func()
			if !tc.ping {
				n := 0
				send = func() {
					n++
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
					defer cancel()
					assert.NoError(t, c.Send(ctx, json.RawMessage(fmt.Sprint(n))), "the queue filled up")
				}
			}
			p.reconnects(time.Second, send)
			require.NoError(t, c.Err())
			p.advanceUntilActive(c, 10*time.Millisecond)
			assert.Equal(t, "s2", c.Session())
			for i := 1; i <= 65; i++ {
				receive(t, c, fmt.Sprint(i))
			}
			nothingReceived(t, c)
		})
	}
}

// A client that only sends, with its reader held by a full receive buffer,
// notices a network that stopped carrying packets when a write times out,
// and reconnects.
func TestSendOnlyClientNoticesANetworkCut(t *testing.T) {
	t.Parallel()
	fk := newFake(t, func(fc *fakeConn, f protocol.ClientFrame) {
		if f.Type != protocol.TypeAuth {
			return
		}
		fc.authOK("fay", time.Time{})
		if fc.n == 1 {
			for i := 1; i <= 100; i++ {
				fc.send(fmt.Sprint(i))
			}
		}
	})
	px := newProxy(t, fk.url)
	p, opts := newProbe(t, fakeSource)
	opts.WriteTimeout = 100 * time.Millisecond
	// One message waiting behind the write that blocks is enough: more
	// would only cost the loop below CPU time (each Send checks and copies
	// 256 KiB) that the client needs to notice the cut, on a loaded machine.
	opts.QueueSize = 1
	opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	c := dial(t, px.url, opts)
	waitBuffered(t, c, 64)
	px.freeze()

	big := json.RawMessage(`"` + strings.Repeat("x", 256<<10) + `"`)
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_ = c.Send(ctx, big) // fills the frozen link's buffers (see newProxy), then the queue
		return c.State() != client.Active
	}, wait, time.Millisecond, "the client never noticed that the network was cut")
	p.advanceUntilActive(c, 10*time.Millisecond)
	assert.Equal(t, "s2", c.Session())
	require.NoError(t, c.Err())
}

// The messages waiting for Receive are bounded in bytes too (1 MiB), not
// only in number (64): a server cannot make the client hold 64 messages
// of the largest size.
func TestReceiveBufferIsBoundedInBytes(t *testing.T) {
	t.Parallel()
	const size = 200 << 10
	big := func(i int) string { return fmt.Sprintf(`"%d%s"`, i, strings.Repeat("x", size)) }
	fk := newFake(t, func(fc *fakeConn, f protocol.ClientFrame) {
		if f.Type == protocol.TypeAuth {
			fc.authOK("fay", time.Time{})
			for i := range 8 {
				fc.send(big(i))
			}
		}
	})
	_, opts := newProbe(t, fakeSource)
	c := dial(t, fk.url, opts)
	fit := (1 << 20) / len(big(0)) // 5
	waitBuffered(t, c, fit)
	time.Sleep(50 * time.Millisecond) // the reader would go on if it could
	n, bytes := client.Buffered(c)
	assert.LessOrEqual(t, bytes, 1<<20)
	assert.Equal(t, fit, n, "as many as fit in 1 MiB")
	for i := range 8 {
		receive(t, c, big(i))
	}
}

// Options.ReadLimit (default 1 MiB) caps a message from the server: a
// larger one closes the connection with 1009, which is terminal.
func TestReadLimit(t *testing.T) {
	t.Parallel()
	large := `"` + strings.Repeat("x", 3<<19) + `"` // 1.5 MiB
	fk := newFake(t, func(fc *fakeConn, f protocol.ClientFrame) {
		if f.Type == protocol.TypeAuth {
			fc.authOK("fay", time.Time{})
			fc.send(large)
		}
	})
	t.Run("default", func(t *testing.T) {
		_, opts := newProbe(t, fakeSource)
		c, err := client.Dial(context.Background(), fk.url, opts)
		if err == nil { // the 1009 may come before or after Dial returns
			waitDone(t, c)
			err = c.Err()
		}
		var ce *protocol.CloseError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, protocol.CloseTooLarge, ce.Code)
	})
	t.Run("raised", func(t *testing.T) {
		_, opts := newProbe(t, fakeSource)
		opts.ReadLimit = 2 << 20
		c := dial(t, fk.url, opts)
		receive(t, c, large)
	})
	_, opts := newProbe(t, fakeSource)
	opts.ReadLimit = -1
	_, err := client.Dial(context.Background(), fk.url, opts)
	assert.ErrorContains(t, err, "ReadLimit")
}

// An auth_ok that changes the subject of a live socket is a protocol
// error: the client ends rather than carry on as someone else.
func TestSubjectChangedOnReauthIsTerminal(t *testing.T) {
	t.Parallel()
	fk := newFake(t, func(fc *fakeConn, f protocol.ClientFrame) {
		if f.Type != protocol.TypeAuth {
			return
		}
		sub := "fay"
		if fc.auths > 1 {
			sub = "mallory"
		}
		fc.authOK(sub, epoch.Add(time.Hour))
	})
	p, opts := newProbe(t, fakeSource)
	c := dial(t, fk.url, opts)
	p.clock.Advance(time.Hour - 30*time.Second) // the client's own refresh
	waitDone(t, c)
	assert.ErrorIs(t, c.Err(), protocol.ErrMalformed)
	assert.ErrorContains(t, c.Err(), "subject")
	assert.Equal(t, "fay", c.Subject())
	fk.expectClose(t, "4400:subject changed")
	assert.EqualValues(t, 2, p.calls.Load(), "no reconnection")
}

// A close frame without a status code (reported as 1005) is retried, like
// a connection dropped without one (1006).
func TestCloseWithoutStatusIsRetried(t *testing.T) {
	t.Parallel()
	fk := newFake(t, func(fc *fakeConn, f protocol.ClientFrame) {
		if f.Type == protocol.TypeAuth {
			fc.authOK("fay", time.Time{})
		}
	})
	p, opts := newProbe(t, fakeSource)
	opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	c := dial(t, fk.url, opts)
	_, err := fk.conn(1).NetConn().Write([]byte{0x88, 0x00}) // FIN + close, no payload
	require.NoError(t, err)
	p.waitState(client.Connecting)
	p.advanceUntilActive(c, 10*time.Millisecond)
	assert.Equal(t, "s2", c.Session())
	require.NoError(t, c.Err())
}

// A server that asks for a reauth again right after every auth_ok gets at
// most one auth frame a second (the server's own limit between two auth
// frames), not a token fetch per reauth_required.
func TestReauthRequiredFloodIsPaced(t *testing.T) {
	t.Parallel()
	fk := newFake(t, func(fc *fakeConn, f protocol.ClientFrame) {
		if f.Type == protocol.TypeAuth {
			exp := epoch.Add(time.Hour)
			fc.authOK("fay", exp)
			fc.write(protocol.ServerFrame{Type: protocol.TypeReauthRequired, Exp: exp.Unix(), Deadline: exp.Unix() + 10})
		}
	})
	p, opts := newProbe(t, fakeSource)
	c := dial(t, fk.url, opts)
	time.Sleep(50 * time.Millisecond) // the flood, unpaced, would be hundreds of tokens by now
	assert.EqualValues(t, 1, p.calls.Load(), "the answer waits for a second since the first auth")
	for n := 2; n <= 4; n++ {
		p.clock.Advance(time.Second)
		require.Eventually(t, func() bool { return p.calls.Load() == int32(n) }, wait, time.Millisecond)
		p.waitState(client.Active)
		time.Sleep(20 * time.Millisecond)
		assert.EqualValues(t, n, p.calls.Load(), "one auth frame a second")
	}
	assert.Equal(t, "s1", c.Session())
}
