// Package brokertest checks that a broker.Broker keeps the contract that
// wsauth relies on. A broker's tests call Run with a function that returns
// a Broker of one cluster for each node (the same value each time, or a new
// connection each time: both are allowed).
package brokertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// Run runs the contract's tests. Each test joins fresh nodes (named
// uniquely) to the cluster that newBroker's Brokers belong to, and uses
// users of its own, so the tests may share one cluster and run in
// parallel.
func Run(t *testing.T, newBroker func(t *testing.T) broker.Broker) {
	c := &cluster{newBroker: newBroker}
	t.Run("publish numbers a stream without gaps", c.testPublish)
	t.Run("history", c.testHistory)
	t.Run("interest", c.testInterest)
	t.Run("concurrent publishers share one numbering", c.testConcurrent)
	t.Run("broadcast, send and revoke", c.testSignals)
	t.Run("revocations are kept for later members", c.testRevocationsKept)
	t.Run("values taken once", c.testOnce)
	t.Run("leave", c.testLeave)
}

type cluster struct {
	newBroker func(t *testing.T) broker.Broker
	mu        sync.Mutex
	n         int
}

// user returns a principal no other test uses.
func (c *cluster) user(t *testing.T) session.Principal {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return session.Principal{Issuer: "https://brokertest.example/" + t.Name(), Subject: fmt.Sprintf("user %d/ü.*>", c.n)}
}

// join makes a new node and returns its member and what it receives.
func (c *cluster) join(t *testing.T) (broker.Member, *Recorder) {
	t.Helper()
	c.mu.Lock()
	c.n++
	name := fmt.Sprintf("brokertest-%d-%d", time.Now().UnixNano()%1e6, c.n)
	c.mu.Unlock()
	rec := &Recorder{Node: name, Sessions: map[string]bool{}}
	m, err := c.newBroker(t).Join(context.Background(), name, rec)
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	t.Cleanup(func() { _ = m.Leave() })
	return m, rec
}

func data(i int) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)) }

func (c *cluster) testPublish(t *testing.T) {
	t.Parallel()
	a, _ := c.join(t)
	p := c.user(t)
	ctx := context.Background()
	_, head, err := a.History(ctx, p, protocol.Position{})
	must(t, err)
	if head != (protocol.Position{}) {
		t.Fatalf("head of a new stream: %+v, want zero", head)
	}
	var epoch string
	for i := 1; i <= 5; i++ {
		pos, err := a.Publish(ctx, p, data(i))
		must(t, err)
		if pos.Seq != uint64(i) || pos.Epoch == "" || (epoch != "" && pos.Epoch != epoch) {
			t.Fatalf("publish %d: position %+v (epoch before %q)", i, pos, epoch)
		}
		epoch = pos.Epoch
	}
	_, head, err = a.History(ctx, p, protocol.Position{})
	must(t, err)
	if head != (protocol.Position{Epoch: epoch, Seq: 5}) {
		t.Fatalf("head %+v, want %s/5", head, epoch)
	}
	// Another user's stream is numbered on its own.
	pos, err := a.Publish(ctx, c.user(t), data(1))
	must(t, err)
	if pos.Seq != 1 {
		t.Fatalf("another user's first message has Seq %d", pos.Seq)
	}
}

func (c *cluster) testHistory(t *testing.T) {
	t.Parallel()
	a, _ := c.join(t)
	b, _ := c.join(t)
	p := c.user(t)
	ctx := context.Background()
	var epoch string
	for i := 1; i <= 10; i++ {
		pos, err := a.Publish(ctx, p, data(i))
		must(t, err)
		epoch = pos.Epoch
	}
	for _, from := range []broker.Member{a, b} { // any member reads any stream
		msgs, head, err := from.History(ctx, p, protocol.Position{Epoch: epoch, Seq: 6})
		must(t, err)
		if head.Seq != 10 || len(msgs) != 4 {
			t.Fatalf("after 6: head %+v, %d messages", head, len(msgs))
		}
		for i, m := range msgs {
			want := Message(p, epoch, uint64(7+i), data(7+i))
			if !equal(m, want) {
				t.Fatalf("message %d: %+v, want %+v", i, m, want)
			}
		}
		msgs, _, err = from.History(ctx, p, protocol.Position{Epoch: epoch, Seq: 10})
		must(t, err)
		if len(msgs) != 0 {
			t.Fatalf("after the head: %d messages", len(msgs))
		}
		msgs, _, err = from.History(ctx, p, protocol.Position{Epoch: epoch})
		must(t, err)
		if len(msgs) != 10 {
			t.Fatalf("after 0: %d messages", len(msgs))
		}
		for _, lost := range []protocol.Position{{Epoch: epoch, Seq: 11}, {Epoch: "another epoch", Seq: 3}} {
			if _, _, err := from.History(ctx, p, lost); !errors.Is(err, broker.ErrLost) {
				t.Fatalf("History after %+v: %v, want ErrLost", lost, err)
			}
		}
	}
}

func (c *cluster) testInterest(t *testing.T) {
	t.Parallel()
	a, _ := c.join(t)
	b, recB := c.join(t)
	p, other := c.user(t), c.user(t)
	ctx := context.Background()
	must(t, b.Interest(ctx, p, true))
	var want []broker.Message
	for i := 1; i <= 20; i++ {
		pos, err := a.Publish(ctx, p, data(i))
		must(t, err)
		want = append(want, Message(p, pos.Epoch, pos.Seq, data(i)))
		_, err = a.Publish(ctx, other, data(i))
		must(t, err)
	}
	recB.WaitDelivered(t, p, 20)
	got := recB.Delivered(p)
	slices.SortFunc(got, func(x, y broker.Message) int { return int(x.Seq) - int(y.Seq) })
	got = slices.CompactFunc(got, func(x, y broker.Message) bool { return x.Seq == y.Seq }) // allowed twice
	if len(got) != len(want) {
		t.Fatalf("delivered %d distinct messages, want %d", len(got), len(want))
	}
	for i := range want {
		if !equal(got[i], want[i]) {
			t.Fatalf("message %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if n := len(recB.Delivered(other)); n != 0 {
		t.Fatalf("%d messages of a user without interest were delivered", n)
	}
	must(t, b.Interest(ctx, p, false))
	_, err := a.Publish(ctx, p, data(99))
	must(t, err)
	// Publish a message to a user b has interest in, as a marker: once it
	// arrives, anything sent to p before it would have too.
	marker := c.user(t)
	must(t, b.Interest(ctx, marker, true))
	_, err = a.Publish(ctx, marker, data(0))
	must(t, err)
	recB.WaitDelivered(t, marker, 1)
	for _, m := range recB.Delivered(p) {
		if m.Seq == 21 {
			t.Fatal("a message was delivered after the interest was withdrawn")
		}
	}
}

func (c *cluster) testConcurrent(t *testing.T) {
	t.Parallel()
	const members, each = 3, 40
	p := c.user(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	seqs := make(chan uint64, members*each)
	errs := make(chan error, members)
	for range members {
		m, _ := c.join(t)
		wg.Go(func() {
			for i := range each {
				pos, err := m.Publish(ctx, p, data(i))
				if err != nil {
					errs <- err
					return
				}
				seqs <- pos.Seq
			}
		})
	}
	wg.Wait()
	close(seqs)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var all []uint64
	for s := range seqs {
		all = append(all, s)
	}
	slices.Sort(all)
	for i, s := range all {
		if s != uint64(i+1) {
			t.Fatalf("seqs are not 1..%d without gaps or repeats: %v", members*each, all)
		}
	}
}

func (c *cluster) testSignals(t *testing.T) {
	t.Parallel()
	a, recA := c.join(t)
	_, recB := c.join(t)
	ctx := context.Background()
	recB.AddSession("s1")
	// Other tests share the cluster and broadcast too: this one's payloads
	// and user are its own.
	all := json.RawMessage(fmt.Sprintf(`"all %s"`, recB.Node))
	must(t, a.Broadcast(ctx, all))
	must(t, a.Send(ctx, recB.Node, "s1", json.RawMessage(`"one"`)))
	if err := a.Send(ctx, recB.Node, "nobody", json.RawMessage(`1`)); !errors.Is(err, broker.ErrNoSession) {
		t.Fatalf("Send to an unknown session: %v, want ErrNoSession", err)
	}
	if err := a.Send(ctx, "no-such-node", "s1", json.RawMessage(`1`)); !errors.Is(err, broker.ErrNoSession) {
		t.Fatalf("Send to an unknown node: %v, want ErrNoSession", err)
	}
	p := c.user(t)
	at := time.Now().Truncate(time.Millisecond)
	must(t, a.Revoke(ctx, broker.Revocation{Principal: p, TokenID: "jti-1", At: at}))
	recB.Wait(t, func() bool {
		return count(recB.Broadcasts(), all) == 1 && len(recB.Sent()) == 1 && len(recB.RevokedFor(p)) == 1
	}, "a broadcast, a send and a revoke")
	if got := recB.Sent()[0]; got.Session != "s1" || string(got.Data) != `"one"` {
		t.Fatalf("send %+v", got)
	}
	if got := recB.RevokedFor(p)[0]; got.TokenID != "jti-1" || !got.At.Equal(at) {
		t.Fatalf("revocation %+v, want jti-1 at %v", got, at)
	}
	if count(recA.Broadcasts(), all) != 0 || len(recA.RevokedFor(p)) != 0 {
		t.Fatal("a member got its own broadcast or revoke")
	}
}

func (c *cluster) testRevocationsKept(t *testing.T) {
	t.Parallel()
	a, _ := c.join(t)
	p := c.user(t)
	must(t, a.Revoke(context.Background(), broker.Revocation{Principal: p}))
	// A node that joins later (a new node, or one that restarted) gets it
	// before Join returns.
	_, late := c.join(t)
	got := late.RevokedFor(p)
	if len(got) == 0 {
		t.Fatal("a member that joined after a revocation did not get it")
	}
	if got[0].At.IsZero() || time.Since(got[0].At) > time.Minute {
		t.Fatalf("revocation time %v", got[0].At)
	}
}

// count returns how many of msgs are data.
func count(msgs []json.RawMessage, data json.RawMessage) int {
	n := 0
	for _, m := range msgs {
		if string(m) == string(data) {
			n++
		}
	}
	return n
}

func (c *cluster) testLeave(t *testing.T) {
	t.Parallel()
	a, _ := c.join(t)
	b, recB := c.join(t)
	p := c.user(t)
	ctx := context.Background()
	must(t, b.Interest(ctx, p, true))
	must(t, b.Leave())
	_, err := a.Publish(ctx, p, data(1))
	must(t, err)
	must(t, a.Broadcast(ctx, json.RawMessage(`"after leave"`)))
	time.Sleep(50 * time.Millisecond) // time for a wrong delivery to show
	if n := len(recB.Delivered(p)) + count(recB.Broadcasts(), json.RawMessage(`"after leave"`)); n != 0 {
		t.Fatalf("a member that left received %d messages", n)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) testOnce(t *testing.T) {
	t.Parallel()
	a, _ := c.join(t)
	ctx := context.Background()
	c.mu.Lock()
	c.n++
	key := fmt.Sprintf("key-%d-%d", time.Now().UnixNano(), c.n)
	c.mu.Unlock()
	must(t, a.PutOnce(ctx, key, []byte("v1"), time.Minute))
	const takers = 4
	got := make(chan []byte, takers)
	var wg sync.WaitGroup
	for range takers {
		m, _ := c.join(t)
		wg.Go(func() {
			v, err := m.TakeOnce(ctx, key)
			switch {
			case err == nil:
				got <- v
			case !errors.Is(err, broker.ErrNotFound):
				t.Errorf("TakeOnce: %v", err)
			}
		})
	}
	wg.Wait()
	close(got)
	var wins [][]byte
	for v := range got {
		wins = append(wins, v)
	}
	if len(wins) != 1 || string(wins[0]) != "v1" {
		t.Fatalf("concurrent takes got %q, want exactly one v1", wins)
	}
	if _, err := a.TakeOnce(ctx, key); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("a second take: %v, want ErrNotFound", err)
	}
	if _, err := a.TakeOnce(ctx, key+"-never"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("a key never put: %v, want ErrNotFound", err)
	}
}
