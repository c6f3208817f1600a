package brokertest

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// Recorder is a broker.Handler that records what it receives.
type Recorder struct {
	Node     string          // the node's name
	Sessions map[string]bool // the sessions Send finds; guard with AddSession

	mu         sync.Mutex
	delivered  []broker.Message
	broadcasts []json.RawMessage
	sent       []Sent
	revoked    []broker.Revocation
}

// Sent is a message for one session.
type Sent struct {
	Session string
	Data    json.RawMessage
}

// Message builds a broker.Message.
func Message(p session.Principal, epoch string, seq uint64, data json.RawMessage) broker.Message {
	return broker.Message{Principal: p, Position: protocol.Position{Epoch: epoch, Seq: seq}, Data: data}
}

// AddSession makes Send find id.
func (r *Recorder) AddSession(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Sessions[id] = true
}

// Deliver implements broker.Handler.
func (r *Recorder) Deliver(m broker.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered = append(r.delivered, m)
}

// Broadcast implements broker.Handler.
func (r *Recorder) Broadcast(data json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.broadcasts = append(r.broadcasts, data)
}

// Send implements broker.Handler.
func (r *Recorder) Send(id string, data json.RawMessage) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.Sessions[id] {
		return false
	}
	r.sent = append(r.sent, Sent{id, data})
	return true
}

// Revoke implements broker.Handler.
func (r *Recorder) Revoke(rv broker.Revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked = append(r.revoked, rv)
}

// Delivered returns the messages of p delivered so far, in arrival order.
func (r *Recorder) Delivered(p session.Principal) []broker.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []broker.Message
	for _, m := range r.delivered {
		if m.Principal == p {
			out = append(out, m)
		}
	}
	return out
}

// Broadcasts returns the broadcasts received so far.
func (r *Recorder) Broadcasts() []json.RawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]json.RawMessage(nil), r.broadcasts...)
}

// Sent returns the messages for sessions received so far.
func (r *Recorder) Sent() []Sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Sent(nil), r.sent...)
}

// Revoked returns the revocations received so far.
func (r *Recorder) Revoked() []broker.Revocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.Revocation(nil), r.revoked...)
}

// RevokedFor returns the revocations of p received so far.
func (r *Recorder) RevokedFor(p session.Principal) []broker.Revocation {
	var out []broker.Revocation
	for _, rv := range r.Revoked() {
		if rv.Principal == p {
			out = append(out, rv)
		}
	}
	return out
}

// WaitDelivered waits until n distinct messages of p have arrived.
func (r *Recorder) WaitDelivered(t *testing.T, p session.Principal, n int) {
	t.Helper()
	r.Wait(t, func() bool {
		seen := map[uint64]bool{}
		for _, m := range r.Delivered(p) {
			seen[m.Seq] = true
		}
		return len(seen) >= n
	}, "delivered messages")
}

// Wait polls cond for up to 10 seconds.
func (r *Recorder) Wait(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("node %s: no %s within 10s", r.Node, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Equal reports whether two messages are the same, data compared as bytes.
func equal(a, b broker.Message) bool {
	return a.Principal == b.Principal && a.Position == b.Position && bytes.Equal(a.Data, b.Data)
}
