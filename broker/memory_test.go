package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/broker/brokertest"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
	"github.com/wsauth/wsauth/wsauthtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMemoryContract(t *testing.T) {
	t.Parallel()
	m := broker.NewMemory(broker.MemoryOptions{})
	brokertest.Run(t, func(*testing.T) broker.Broker { return m })
}

func join(t *testing.T, b broker.Broker) broker.Member {
	t.Helper()
	m, err := b.Join(context.Background(), fmt.Sprintf("n%d", time.Now().UnixNano()), &brokertest.Recorder{Sessions: map[string]bool{}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Leave() })
	return m
}

var alice = session.Principal{Issuer: "https://idp.example/", Subject: "alice"}

func publish(t *testing.T, m broker.Member, p session.Principal, n int, size int) protocol.Position {
	t.Helper()
	var pos protocol.Position
	for range n {
		var err error
		pos, err = m.Publish(context.Background(), p, json.RawMessage(`"`+strings.Repeat("x", size)+`"`))
		require.NoError(t, err)
	}
	return pos
}

// TestMemoryBounds: what a Memory keeps is bounded in time, per user in
// messages and bytes, and in all; a bound drops the oldest messages first
// and keeps the numbering, so a later resume from before them is told it
// lost them rather than handed the wrong ones.
func TestMemoryBounds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lost := func(t *testing.T, m broker.Member, p session.Principal, after protocol.Position) {
		t.Helper()
		_, _, err := m.History(ctx, p, after)
		assert.ErrorIs(t, err, broker.ErrLost)
	}
	t.Run("KeepFor", func(t *testing.T) {
		t.Parallel()
		clock := wsauthtest.NewClock(time.Unix(1_900_000_000, 0))
		m := join(t, broker.NewMemory(broker.MemoryOptions{KeepFor: time.Minute, Now: clock.Now}))
		publish(t, m, alice, 3, 1)
		clock.Advance(30 * time.Second)
		head := publish(t, m, alice, 2, 1)
		clock.Advance(31 * time.Second) // the first three are older than a minute
		lost(t, m, alice, protocol.Position{Epoch: head.Epoch, Seq: 2})
		msgs, _, err := m.History(ctx, alice, protocol.Position{Epoch: head.Epoch, Seq: 3})
		require.NoError(t, err)
		assert.Len(t, msgs, 2)
		next := publish(t, m, alice, 1, 1)
		assert.Equal(t, protocol.Position{Epoch: head.Epoch, Seq: 6}, next, "expiry keeps the numbering")
	})
	t.Run("MaxMessages and MaxBytes per user", func(t *testing.T) {
		t.Parallel()
		m := join(t, broker.NewMemory(broker.MemoryOptions{MaxMessages: 4, MaxBytes: 100}))
		head := publish(t, m, alice, 6, 1)
		lost(t, m, alice, protocol.Position{Epoch: head.Epoch, Seq: 1})
		msgs, _, err := m.History(ctx, alice, protocol.Position{Epoch: head.Epoch, Seq: 2})
		require.NoError(t, err)
		assert.Len(t, msgs, 4)
		head = publish(t, m, alice, 3, 40) // 42 bytes each: two fit in 100
		msgs, _, err = m.History(ctx, alice, protocol.Position{Epoch: head.Epoch, Seq: head.Seq - 2})
		require.NoError(t, err)
		assert.Len(t, msgs, 2)
		lost(t, m, alice, protocol.Position{Epoch: head.Epoch, Seq: head.Seq - 3})
	})
	t.Run("MaxTotalBytes drops the user written to longest ago first", func(t *testing.T) {
		t.Parallel()
		m := join(t, broker.NewMemory(broker.MemoryOptions{MaxTotalBytes: 1000}))
		bob := session.Principal{Issuer: alice.Issuer, Subject: "bob"}
		a := publish(t, m, alice, 5, 98) // 500 bytes
		b := publish(t, m, bob, 6, 98)   // 600 more: alice's go
		lost(t, m, alice, protocol.Position{Epoch: a.Epoch})
		msgs, _, err := m.History(ctx, bob, protocol.Position{Epoch: b.Epoch})
		require.NoError(t, err)
		assert.Len(t, msgs, 6)
		assert.Equal(t, a.Seq+1, publish(t, m, alice, 1, 1).Seq, "alice's numbering goes on")
	})
	t.Run("MaxUsers starts a dropped user's stream in a new epoch", func(t *testing.T) {
		t.Parallel()
		m := join(t, broker.NewMemory(broker.MemoryOptions{MaxUsers: 3}))
		first := publish(t, m, alice, 2, 1)
		for i := range 3 {
			publish(t, m, session.Principal{Issuer: alice.Issuer, Subject: fmt.Sprint(i)}, 1, 1)
		}
		lost(t, m, alice, first)
		again := publish(t, m, alice, 1, 1)
		assert.Equal(t, uint64(1), again.Seq)
		assert.NotEqual(t, first.Epoch, again.Epoch)
		lost(t, m, alice, protocol.Position{Epoch: first.Epoch, Seq: 1})
	})
}

// A member that left can publish nothing more.
func TestMemoryLeft(t *testing.T) {
	t.Parallel()
	m, err := broker.NewMemory(broker.MemoryOptions{}).Join(context.Background(), "n", &brokertest.Recorder{})
	require.NoError(t, err)
	require.NoError(t, m.Leave())
	_, err = m.Publish(context.Background(), alice, json.RawMessage(`1`))
	assert.True(t, errors.Is(err, broker.ErrUnavailable))
}

// A value put once is gone when its ttl has passed.
func TestMemoryOnceExpires(t *testing.T) {
	t.Parallel()
	clock := wsauthtest.NewClock(time.Unix(1_900_000_000, 0))
	m := join(t, broker.NewMemory(broker.MemoryOptions{Now: clock.Now}))
	ctx := context.Background()
	require.NoError(t, m.PutOnce(ctx, "k", []byte("v"), 30*time.Second))
	clock.Advance(30 * time.Second)
	_, err := m.TakeOnce(ctx, "k")
	assert.ErrorIs(t, err, broker.ErrNotFound)
}
