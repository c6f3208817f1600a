package natsbroker

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsauth/wsauth/broker"
)

// Health reports whether b can reach NATS: nil while its connection is
// up, and an error wrapping broker.ErrUnavailable, with the connection's
// status, while it is down or reconnecting (or closed). It does not block.
func (b *Broker) Health() error {
	if b.nc.IsConnected() {
		return nil
	}
	return fmt.Errorf("natsbroker: %w: not connected to NATS (%s)", broker.ErrUnavailable, b.nc.Status())
}

// Health is Broker.Health for this node, which also fails once it has
// left. A wsauth.Server's Ready calls it: the member is a
// wsauth.HealthChecker.
func (m *member) Health() error {
	if m.left.Load() {
		return errLeft
	}
	return m.b.Health()
}

// watch follows the connection's state for m until Leave. While the
// connection is down it ends the requests in flight (op's contexts); once
// it is back (nats.go has subscribed again by then) it catches up with
// what m missed meanwhile: the revocations, and the messages of the users
// it has interest in.
func (m *member) watch() {
	defer close(m.done)
	var downSince time.Time // zero: nothing to catch up with
	if !m.b.nc.IsConnected() {
		downSince = time.Now()
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := 50 * time.Millisecond
	for {
		select {
		case _, ok := <-m.status:
			if !ok {
				return
			}
		case <-retry.C:
		case <-m.ctx.Done():
			return
		}
		if !m.b.nc.IsConnected() {
			if downSince.IsZero() {
				downSince = time.Now()
			}
			m.mu.Lock()
			m.markDown()
			m.mu.Unlock()
			continue
		}
		m.mu.Lock()
		if m.up.Err() != nil {
			m.up, m.markDown = context.WithCancel(context.Background())
		}
		m.mu.Unlock()
		if downSince.IsZero() {
			continue
		}
		if err := m.catchUp(downSince.Add(-catchUpSlack)); err != nil {
			// JetStream may need a moment after the connection (a stream
			// leader to elect): try again.
			retry.Reset(backoff)
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		downSince, backoff = time.Time{}, 50*time.Millisecond
	}
}

// catchUp hands m's Handler the revocations and the messages of the users
// it has interest in stored since since, but its own. Some it may have had
// already: a Handler orders messages by Seq and drops those it has.
func (m *member) catchUp(since time.Time) error {
	err := m.scan("revocations", m.b.revokePrefix+"*", since, 256, func(r rawMsg) {
		rv, ok := decodeRevocation(r.Header)
		if ok && r.Header.Get(hdrNode) != m.node {
			m.deliver(func(h broker.Handler) { h.Revoke(rv) })
		}
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	keys := make([]string, 0, len(m.interest))
	for k := range m.interest {
		keys = append(keys, k)
	}
	m.mu.Unlock()
	for _, k := range keys {
		err := m.scan("messages", m.b.userPrefix+k, since, m.b.opts.MaxMessages+1, func(r rawMsg) {
			s, ok := decodeUserMsg(r.Header, r.Data)
			if ok && s.node != m.node && m.interested(k, s.p) {
				m.deliver(func(h broker.Handler) { h.Deliver(s.message()) })
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// scan is Broker.scan for the whole stream after since, as one request of
// m's.
func (m *member) scan(what, filter string, since time.Time, batch int, fn func(rawMsg)) error {
	opCtx, done, err := m.op(m.ctx)
	if err != nil {
		return err
	}
	defer done()
	err = m.b.scan(opCtx, filter, since, batch, func(r rawMsg) bool { fn(r); return true })
	if err != nil {
		return m.fail(m.ctx, opCtx, "catch up: "+what, err)
	}
	return nil
}

// statuses are the connection changes watch follows.
var statuses = []nats.Status{nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED}
