package natsbroker

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// member is one node's membership.
type member struct {
	b    *Broker
	node string
	h    broker.Handler

	ctx    context.Context // ends at Leave: the watcher's requests
	cancel context.CancelFunc
	left   atomic.Bool

	// gate holds back Leave while a Handler method runs; closed says the
	// Handler gets nothing more.
	gate   sync.RWMutex
	closed bool

	mu       sync.Mutex
	subs     []*nats.Subscription // broadcasts, revocations, Send
	interest map[string]*interest // by user key
	up       context.Context      // ended when the connection goes down
	markDown context.CancelFunc

	status chan nats.Status // the connection's changes, for watch
	done   chan struct{}    // closed when watch returns
}

// interest is a node's subscription to the live messages of one user key
// (of one principal, but for a SHA-256 collision).
type interest struct {
	sub        *nats.Subscription
	principals map[session.Principal]bool
}

var (
	errLeft = fmt.Errorf("%w: member left", broker.ErrUnavailable)
	errDown = errors.New("connection to NATS lost")
)

// op checks that m can reach NATS and returns the context of one request:
// ctx bounded by Options.Timeout, and ended at once if the connection
// goes down meanwhile.
func (m *member) op(ctx context.Context) (context.Context, func(), error) {
	if m.left.Load() {
		return nil, nil, errLeft
	}
	if !m.b.nc.IsConnected() {
		return nil, nil, fmt.Errorf("natsbroker: %w: not connected to NATS", broker.ErrUnavailable)
	}
	m.mu.Lock()
	if m.up.Err() != nil { // connected again before watch has seen it
		m.up, m.markDown = context.WithCancel(context.Background())
	}
	up := m.up
	m.mu.Unlock()
	tctx, cancelTimeout := context.WithTimeout(ctx, m.b.opts.Timeout)
	opCtx, cancel := context.WithCancelCause(tctx)
	stop := context.AfterFunc(up, func() { cancel(errDown) })
	return opCtx, func() { stop(); cancel(nil); cancelTimeout() }, nil
}

// fail wraps the error of a request made with opCtx, derived from ctx.
func (m *member) fail(ctx, opCtx context.Context, what string, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("natsbroker: %s: %w", what, ctx.Err())
	case errors.Is(context.Cause(opCtx), errDown):
		return fmt.Errorf("natsbroker: %s: %w: %w", what, broker.ErrUnavailable, errDown)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("natsbroker: %s: %w: no answer from NATS within %v", what, broker.ErrUnavailable, m.b.opts.Timeout)
	default:
		return fmt.Errorf("natsbroker: %s: %w: %w", what, broker.ErrUnavailable, err)
	}
}

// deliver calls f with the Handler unless m has left; Leave waits for it.
func (m *member) deliver(f func(broker.Handler)) bool {
	m.gate.RLock()
	defer m.gate.RUnlock()
	if m.closed {
		return false
	}
	f(m.h)
	return true
}

func (m *member) Publish(ctx context.Context, p session.Principal, data json.RawMessage) (protocol.Position, error) {
	b := m.b
	u := b.user(p)
	opCtx, done, err := m.op(ctx)
	if err != nil {
		return protocol.Position{}, err
	}
	defer done()
	unlock, err := b.lock(opCtx, u)
	if err != nil {
		return protocol.Position{}, m.fail(ctx, opCtx, "publish", err)
	}
	defer unlock()
	head, ok := b.cached(u.key)
	if !ok {
		if head, err = b.lastDirect(opCtx, u); err != nil {
			return protocol.Position{}, m.fail(ctx, opCtx, "publish: head", err)
		}
	}
	for attempt := 1; ; attempt++ {
		pos := head.next()
		msg := userMsg(b.userPrefix+u.key, m.node, p, pos, head.streamSeq, data)
		ack, err := b.js.PublishMsg(opCtx, msg,
			jetstream.WithExpectLastSequencePerSubject(head.streamSeq))
		if err == nil {
			b.remember(u.key, last{streamSeq: ack.Sequence, pos: pos}) // Publish needs no more
			// Announced only once stored: no member ever sees a message
			// that lost the compare-and-set. At most once: a member that
			// misses it sees the gap in Seq.
			_ = b.nc.PublishMsg(userMsg(b.livePrefix+u.key, m.node, p, pos, 0, data))
			return pos, nil
		}
		b.forget(u.key)
		switch {
		case errors.Is(err, nats.ErrMaxPayload):
			return protocol.Position{}, fmt.Errorf("natsbroker: publish: %w", err)
		case !wrongLast(err):
			return protocol.Position{}, m.fail(ctx, opCtx, "publish", err)
		case attempt == maxAttempts:
			return protocol.Position{}, fmt.Errorf("natsbroker: publish: %w: %d publishers in a row were faster", broker.ErrUnavailable, attempt)
		}
		b.conflicts.Add(1)
		if attempt > 8 { // many publishers at once: spread them out a little
			select {
			case <-time.After(time.Duration(rand.Int64N(int64(min(attempt, 100)) * int64(50*time.Microsecond)))):
			case <-opCtx.Done():
				return protocol.Position{}, m.fail(ctx, opCtx, "publish", opCtx.Err())
			}
		}
		if head, err = b.lastDirect(opCtx, u); err != nil {
			return protocol.Position{}, m.fail(ctx, opCtx, "publish: head", err)
		}
	}
}

func (m *member) Interest(ctx context.Context, p session.Principal, on bool) error {
	if m.left.Load() {
		return errLeft
	}
	u := m.b.user(p)
	m.mu.Lock()
	in := m.interest[u.key]
	if !on {
		if in != nil {
			delete(in.principals, p)
			if len(in.principals) == 0 {
				delete(m.interest, u.key)
				_ = in.sub.Unsubscribe()
			}
		}
		m.mu.Unlock()
		return nil
	}
	if in == nil {
		sub, err := m.b.nc.Subscribe(m.b.livePrefix+u.key, m.onLive)
		if err != nil {
			m.mu.Unlock()
			return fmt.Errorf("natsbroker: interest: %w: %w", broker.ErrUnavailable, err)
		}
		in = &interest{sub: sub, principals: make(map[session.Principal]bool)}
		m.interest[u.key] = in
	}
	in.principals[p] = true
	m.mu.Unlock()
	if !m.b.nc.IsConnected() {
		return nil // subscribed again on reconnection; watch catches up
	}
	// Once the server has the subscription, every later publish reaches us.
	opCtx, done, err := m.op(ctx)
	if err != nil {
		return nil // disconnected meanwhile: as above
	}
	defer done()
	if err := m.b.nc.FlushWithContext(opCtx); err != nil {
		return m.fail(ctx, opCtx, "interest", err)
	}
	return nil
}

// interested reports whether m wants the live messages of p.
func (m *member) interested(key string, p session.Principal) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.interest[key]
	return in != nil && in.principals[p]
}

func (m *member) onLive(msg *nats.Msg) {
	s, ok := decodeUserMsg(msg.Header, msg.Data)
	if !ok || s.node == m.node || !m.interested(msg.Subject[len(m.b.livePrefix):], s.p) {
		return
	}
	m.deliver(func(h broker.Handler) { h.Deliver(s.message()) })
}

func (s stored) message() broker.Message {
	return broker.Message{Principal: s.p, Position: s.pos, Data: json.RawMessage(s.data)}
}

func (m *member) History(ctx context.Context, p session.Principal, after protocol.Position) ([]broker.Message, protocol.Position, error) {
	b := m.b
	u := b.user(p)
	opCtx, done, err := m.op(ctx)
	if err != nil {
		return nil, protocol.Position{}, err
	}
	defer done()
	// The head comes from the stream's leader, the messages from any
	// replica: one a moment behind may end the scan short of the head, and
	// so may messages evicted between the two reads. Read both again then.
	for range 3 {
		head, err := b.last(opCtx, u)
		if err != nil {
			return nil, protocol.Position{}, m.fail(ctx, opCtx, "history: head", err)
		}
		if after.Epoch == "" {
			return nil, head.pos, nil
		}
		if head.pos.Epoch == "" || after.Epoch != head.pos.Epoch || after.Seq > head.pos.Seq {
			return nil, head.pos, broker.ErrLost
		}
		if after.Seq == head.pos.Seq {
			return nil, head.pos, nil
		}
		cutoff := time.Now().Add(-b.opts.KeepFor)
		if head.at.Before(cutoff) { // even the last message is too old
			return nil, head.pos, broker.ErrLost
		}
		if head.pos.Seq-after.Seq <= walkMax {
			msgs, ok, err := m.walk(opCtx, u, after, head, cutoff)
			if err != nil {
				return nil, head.pos, m.fail(ctx, opCtx, "history", err)
			}
			if ok {
				return msgs, head.pos, nil
			}
		}
		msgs, res, err := m.read(opCtx, u, after, head, cutoff)
		switch {
		case err != nil:
			return nil, head.pos, m.fail(ctx, opCtx, "history", err)
		case res == readLost:
			return nil, head.pos, broker.ErrLost
		case res == readDone:
			return msgs, head.pos, nil
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-opCtx.Done():
			return nil, head.pos, m.fail(ctx, opCtx, "history", opCtx.Err())
		}
	}
	return nil, protocol.Position{}, fmt.Errorf("natsbroker: history: %w: the stream's replicas stay behind its leader", broker.ErrUnavailable)
}

// walk reads the messages of u's stream after position after one by one,
// back from head. ok is false when it cannot tell (a message it needs is
// missing, or has no pointer to the one before): read can.
func (m *member) walk(ctx context.Context, u user, after protocol.Position, head last, cutoff time.Time) (msgs []broker.Message, ok bool, err error) {
	msgs = make([]broker.Message, head.pos.Seq-after.Seq)
	s := head.msg
	for i := len(msgs) - 1; ; i-- {
		msgs[i] = s.message()
		if i == 0 {
			return msgs, true, nil
		}
		if s.prev == 0 {
			return nil, false, nil
		}
		r, found, err := m.b.get(ctx, s.prev)
		if err != nil || !found {
			return nil, false, err
		}
		prevSeq := s.pos.Seq - 1
		var ok bool
		s, ok = decodeUserMsg(r.Header, r.Data)
		if !ok || r.Header.Get(hdrSubject) != m.b.userPrefix+u.key || r.at.Before(cutoff) || s.p != u.p || s.pos != (protocol.Position{Epoch: head.pos.Epoch, Seq: prevSeq}) {
			return nil, false, nil
		}
	}
}

// What read found.
const (
	readDone  = iota // every message after the position, up to the head
	readLost         // a message after the position is no longer kept
	readShort        // the stream ended before the head (a replica behind)
)

// read reads the messages of u's stream after position after, up to head,
// none stored before cutoff.
func (m *member) read(ctx context.Context, u user, after protocol.Position, head last, cutoff time.Time) ([]broker.Message, int, error) {
	var msgs []broker.Message
	want := after.Seq + 1
	lost := false
	err := m.b.scan(ctx, m.b.userPrefix+u.key, cutoff, m.b.opts.MaxMessages+1, func(r rawMsg) bool {
		if r.streamSeq > head.streamSeq {
			return false
		}
		s, ok := decodeUserMsg(r.Header, r.Data)
		if r.at.Before(cutoff) || !ok || s.p != u.p || s.pos.Epoch != head.pos.Epoch || s.pos.Seq < want {
			return true
		}
		if s.pos.Seq > want { // the one we want is gone
			lost = true
			return false
		}
		msgs = append(msgs, s.message())
		want++
		return want <= head.pos.Seq
	})
	switch {
	case err != nil:
		return nil, 0, err
	case lost:
		return nil, readLost, nil
	case want <= head.pos.Seq:
		return nil, readShort, nil
	}
	return msgs, readDone, nil
}

func (m *member) Broadcast(ctx context.Context, data json.RawMessage) error {
	opCtx, done, err := m.op(ctx)
	if err != nil {
		return err
	}
	defer done()
	msg := nats.NewMsg(m.b.allSubject)
	msg.Header.Set(hdrNode, m.node)
	msg.Data = data
	if err := m.b.nc.PublishMsg(msg); err != nil {
		return m.fail(ctx, opCtx, "broadcast", err)
	}
	if err := m.b.nc.FlushWithContext(opCtx); err != nil {
		return m.fail(ctx, opCtx, "broadcast", err)
	}
	return nil
}

func (m *member) onBroadcast(msg *nats.Msg) {
	if msg.Header.Get(hdrNode) == m.node {
		return
	}
	m.deliver(func(h broker.Handler) { h.Broadcast(json.RawMessage(msg.Data)) })
}

func (m *member) Send(ctx context.Context, node, sessionID string, data json.RawMessage) error {
	if node == m.node || !validName(node, false) {
		return fmt.Errorf("natsbroker: send to %q: %w", node, broker.ErrNoSession)
	}
	opCtx, done, err := m.op(ctx)
	if err != nil {
		return err
	}
	defer done()
	msg := nats.NewMsg(m.b.nodePrefix + node + ".send")
	msg.Header.Set(hdrNode, m.node)
	msg.Header.Set(hdrSession, b64.EncodeToString([]byte(sessionID)))
	msg.Data = data
	resp, err := m.b.nc.RequestMsgWithContext(opCtx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("natsbroker: send: no node %q: %w", node, broker.ErrNoSession)
	case err != nil:
		return m.fail(ctx, opCtx, "send", err)
	case string(resp.Data) != "1":
		return broker.ErrNoSession
	}
	return nil
}

func (m *member) onSend(msg *nats.Msg) {
	id, err := b64.DecodeString(msg.Header.Get(hdrSession))
	found := false
	if err == nil {
		m.deliver(func(h broker.Handler) { found = h.Send(string(id), json.RawMessage(msg.Data)) })
	}
	answer := []byte("0")
	if found {
		answer = []byte("1")
	}
	_ = msg.Respond(answer)
}

func (m *member) Revoke(ctx context.Context, r broker.Revocation) error {
	if r.At.IsZero() {
		r.At = time.Now()
	}
	u := m.b.user(r.Principal)
	opCtx, done, err := m.op(ctx)
	if err != nil {
		return err
	}
	defer done()
	msg := nats.NewMsg(m.b.revokePrefix + u.key)
	msg.Header.Set(hdrPrincipal, encodePrincipal(r.Principal))
	msg.Header.Set(hdrNode, m.node)
	msg.Header.Set(hdrAt, strconv.FormatInt(r.At.UnixNano(), 10))
	if r.TokenID != "" {
		msg.Header.Set(hdrTokenID, b64.EncodeToString([]byte(r.TokenID)))
	}
	// Stored, so that a member cut off from NATS applies it when it is
	// back; the members subscribed get it at once.
	if _, err := m.b.js.PublishMsg(opCtx, msg); err != nil {
		return m.fail(ctx, opCtx, "revoke", err)
	}
	return nil
}

func (m *member) onRevoke(msg *nats.Msg) {
	r, ok := decodeRevocation(msg.Header)
	if !ok || msg.Header.Get(hdrNode) == m.node {
		return
	}
	m.deliver(func(h broker.Handler) { h.Revoke(r) })
}

// decodeRevocation reads a revocation's headers.
func decodeRevocation(h nats.Header) (broker.Revocation, bool) {
	p, ok := decodePrincipal(h.Get(hdrPrincipal))
	if !ok {
		return broker.Revocation{}, false
	}
	r := broker.Revocation{Principal: p}
	if at, err := strconv.ParseInt(h.Get(hdrAt), 10, 64); err == nil {
		r.At = time.Unix(0, at)
	}
	if v := h.Get(hdrTokenID); v != "" {
		id, err := b64.DecodeString(v)
		if err != nil {
			return broker.Revocation{}, false
		}
		r.TokenID = string(id)
	}
	return r, !r.At.IsZero()
}

func (m *member) PutOnce(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	opCtx, done, err := m.op(ctx)
	if err != nil {
		return err
	}
	defer done()
	// The bucket's TTL bounds every key; a shorter ttl travels with the
	// value and is checked when taking.
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(value)), uint64(time.Now().Add(ttl).UnixNano()))
	if _, err := m.b.once.Create(opCtx, key, append(v, value...)); err != nil {
		return m.fail(ctx, opCtx, "put once", err)
	}
	return nil
}

func (m *member) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	opCtx, done, err := m.op(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	e, err := m.b.once.Get(opCtx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrInvalidKey):
		return nil, broker.ErrNotFound
	case err != nil:
		return nil, m.fail(ctx, opCtx, "take once", err)
	}
	// Delete only the revision read: of concurrent takers one succeeds.
	if err := m.b.once.Delete(opCtx, key, jetstream.LastRevision(e.Revision())); err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return nil, broker.ErrNotFound
		}
		return nil, m.fail(ctx, opCtx, "take once", err)
	}
	v := e.Value()
	if len(v) < 8 || time.Now().UnixNano() >= int64(binary.BigEndian.Uint64(v)) {
		return nil, broker.ErrNotFound
	}
	return v[8:], nil
}

func (m *member) Leave() error {
	if m.left.Swap(true) {
		return nil
	}
	m.gate.Lock() // waits for the Handler methods running
	m.closed = true
	m.gate.Unlock()
	m.cancel()
	m.unsubscribe()
	if m.status != nil {
		m.b.nc.RemoveStatusListener(m.status)
		<-m.done
	}
	return nil
}

func (m *member) unsubscribe() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.subs {
		_ = s.Unsubscribe()
	}
	m.subs = nil
	for k, in := range m.interest {
		_ = in.sub.Unsubscribe()
		delete(m.interest, k)
	}
}
