package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/natstest"
	"github.com/wsauth/wsauth/internal/testlog"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// runAsCommand set to "1" in its environment makes the test binary run as
// the wsauth-demo command (see TestMain): the cluster test's nodes are real
// processes, built with the test (and its race detector), no go build.
const runAsCommand = "WSAUTH_DEMO_RUN_AS_COMMAND"

// TestClusterAcceptance is the cluster issue's acceptance test: two demo
// processes on one NATS server (with JetStream, in this process) and one
// development key. A user on node a gets a direct message sent on node b; a
// broadcast reaches both nodes; a revocation on b closes the user's
// sessions on a; and when a is stopped (SIGTERM), its client reconnects to
// b with its position and gets every message of its stream, the ones
// published while it was away included, once and in order.
func TestClusterAcceptance(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	key := filepath.Join(t.TempDir(), "dev-key.pem")
	args := []string{"-nats", ns.URL(), "-dev-key", key, "-tick", "100ms"}
	a := startProcess(t, args...)
	b := startProcess(t, args...)

	// Tokens of one node are good on the other.
	alice := a.follow(t, b.token(t, "alice", time.Hour), nil)
	watcher := b.follow(t, a.token(t, "alice", time.Hour), nil) // alice's stream, seen on b all along
	bob := b.follow(t, b.token(t, "bob", time.Hour), nil)
	nodeA, nodeB := alice.node(), watcher.node()
	require.NotEqual(t, nodeA, nodeB)

	// A direct message sent on b reaches alice on a, in her stream.
	require.NoError(t, bob.conn.WriteText(`{"type":"message","data":{"to":"alice","text":"psst"}}`))
	m := alice.until(t, func(f protocol.ServerFrame) bool { return fromOf(f) == "bob" })
	assert.JSONEq(t, `{"from":"bob","data":{"to":"alice","text":"psst"}}`, string(m.Data))
	assert.NotZero(t, m.Seq)

	// A broadcast on a reaches b.
	require.NoError(t, alice.conn.WriteText(`{"type":"message","data":{"text":"hello, both nodes"}}`))
	m = bob.until(t, func(f protocol.ServerFrame) bool { return fromOf(f) == "alice" })
	assert.JSONEq(t, `{"from":"alice","data":{"text":"hello, both nodes"}}`, string(m.Data))
	assert.Zero(t, m.Seq, "a broadcast is in no stream")

	// Revoking on b closes carol's sessions on both nodes.
	carolA := a.follow(t, a.token(t, "carol", time.Hour), nil)
	carolB := b.follow(t, b.token(t, "carol", time.Hour), nil)
	start := time.Now()
	require.NoError(t, carolB.conn.WriteText(`{"type":"message","data":{"revoke":true}}`))
	for _, c := range []*follower{carolA, carolB} {
		assert.Equal(t, wstest.Close{Code: 4403, Reason: "session revoked"}, c.untilClose(t))
	}
	t.Logf("revoked on both nodes in %v", time.Since(start))

	// Both nodes tick alice: a for her session there, b for the watcher's.
	alice.until(t, func(f protocol.ServerFrame) bool { return tickFrom(f, nodeB) >= 3 })
	require.NoError(t, a.stop(), "SIGTERM: a graceful exit")
	assert.Equal(t, wstest.Close{Code: 1001, Reason: "server shutting down"}, alice.untilClose(t))
	at := alice.position()
	// b goes on ticking alice while she is away.
	watcher.until(t, func(f protocol.ServerFrame) bool { return f.Seq >= at.Seq+3 })

	again := b.follow(t, b.token(t, "alice", time.Hour), &at)
	assert.Equal(t, protocol.ResumeOK, again.ok.Resume)
	assert.Equal(t, at, protocol.Position{Epoch: again.ok.Epoch, Seq: again.ok.Seq}, "the session starts at the position presented")
	again.until(t, func(f protocol.ServerFrame) bool { return f.Seq >= at.Seq+10 })
	last := again.stream[len(again.stream)-1].Seq
	watcher.until(t, func(f protocol.ServerFrame) bool { return f.Seq >= last })

	// alice's stream across both connections: every message once, in
	// order, as the watcher saw it, the ones published while she was away
	// included.
	seen := append(alice.stream, again.stream...)
	watched := map[uint64]protocol.ServerFrame{}
	for _, f := range watcher.stream {
		watched[f.Seq] = f
	}
	for i, f := range seen {
		if i > 0 {
			require.Equal(t, seen[i-1].Seq+1, f.Seq, "a gap or a repeat at %d", i)
			require.Equal(t, seen[i-1].Epoch, f.Epoch)
		}
		if w, ok := watched[f.Seq]; ok {
			assert.JSONEq(t, string(w.Data), string(f.Data), "seq %d", f.Seq)
		}
	}
	assert.Equal(t, at.Seq+1, again.stream[0].Seq)
	assert.Equal(t, nodeB, again.node())
}

// process is the demo command running in a process of its own.
type process struct {
	demo // its base and ws; its once and err for stop
	cmd  *exec.Cmd
	done chan error // what Wait returned
	logs *testlog.Buffer
}

// startProcess runs the command with args until the test ends.
func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{logs: &testlog.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(os.Args[0], append([]string{"-addr", "127.0.0.1:0", "-log-level", "debug"}, args...)...)
	p.cmd.Env = append(os.Environ(), runAsCommand+"=1")
	p.cmd.Stderr = p.logs
	stdout, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	// Held open until the process exits: if the test dies, the process
	// reads EOF and exits too (see TestMain).
	_, err = p.cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		p.done <- p.cmd.Wait() // after the last read of stdout
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("demo process: %v", err)
		}
		if t.Failed() {
			t.Logf("demo process logs:\n%s", p.logs)
		}
	})
	select {
	case line := <-lines:
		base, ok := strings.CutPrefix(line, "wsauth-demo listening on ")
		require.True(t, ok, "first stdout line: %q", line)
		p.base = base
		p.ws = "ws" + strings.TrimPrefix(base, "http") + "/ws"
	case <-time.After(30 * time.Second):
		t.Fatalf("no listening line within 30s; logs:\n%s", p.logs)
	}
	return p
}

// stop sends the process SIGTERM and waits for it: nil if it exited 0.
func (p *process) stop() error {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case p.err = <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			p.err = errors.Join(errors.New("no exit within 15s of SIGTERM"), <-p.done)
		}
	})
	return p.err
}

// follower reads one connection's frames, keeping the messages of the
// user's stream it passes.
type follower struct {
	conn   *wstest.Conn
	ok     protocol.ServerFrame // auth_ok
	stream []protocol.ServerFrame
}

// follow connects to p with tok, resuming from at if not nil.
func (p *process) follow(t *testing.T, tok string, at *protocol.Position) *follower {
	t.Helper()
	c, err := wstest.Dial(p.ws, nil)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	c.Timeout = 10 * time.Second
	auth := protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeAuth, Token: tok, Resume: at})
	require.NoError(t, c.WriteText(string(auth)))
	f := &follower{conn: c}
	f.ok = f.next(t)
	require.Equal(t, protocol.TypeAuthOK, f.ok.Type, "%+v", f.ok)
	return f
}

func (f *follower) next(t *testing.T) protocol.ServerFrame {
	t.Helper()
	b, err := f.conn.Next()
	require.NoError(t, err)
	m, err := protocol.DecodeServer(b)
	require.NoError(t, err)
	if m.Type == protocol.TypeMessage && m.Seq != 0 {
		f.stream = append(f.stream, m)
	}
	return m
}

// waitFor bounds until and untilClose: ticks keep coming, so a read
// timeout alone would never end them.
const waitFor = 15 * time.Second

// until reads frames until one for which pred is true, and returns it.
func (f *follower) until(t *testing.T, pred func(protocol.ServerFrame) bool) protocol.ServerFrame {
	t.Helper()
	for end := time.Now().Add(waitFor); time.Now().Before(end); {
		if m := f.next(t); pred(m) {
			return m
		}
	}
	t.Fatalf("no such frame within %v", waitFor)
	return protocol.ServerFrame{}
}

// untilClose reads frames until the server's close frame, and returns it.
func (f *follower) untilClose(t *testing.T) wstest.Close {
	t.Helper()
	for end := time.Now().Add(waitFor); time.Now().Before(end); {
		b, err := f.conn.Next()
		var cr *wstest.CloseReceived
		if errors.As(err, &cr) {
			return cr.Close
		}
		require.NoError(t, err)
		m, err := protocol.DecodeServer(b)
		require.NoError(t, err)
		if m.Type == protocol.TypeMessage && m.Seq != 0 {
			f.stream = append(f.stream, m)
		}
	}
	t.Fatalf("no close within %v", waitFor)
	return wstest.Close{}
}

// position is the last position the connection took: its last stream
// message's, or its auth_ok's.
func (f *follower) position() protocol.Position {
	if n := len(f.stream); n > 0 {
		return protocol.Position{Epoch: f.stream[n-1].Epoch, Seq: f.stream[n-1].Seq}
	}
	return protocol.Position{Epoch: f.ok.Epoch, Seq: f.ok.Seq}
}

// node is the node of the connection's session.
func (f *follower) node() string {
	node, _, _ := strings.Cut(f.ok.Session, ".")
	return node
}

// fromOf is the sender of a chat message, "" for other frames.
func fromOf(f protocol.ServerFrame) string {
	var m chatMessage
	_ = json.Unmarshal(f.Data, &m)
	return m.From
}

// tickFrom is the number of a tick message from node, 0 for other frames.
func tickFrom(f protocol.ServerFrame, node string) int64 {
	var m tickMessage
	_ = json.Unmarshal(f.Data, &m)
	if m.Node != node {
		return 0
	}
	return m.Tick
}
