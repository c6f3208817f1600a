package natsbroker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/broker/brokertest"
	"github.com/wsauth/wsauth/internal/natstest"
	"github.com/wsauth/wsauth/natsbroker"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// Every test shuts its servers down and closes its connections: nothing
// of nats-server's or nats.go's may outlive it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The broker keeps the contract, with a connection of its own per node.
func TestContract(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	brokertest.Run(t, func(t *testing.T) broker.Broker {
		return newBroker(t, s.URL(), natsbroker.Options{})
	})
}

// Publishers on several connections (each its own Broker, so nothing in
// the process serialises them) share one gapless numbering: the
// compare-and-set on the user's last stream sequence refuses all but one
// publish of each Seq, and the losers retry.
func TestConcurrentPublishersCAS(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	const conns, perConn, each = 4, 3, 25
	p := newUser()
	ctx := context.Background()
	var (
		mu      sync.Mutex
		byData  = map[string]protocol.Position{}
		wg      sync.WaitGroup
		brokers []*natsbroker.Broker
		errs    = make(chan error, conns*perConn)
	)
	for c := range conns {
		b := newBroker(t, s.URL(), natsbroker.Options{MaxMessages: conns * perConn * each})
		brokers = append(brokers, b)
		m, _ := join(t, b)
		for g := range perConn {
			wg.Go(func() {
				for i := range each {
					d := fmt.Sprintf(`"%d-%d-%d"`, c, g, i)
					pos, err := m.Publish(ctx, p, json.RawMessage(d))
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					byData[d] = pos
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var seqs []uint64
	var epoch string
	for _, pos := range byData {
		seqs = append(seqs, pos.Seq)
		if epoch != "" && pos.Epoch != epoch {
			t.Fatalf("two epochs: %s and %s", epoch, pos.Epoch)
		}
		epoch = pos.Epoch
	}
	slices.Sort(seqs)
	for i, seq := range seqs {
		require.Equal(t, uint64(i+1), seq, "Seqs are 1..%d without gaps or repeats", len(seqs))
	}
	// What is stored at each Seq is what its Publish was told.
	m, _ := join(t, brokers[0])
	msgs, head, err := m.History(ctx, p, protocol.Position{Epoch: epoch})
	require.NoError(t, err)
	require.Equal(t, protocol.Position{Epoch: epoch, Seq: conns * perConn * each}, head)
	require.Len(t, msgs, conns*perConn*each)
	for i, msg := range msgs {
		require.Equal(t, uint64(i+1), msg.Seq)
		require.Equal(t, msg.Position, byData[string(msg.Data)], "message %s", msg.Data)
	}
	var conflicts uint64
	for _, b := range brokers {
		conflicts += natsbroker.Conflicts(b)
	}
	assert.NotZero(t, conflicts, "no publish lost a compare-and-set: the retry path went untested")
	t.Logf("%d compare-and-set conflicts for %d publishes", conflicts, len(seqs))
}

func lost(t *testing.T, m broker.Member, p session.Principal, after protocol.Position) {
	t.Helper()
	_, _, err := m.History(context.Background(), p, after)
	assert.ErrorIs(t, err, broker.ErrLost, "History after %+v", after)
}

// KeepFor applies when reading: messages older than it are lost for
// resume, but the user's numbering goes on across quiet periods, since
// nothing expires the user's last message.
func TestKeepFor(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	const keep = 300 * time.Millisecond
	m, _ := join(t, newBroker(t, s.URL(), natsbroker.Options{KeepFor: keep}))
	p := newUser()
	ctx := context.Background()
	publish(t, m, p, 3)
	time.Sleep(keep + 50*time.Millisecond)
	head := publish(t, m, p, 2)
	lost(t, m, p, protocol.Position{Epoch: head.Epoch, Seq: 2}) // 3 is too old
	msgs, _, err := m.History(ctx, p, protocol.Position{Epoch: head.Epoch, Seq: 3})
	require.NoError(t, err)
	assert.Len(t, msgs, 2)

	time.Sleep(keep + 50*time.Millisecond) // all five too old now
	lost(t, m, p, protocol.Position{Epoch: head.Epoch, Seq: 4})
	msgs, got, err := m.History(ctx, p, head)
	require.NoError(t, err, "resuming at the head needs no message")
	assert.Empty(t, msgs)
	assert.Equal(t, head, got)
	assert.Equal(t, protocol.Position{Epoch: head.Epoch, Seq: 6}, publish(t, m, p, 1), "a quiet period keeps the numbering")
}

// MaxMessages evicts a user's oldest messages: a resume from before them
// is lost, and the numbering goes on.
func TestMaxMessages(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	m, _ := join(t, newBroker(t, s.URL(), natsbroker.Options{MaxMessages: 4}))
	p := newUser()
	head := publish(t, m, p, 6)
	lost(t, m, p, protocol.Position{Epoch: head.Epoch, Seq: 1})
	msgs, _, err := m.History(context.Background(), p, protocol.Position{Epoch: head.Epoch, Seq: 2})
	require.NoError(t, err)
	require.Len(t, msgs, 4)
	assert.Equal(t, uint64(3), msgs[0].Seq)
	assert.Equal(t, protocol.Position{Epoch: head.Epoch, Seq: 7}, publish(t, m, p, 1))
}

// MaxBytes evicts the stream's oldest messages, whoever's: a user whose
// every message went starts again at Seq 1 in a new epoch, and a resume
// in the old epoch is lost.
func TestMaxBytesRestartsEpoch(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	m, _ := join(t, newBroker(t, s.URL(), natsbroker.Options{MaxBytes: 4096}))
	quiet, busy := newUser(), newUser()
	before := publish(t, m, quiet, 2)
	publish(t, m, busy, 40)
	lost(t, m, quiet, before)
	after := publish(t, m, quiet, 1)
	assert.Equal(t, uint64(1), after.Seq)
	assert.NotEqual(t, before.Epoch, after.Epoch)
	lost(t, m, quiet, protocol.Position{Epoch: before.Epoch, Seq: 1})
}

// Principals may hold any bytes: each has a stream of its own, and what
// comes back (History, deliveries) names it exactly.
func TestAwkwardPrincipals(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	b := newBroker(t, s.URL(), natsbroker.Options{})
	a, _ := join(t, b)
	other, rec := join(t, newBroker(t, s.URL(), natsbroker.Options{}))
	ctx := context.Background()
	principals := []session.Principal{
		{Issuer: "https://idp.example/", Subject: "a.b.c"},
		{Issuer: "https://idp.example/", Subject: "*"},
		{Issuer: "https://idp.example/", Subject: ">"},
		{Issuer: "https://idp.example/", Subject: "with space\tand tab"},
		{Issuer: "https://idp.example/", Subject: "line\r\nWsauth-Seq: 99"},
		{Issuer: "https://idp.example/", Subject: "ünïcødé ✓"},
		{Issuer: "https://idp.example/", Subject: "\xff\xfe not UTF-8"},
		{Issuer: "https://idp.example/", Subject: ""},
		{Issuer: "", Subject: ""},
		{Issuer: "a\x00", Subject: "b"}, // and the next: the same bytes joined
		{Issuer: "a", Subject: "\x00b"},
		{Issuer: "ab", Subject: ""},
		{Issuer: "a", Subject: "b"},
	}
	for _, p := range principals {
		require.NoError(t, other.Interest(ctx, p, true))
	}
	for i, p := range principals {
		pos, err := a.Publish(ctx, p, data(i))
		require.NoError(t, err, "%q", p)
		require.Equal(t, uint64(1), pos.Seq, "%q shares a stream", p)
	}
	for i, p := range principals {
		_, _, err := a.History(ctx, p, protocol.Position{Epoch: "x"})
		require.ErrorIs(t, err, broker.ErrLost)
		_, head, err := a.History(ctx, p, protocol.Position{})
		require.NoError(t, err)
		msgs, _, err := a.History(ctx, p, protocol.Position{Epoch: head.Epoch})
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		assert.Equal(t, p, msgs[0].Principal)
		assert.JSONEq(t, string(data(i)), string(msgs[0].Data))
		rec.WaitDelivered(t, p, 1)
		got := rec.Delivered(p)
		assert.Len(t, got, 1, "%q", p)
		assert.Equal(t, msgs[0].Position, got[0].Position)
	}
	require.NoError(t, a.Revoke(ctx, broker.Revocation{Principal: principals[4], TokenID: "jti\x00.*"}))
	eventually(t, "revocation", func() bool { return len(rec.Revoked()) == 1 })
	assert.Equal(t, principals[4], rec.Revoked()[0].Principal)
	assert.Equal(t, "jti\x00.*", rec.Revoked()[0].TokenID)
}

// Send answers at once: ErrNoSession for a node that is not there (no
// responder) or is this one, ErrUnavailable when the node does not answer
// within Options.Timeout.
func TestSend(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	// Timeout is long enough that "at once" and "at Timeout" stay apart on
	// a loaded machine.
	a, _ := join(t, newBroker(t, s.URL(), natsbroker.Options{Timeout: time.Second}))
	ctx := context.Background()
	for _, node := range []string{"no-such-node", "bad.name", "*", "", thisNode(a)} {
		start := time.Now()
		err := a.Send(ctx, node, "s1", json.RawMessage(`1`))
		assert.ErrorIs(t, err, broker.ErrNoSession, "node %q", node)
		assert.Less(t, time.Since(start), 500*time.Millisecond, "node %q: not at once", node)
	}
	slow := &slowSend{Recorder: brokertest.Recorder{Node: "slow-node", Sessions: map[string]bool{"s1": true}}, release: make(chan struct{})}
	b := newBroker(t, s.URL(), natsbroker.Options{})
	m, err := b.Join(ctx, slow.Node, slow)
	require.NoError(t, err)
	err = a.Send(ctx, slow.Node, "s1", json.RawMessage(`1`))
	assert.ErrorIs(t, err, broker.ErrUnavailable)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "the caller's ctx did not end")
	close(slow.release)
	require.NoError(t, m.Leave())
}

// thisNode returns the name of m's node, read from its own Send.
func thisNode(m broker.Member) string { return natsbroker.Node(m) }

type slowSend struct {
	brokertest.Recorder
	entered chan struct{} // if not nil, told when Send starts
	release chan struct{}
}

func (s *slowSend) Send(id string, data json.RawMessage) bool {
	if s.entered != nil {
		s.entered <- struct{}{}
	}
	<-s.release
	return s.Recorder.Send(id, data)
}

// A Handler slow with one user's messages delays no other user's.
func TestSlowHandler(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	a, _ := join(t, newBroker(t, s.URL(), natsbroker.Options{}))
	slowUser, quickUser := newUser(), newUser()
	h := &slowDeliver{Recorder: brokertest.Recorder{Node: "slow-deliver", Sessions: map[string]bool{}}, slow: slowUser, release: make(chan struct{})}
	m, err := newBroker(t, s.URL(), natsbroker.Options{}).Join(context.Background(), h.Node, h)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, m.Interest(ctx, slowUser, true))
	require.NoError(t, m.Interest(ctx, quickUser, true))
	publish(t, a, slowUser, 3)
	publish(t, a, quickUser, 50)
	h.WaitDelivered(t, quickUser, 50)
	assert.Empty(t, h.Delivered(slowUser))
	close(h.release)
	h.WaitDelivered(t, slowUser, 3)
	require.NoError(t, m.Leave())
}

type slowDeliver struct {
	brokertest.Recorder
	slow    session.Principal
	release chan struct{}
}

func (s *slowDeliver) Deliver(m broker.Message) {
	if m.Principal == s.slow {
		<-s.release
	}
	s.Recorder.Deliver(m)
}

// A member that left refuses every call with ErrUnavailable.
func TestLeft(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	m, _ := join(t, newBroker(t, s.URL(), natsbroker.Options{}))
	require.NoError(t, m.Leave())
	require.NoError(t, m.Leave(), "Leave twice")
	ctx := context.Background()
	p := newUser()
	_, err := m.Publish(ctx, p, data(1))
	assert.ErrorIs(t, err, broker.ErrUnavailable)
	_, _, err = m.History(ctx, p, protocol.Position{})
	assert.ErrorIs(t, err, broker.ErrUnavailable)
	assert.ErrorIs(t, m.Interest(ctx, p, true), broker.ErrUnavailable)
	assert.ErrorIs(t, m.Broadcast(ctx, data(1)), broker.ErrUnavailable)
	assert.ErrorIs(t, m.Revoke(ctx, broker.Revocation{Principal: p}), broker.ErrUnavailable)
}

// New and Join check what they are given.
func TestOptions(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	ctx := context.Background()
	nc := connect(t, s.URL())
	for _, name := range []string{"a.b", "with space", "*", ">", "ü"} {
		_, err := natsbroker.New(ctx, nc, natsbroker.Options{Stream: name})
		assert.Error(t, err, "stream %q", name)
	}
	b, err := natsbroker.New(ctx, nc, natsbroker.Options{Stream: "Other_stream-1"})
	require.NoError(t, err)
	for _, node := range []string{"", "a.b", "a b", "*", ">"} {
		_, err := b.Join(ctx, node, &brokertest.Recorder{})
		assert.Error(t, err, "node %q", node)
	}
	m, err := b.Join(ctx, "nœud-1", &brokertest.Recorder{})
	require.NoError(t, err, "letters are letters")
	require.NoError(t, m.Leave())

	closed := connect(t, s.URL())
	closed.Close()
	_, err = natsbroker.New(ctx, closed, natsbroker.Options{})
	assert.ErrorIs(t, err, broker.ErrUnavailable)
	_, err = natsbroker.New(ctx, nil, natsbroker.Options{})
	assert.Error(t, err)
}

func TestErrorsWrap(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	m, _ := join(t, newBroker(t, s.URL(), natsbroker.Options{}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := m.Publish(ctx, newUser(), data(1))
	assert.True(t, errors.Is(err, context.Canceled), "%v", err)
}
