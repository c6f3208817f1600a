package natsbroker_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/broker/brokertest"
	"github.com/wsauth/wsauth/internal/natstest"
	"github.com/wsauth/wsauth/natsbroker"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// prompt is how long a call may take to say ErrUnavailable while NATS is
// known to be down: far below Options.Timeout (5s).
const prompt = 500 * time.Millisecond

// unavailable checks that every call of m fails with ErrUnavailable, each
// promptly.
func unavailable(t *testing.T, m broker.Member, p session.Principal) {
	t.Helper()
	ctx := context.Background()
	calls := map[string]func() error{
		"Publish":   func() error { _, err := m.Publish(ctx, p, data(0)); return err },
		"History":   func() error { _, _, err := m.History(ctx, p, protocol.Position{}); return err },
		"Broadcast": func() error { return m.Broadcast(ctx, data(0)) },
		"Send":      func() error { return m.Send(ctx, "some-node", "s", data(0)) },
		"Revoke":    func() error { return m.Revoke(ctx, broker.Revocation{Principal: p}) },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		assert.ErrorIs(t, err, broker.ErrUnavailable, name)
		assert.Less(t, time.Since(start), prompt, name)
	}
}

// The NATS server stops mid-traffic and starts again on the same store:
// while it is down every call fails promptly with ErrUnavailable; once it
// is back, publishes go on with the same numbering (no message lost or
// numbered twice), and interest delivers again, with no call from the
// application.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	opts := natsbroker.Options{MaxMessages: 100_000}
	a, _ := join(t, newBroker(t, s.URL(), opts))
	b, rec := join(t, newBroker(t, s.URL(), opts))
	p := newUser()
	ctx := context.Background()
	require.NoError(t, b.Interest(ctx, p, true))

	type result struct {
		pos  protocol.Position
		data string
		err  error
		took time.Duration
	}
	var (
		mu      sync.Mutex
		results []result
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	count := func(ok bool) (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range results {
			if (r.err == nil) == ok {
				n++
			}
		}
		return n
	}
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			pos, err := a.Publish(ctx, p, data(i))
			mu.Lock()
			results = append(results, result{pos, string(data(i)), err, time.Since(start)})
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	})
	eventually(t, "20 publishes before the stop", func() bool { return count(true) >= 20 })
	s.Stop()
	eventually(t, "a failed publish", func() bool { return count(false) > 0 })
	unavailable(t, a, p)
	unavailable(t, b, p)
	down := count(true)

	s.Start()
	eventually(t, "20 publishes after the restart", func() bool { return count(true) >= down+20 })
	close(stop)
	wg.Wait()

	var ok []result
	var ambiguous int // failed, but perhaps stored: its acknowledgement lost
	for _, r := range results {
		// One was in flight when the server stopped: it ends when the
		// connection is seen down, not at Options.Timeout.
		require.Less(t, r.took, 2*prompt, "a publish blocked")
		switch {
		case r.err == nil:
			ok = append(ok, r)
		case !errors.Is(r.err, broker.ErrUnavailable):
			t.Fatalf("a publish failed with %v, not ErrUnavailable", r.err)
		case len(ok) == down:
			ambiguous = 1
		}
	}
	epoch := ok[0].pos.Epoch
	for i, r := range ok {
		require.Equal(t, epoch, r.pos.Epoch, "the epoch survives the restart")
		if i > 0 && i != down {
			require.Equal(t, ok[i-1].pos.Seq+1, r.pos.Seq)
		}
	}
	gap := ok[down].pos.Seq - ok[down-1].pos.Seq
	assert.True(t, gap == 1 || gap == 1+uint64(ambiguous), "Seq %d before the stop, %d after", ok[down-1].pos.Seq, ok[down].pos.Seq)

	msgs, head, err := a.History(ctx, p, protocol.Position{Epoch: epoch})
	require.NoError(t, err)
	require.Equal(t, ok[len(ok)-1].pos, head)
	stored := map[uint64]string{}
	for i, m := range msgs {
		require.Equal(t, uint64(i+1), m.Seq, "the stream has no gap")
		stored[m.Seq] = string(m.Data)
	}
	for _, r := range ok {
		require.Equal(t, r.data, stored[r.pos.Seq], "Seq %d", r.pos.Seq)
	}
	// b's subscription is back: it gets what was published after the restart.
	last := ok[len(ok)-1].pos.Seq
	eventually(t, "a delivery after the restart", func() bool {
		for _, m := range rec.Delivered(p) {
			if m.Seq == last {
				return true
			}
		}
		return false
	})
}

// A member cut off from NATS (the others still connected) gets, once it
// is back, the messages of the users it has interest in and the
// revocations that it missed; interest it declared while cut off works.
func TestCutOffMemberCatchesUp(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	px := newProxy(t, s.URL()[len("nats://"):])
	a, _ := join(t, newBroker(t, s.URL(), natsbroker.Options{}))
	ncB := connect(t, px.url())
	bb, err := natsbroker.New(context.Background(), ncB, natsbroker.Options{})
	require.NoError(t, err)
	b, rec := join(t, bb)
	ctx := context.Background()
	p, later, revoked := newUser(), newUser(), newUser()
	require.NoError(t, b.Interest(ctx, p, true))
	publish(t, a, p, 1)
	rec.WaitDelivered(t, p, 1)

	px.setCut(true)
	eventually(t, "b cut off", func() bool { return !ncB.IsConnected() })
	unavailable(t, b, p)
	require.NoError(t, b.Interest(ctx, later, true), "interest while cut off")
	publish(t, a, p, 2)
	publish(t, a, later, 1)
	require.NoError(t, a.Revoke(ctx, broker.Revocation{Principal: revoked}))
	require.NoError(t, a.Broadcast(ctx, json.RawMessage(`"lost"`)), "at most once: b may miss it")

	px.setCut(false)
	rec.WaitDelivered(t, p, 3)
	rec.WaitDelivered(t, later, 1)
	eventually(t, "the missed revocation", func() bool { return len(rec.Revoked()) > 0 })
	assert.Equal(t, revoked, rec.Revoked()[0].Principal)
	// And live again.
	pos := publish(t, a, later, 1)
	eventually(t, "a live delivery", func() bool {
		for _, m := range rec.Delivered(later) {
			if m.Seq == pos.Seq {
				return true
			}
		}
		return false
	})
}

// A request in flight when the connection goes down ends then, with
// ErrUnavailable, not when Options.Timeout does.
func TestInFlightEndsWhenDown(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	a, _ := join(t, newBroker(t, s.URL(), natsbroker.Options{}))
	slow := &slowSend{
		Recorder: brokertest.Recorder{Node: "slow-in-flight", Sessions: map[string]bool{"s1": true}},
		entered:  make(chan struct{}, 1),
		release:  make(chan struct{}),
	}
	m, err := newBroker(t, s.URL(), natsbroker.Options{}).Join(context.Background(), slow.Node, slow)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.Send(context.Background(), slow.Node, "s1", data(1)) }()
	<-slow.entered
	s.Stop()
	start := time.Now()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, broker.ErrUnavailable)
		assert.Less(t, time.Since(start), prompt)
	case <-time.After(10 * time.Second):
		t.Fatal("Send still waiting 10s after the server stopped")
	}
	close(slow.release)
	require.NoError(t, m.Leave())
}
