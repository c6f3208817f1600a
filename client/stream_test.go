package client_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/client"
	"github.com/wsauth/wsauth/natsbroker"
	"github.com/wsauth/wsauth/protocol"
)

// Users' streams and resume (docs/protocol.md, section 5): the client
// keeps its place and resumes it on every reconnection, to any node.

// sink collects what a client hands to the application, through Receive
// (a goroutine of its own) or OnMessage. The test can hold it: the
// application then takes nothing more (Receive) or blocks the client's
// reader (OnMessage) until released.
type sink struct {
	t         *testing.T
	onMessage bool
	blocked   atomic.Int32 // OnMessage calls waiting for the release

	mu   sync.Mutex
	gate chan struct{} // while held: closed by release
	got  []string
}

// newSink returns a sink and sets opts to feed it, with OnMessage if
// onMessage.
func newSink(t *testing.T, opts *client.Options, onMessage bool) *sink {
	s := &sink{t: t, onMessage: onMessage}
	if onMessage {
		opts.OnMessage = func(data json.RawMessage) {
			s.blocked.Add(1)
			s.pass(nil)
			s.blocked.Add(-1)
			s.add(data)
		}
	}
	return s
}

// start runs the Receive loop of a Receive sink until the test ends, and
// makes sure that the sink is not held when the client closes.
func (s *sink) start(c *client.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if s.onMessage {
		close(done)
	} else {
		go func() {
			defer close(done)
			for s.pass(ctx.Done()) {
				data, err := c.Receive(ctx)
				if err != nil {
					return
				}
				s.add(data)
			}
		}()
	}
	s.t.Cleanup(func() {
		s.mu.Lock()
		if s.gate != nil {
			close(s.gate)
			s.gate = nil
		}
		s.mu.Unlock()
		cancel()
		<-done
	})
}

// pass waits while the sink is held; false if stop ended first.
func (s *sink) pass(stop <-chan struct{}) bool {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate == nil {
		return true
	}
	select {
	case <-gate:
		return true
	case <-stop:
		return false
	}
}

func (s *sink) add(data json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, string(data))
}

func (s *sink) hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = make(chan struct{})
}

func (s *sink) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.gate)
	s.gate = nil
}

// waitHeld waits until the held application keeps messages from the
// client: messages wait for Receive (at least n), or OnMessage blocks.
func (s *sink) waitHeld(c *client.Client, n int) {
	s.t.Helper()
	require.Eventually(s.t, func() bool {
		if s.onMessage {
			return s.blocked.Load() > 0
		}
		got, _ := client.Buffered(c)
		return got >= n
	}, wait, time.Millisecond)
}

// waitFor waits until the application got the message data, and returns
// everything it got.
func (s *sink) waitFor(data string) []string {
	s.t.Helper()
	var got []string
	require.Eventually(s.t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		got = s.got
		return len(got) > 0 && got[len(got)-1] == data
	}, 2*wait, time.Millisecond, "the application did not get %s", data)
	return got
}

func numbers(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

// memoryBrokers returns one broker.Memory for every node of a cluster.
func memoryBrokers(opts broker.MemoryOptions) func() broker.Broker {
	b := broker.NewMemory(opts)
	return func() broker.Broker { return b }
}

// natsBrokers starts a NATS server with JetStream in this process and
// returns a natsbroker.Broker on a connection of its own for every node
// of a cluster.
func natsBrokers(t *testing.T) func() broker.Broker {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	require.NoError(t, err)
	go ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	require.True(t, ns.ReadyForConnections(2*wait), "nats-server not ready")
	return func() broker.Broker {
		nc, err := nats.Connect(ns.ClientURL(), nats.NoCallbacksAfterClientClose())
		require.NoError(t, err)
		t.Cleanup(nc.Close) // after the node using it has shut down
		b, err := natsbroker.New(context.Background(), nc, natsbroker.Options{})
		require.NoError(t, err)
		return b
	}
}

// streamOptions are the options of a client of a cluster on real time:
// quick reconnections, and pings that notice a dead connection while the
// application holds the reader.
func streamOptions(cl *cluster, sub string) client.Options {
	return client.Options{
		Token:        cl.token(sub),
		Backoff:      client.Backoff{Initial: time.Millisecond, Max: 20 * time.Millisecond},
		PingInterval: 20 * time.Millisecond,
		PongTimeout:  100 * time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
	}
}

// bounceStream sends a user a stream of messages while it moves the
// user's client between the cluster's nodes, every way: shutdowns and
// cut connections, while the application keeps up and while it holds
// messages (waiting for Receive, or in a blocked OnMessage), with messages
// in flight and messages sent while the client is away. The application
// must get every message exactly once, in order.
func bounceStream(t *testing.T, cl *cluster, onMessage bool) {
	opts := streamOptions(cl, "ada")
	s := newSink(t, &opts, onMessage)
	c := dial(t, cl.url, opts)
	s.start(c)

	n := 0
	send := func(k int) {
		for range k {
			n++
			cl.send("ada", strconv.Itoa(n))
		}
	}
	for _, round := range []struct {
		how  bounce
		held int // messages sent while the application holds them; 0: it keeps up
	}{
		{shutdown, 0},
		{drop, 0},
		// More than Receive buffers: the reader waits with one more when
		// the connection goes, and only a ping notices.
		{shutdown, 70},
		{drop, 70},
		{shutdown, 30},
		{drop, 30},
	} {
		if round.held > 0 {
			s.hold()
			send(round.held)
			// A Receive under way when the sink was held takes one.
			s.waitHeld(c, min(round.held-1, 64))
		} else {
			send(20)
		}
		cl.bounce(round.how)
		send(20)
		if round.held > 0 && !onMessage {
			// The client resumes with messages waiting for Receive: not
			// from what the application took.
			cl.waitServed(c)
		}
		if round.held > 0 {
			s.release()
		}
		cl.waitServed(c)
	}
	send(20)
	cl.send("ada", `"end"`)
	got := s.waitFor(`"end"`)
	require.Equal(t, append(numbers(1, n), `"end"`), got)
	// OnMessage hands "end" to the sink before Position counts it (that
	// is once the callback has returned): Close waits for that.
	require.NoError(t, c.Close())
	at, ok := c.Position()
	require.True(t, ok)
	assert.Equal(t, uint64(n+1), at.Seq)
	assert.NotEmpty(t, at.Epoch)
}

// eachDelivery runs f as parallel subtests, for an application that takes
// its messages with Receive and for one with OnMessage.
func eachDelivery(t *testing.T, f func(t *testing.T, onMessage bool)) {
	for _, onMessage := range []bool{false, true} {
		name := "Receive"
		if onMessage {
			name = "OnMessage"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, onMessage)
		})
	}
}

// TestResumeAcrossNodesExactlyOnce: a client moved between the nodes of a
// cluster on a broker.Memory gets every message of its stream once, in
// order.
func TestResumeAcrossNodesExactlyOnce(t *testing.T) {
	t.Parallel()
	eachDelivery(t, func(t *testing.T, onMessage bool) {
		bounceStream(t, newCluster(t, memoryBrokers(broker.MemoryOptions{})), onMessage)
	})
}

// TestResumeAcrossNodesOnNATS: the same on a cluster whose nodes share a
// real NATS server through natsbroker.
func TestResumeAcrossNodesOnNATS(t *testing.T) {
	t.Parallel()
	bounceStream(t, newCluster(t, natsBrokers(t)), false)
}

// TestResumeLostReachesTheApplication: a client away for longer than the
// broker keeps messages (here 4) is told, through OnResumeLost, after the
// messages it got before the gap and before those after it; its position
// moves to the stream's head, and the messages it missed never come.
func TestResumeLostReachesTheApplication(t *testing.T) {
	t.Parallel()
	eachDelivery(t, func(t *testing.T, onMessage bool) {
		cl := newCluster(t, memoryBrokers(broker.MemoryOptions{MaxMessages: 4}))
		p, opts := newProbe(t, func(context.Context, int) (string, error) { return cl.idp.Token("bo", time.Hour), nil })
		opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond}
		events := make(chan string, 10) // "msg:<data>" (OnMessage), "lost"
		var cp atomic.Pointer[client.Client]
		lostAt := make(chan protocol.Position, 1)
		opts.OnResumeLost = func() {
			at, ok := cp.Load().Position()
			assert.True(t, ok)
			lostAt <- at
			events <- "lost"
		}
		if onMessage {
			opts.OnMessage = func(data json.RawMessage) { events <- "msg:" + string(data) }
		}
		c := dial(t, cl.url, opts)
		cp.Store(c)
		start, ok := c.Position()
		require.True(t, ok, "the server keeps streams")
		assert.Equal(t, protocol.Position{}, start, "a user without messages yet")

		cl.send("bo", "1")
		if onMessage {
			require.Equal(t, "msg:1", <-events)
		} else {
			waitBuffered(t, c, 1) // read, not taken
		}
		cl.bounce(shutdown)
		p.waitState(client.Connecting)
		for i := 2; i <= 10; i++ {
			cl.send("bo", strconv.Itoa(i)) // 2 to 6 are gone by the time it resumes
		}
		p.advanceUntilActive(c, 10*time.Millisecond)

		if !onMessage {
			select {
			case <-events:
				t.Fatal("OnResumeLost ran before the application took the message before the gap")
			case <-time.After(20 * time.Millisecond):
			}
			receive(t, c, "1")
		}
		select {
		case at := <-lostAt:
			assert.Equal(t, uint64(10), at.Seq, "the position moved to the head")
			assert.NotEmpty(t, at.Epoch)
		case <-time.After(wait):
			t.Fatal("OnResumeLost was not called")
		}
		require.Equal(t, "lost", <-events)

		cl.send("bo", "11")
		if onMessage {
			require.Equal(t, "msg:11", <-events)
		} else {
			receive(t, c, "11")
			nothingReceived(t, c)
		}
		// With OnMessage, Position counts a message once the callback has
		// returned, which its event does not wait for: Close does.
		require.NoError(t, c.Close())
		at, _ := c.Position()
		assert.Equal(t, uint64(11), at.Seq)
		assert.Empty(t, events)
	})
}

// TestPositionResumesANewClient: a position saved from one client and
// passed as Options.Resume makes a new client's first connection resume
// there, on another node; a saved position the server no longer has is
// reported as lost on the first connection.
func TestPositionResumesANewClient(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, memoryBrokers(broker.MemoryOptions{}))
	_, opts := newProbe(t, func(context.Context, int) (string, error) { return cl.idp.Token("cy", time.Hour), nil })
	a := dial(t, cl.url, opts)
	for i := 1; i <= 3; i++ {
		cl.send("cy", strconv.Itoa(i))
		receive(t, a, strconv.Itoa(i))
	}
	require.NoError(t, a.Close())
	saved, ok := a.Position()
	require.True(t, ok, "the position stays readable after Close")
	assert.Equal(t, uint64(3), saved.Seq)

	cl.send("cy", "4")
	cl.send("cy", "5")
	cl.bounce(drop) // the next client connects to the other node
	opts.Resume = &saved
	b := dial(t, cl.url, opts)
	saved.Seq = 0 // Dial copied it
	receive(t, b, "4")
	receive(t, b, "5")
	nothingReceived(t, b)
	at, _ := b.Position()
	assert.Equal(t, protocol.Position{Epoch: saved.Epoch, Seq: 5}, at)
	require.NoError(t, b.Close())

	lost := make(chan struct{})
	opts.Resume = &protocol.Position{Epoch: "gone", Seq: 3}
	opts.OnResumeLost = func() { close(lost) }
	d := dial(t, cl.url, opts)
	select {
	case <-lost:
	case <-time.After(wait):
		t.Fatal("OnResumeLost was not called")
	}
	at, _ = d.Position()
	assert.Equal(t, protocol.Position{Epoch: saved.Epoch, Seq: 5}, at, "the head")
	cl.send("cy", "6")
	receive(t, d, "6")
}

// TestResumesFromWhatItRead: against a scripted server, the first auth of
// a client asks for no resume; a reconnection asks to resume after the
// last stream message the client read, though the application has not
// taken it yet, so that nothing it holds comes twice; Position moves only
// as the application takes the messages; a stream message the server
// repeats is dropped.
func TestResumesFromWhatItRead(t *testing.T) {
	t.Parallel()
	resumes := make(chan *protocol.Position, 2)
	stream := func(seq uint64, data string) protocol.ServerFrame {
		return protocol.ServerFrame{Type: protocol.TypeMessage, Epoch: "e1", Seq: seq, Data: json.RawMessage(data)}
	}
	fk := newFake(t, func(fc *fakeConn, f protocol.ClientFrame) {
		if f.Type != protocol.TypeAuth {
			return
		}
		resumes <- f.Resume
		ok := protocol.ServerFrame{Type: protocol.TypeAuthOK, Session: "s" + strconv.Itoa(fc.n), Subject: "dee", Stream: true, Epoch: "e1"}
		switch fc.n {
		case 1:
			ok.Seq = 5
			fc.write(ok)
			fc.write(stream(6, "6"))
			fc.send(`"not in the stream"`)
			fc.write(stream(7, "7"))
			_ = fc.WriteClose(uint16(protocol.CloseGoingAway), []byte("server shutting down"))
		case 2:
			ok.Seq, ok.Resume = 7, protocol.ResumeOK
			fc.write(ok)
			fc.write(stream(7, "7")) // a server bug: the client has it
			fc.write(stream(8, "8"))
		}
	})
	p, opts := newProbe(t, fakeSource)
	opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond}
	c := dial(t, fk.url, opts)
	assert.Nil(t, <-resumes, "nothing to resume on the first connection")
	at, ok := c.Position()
	require.True(t, ok)
	assert.Equal(t, protocol.Position{Epoch: "e1", Seq: 5}, at, "where the session started")

	p.waitState(client.Connecting)
	p.advanceUntilActive(c, 10*time.Millisecond)
	assert.Equal(t, &protocol.Position{Epoch: "e1", Seq: 7}, <-resumes, "after what it read")
	at, _ = c.Position()
	assert.Equal(t, uint64(5), at.Seq, "the application has taken nothing yet")

	receive(t, c, "6")
	at, _ = c.Position()
	assert.Equal(t, uint64(6), at.Seq)
	receive(t, c, `"not in the stream"`)
	at, _ = c.Position()
	assert.Equal(t, uint64(6), at.Seq, "a message outside the stream does not move it")
	receive(t, c, "7")
	receive(t, c, "8")
	nothingReceived(t, c)
	at, _ = c.Position()
	assert.Equal(t, protocol.Position{Epoch: "e1", Seq: 8}, at)
	assert.Contains(t, p.logs.String(), "server repeated a stream message")
}

// TestNoResumeWithoutStreams: a server that keeps no streams gives no
// position, and the client asks for no resume when it reconnects.
func TestNoResumeWithoutStreams(t *testing.T) {
	t.Parallel()
	resumes := make(chan *protocol.Position, 2)
	fk := newFake(t, func(fc *fakeConn, f protocol.ClientFrame) {
		if f.Type != protocol.TypeAuth {
			return
		}
		resumes <- f.Resume
		fc.authOK("eli", time.Time{})
		fc.send(`"x"`)
		if fc.n == 1 {
			_ = fc.WriteClose(uint16(protocol.CloseGoingAway), []byte("server shutting down"))
		}
	})
	p, opts := newProbe(t, fakeSource)
	opts.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond}
	c := dial(t, fk.url, opts)
	p.waitState(client.Connecting)
	p.advanceUntilActive(c, 10*time.Millisecond)
	assert.Nil(t, <-resumes)
	assert.Nil(t, <-resumes)
	_, ok := c.Position()
	assert.False(t, ok)
}

// Options.Resume is checked by the protocol's rules: the server would
// close with 4400 an auth frame that breaks them.
func TestResumeOptionIsChecked(t *testing.T) {
	t.Parallel()
	_, err := client.Dial(context.Background(), "ws://127.0.0.1:1/ws", client.Options{
		Token:  client.StaticToken("t"),
		Resume: &protocol.Position{Epoch: strings.Repeat("e", 65)},
	})
	assert.ErrorContains(t, err, "Options.Resume")
	assert.ErrorIs(t, err, protocol.ErrMalformed)
}
