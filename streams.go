package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/internal/outbox"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// Users' streams, with a Broker (Options.Broker). Every message sent to a
// user with SendToPrincipals is published to the user's stream first, which
// numbers it (an epoch and a Seq without gaps) and keeps it for resume;
// then every node with sessions of the user hands it to them, in Seq order.
//
// A node keeps a stream record for each user it has sessions of: the last
// Seq it handed to them (head) and the messages that came ahead of a gap.
// Messages from other nodes may come out of order or twice: one at head+1
// is handed over at once, older ones are dropped, newer ones wait; a gap
// still open after gapWait is filled from the stream's history. A session
// starts at the head (or, resuming, after the position its client presents,
// with the messages in between queued before anything later) and takes
// only what comes after its own last Seq, so no message reaches it twice.
// The record lives while the node has sessions of the user: the first one
// turns the node's interest in the user's messages on, the last one off.
//
// A session whose outbox is full when a message of its stream comes, and
// whose sender cannot wait (another node's message, a send from outside
// OnMessage), falls behind (lagging): it takes no live stream message
// until catchUp, run whenever its outbox is half empty, has queued from the
// stream's history everything up to this node's head. Only a session that
// falls behind by more than the stream keeps is closed (4413).

// gapWait is how long a node waits for a message missing from a stream
// before it reads the stream's history.
var gapWait = 50 * time.Millisecond

// brokerTimeout bounds a broker call that no caller's context bounds.
const brokerTimeout = 10 * time.Second

type streamSet struct {
	srv *Server
	mu  sync.Mutex
	m   map[Principal]*stream
}

type stream struct {
	p       Principal
	mu      sync.Mutex
	refs    int    // sessions of p on this node, joined and not released
	dead    bool   // released: the set holds a new record if p comes back
	known   bool   // epoch and head are known (the history could be read)
	epoch   string // of the last message handed over
	head    uint64 // its Seq
	waiting map[uint64]broker.Message
	filling bool // a gap fill is scheduled
}

// record returns p's record, making it if create is set.
func (ss *streamSet) record(p Principal, create bool) *stream {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st := ss.m[p]
	if st == nil && create {
		if ss.m == nil {
			ss.m = make(map[Principal]*stream)
		}
		st = &stream{p: p}
		ss.m[p] = st
	}
	return st
}

// join adds s to its user's stream on this node, registers it, and queues
// what its client missed if it asks to resume from resume. The caller
// holds no lock; s is paused (nothing is written before auth_ok). It
// returns the position the session starts after, for auth_ok, and, for a
// resume, the answer. It fails, without registering s, when the history a
// resume needs cannot be read now (the broker is unavailable): the client
// should try again rather than be told its position is lost.
func (ss *streamSet) join(s *Session, resume *protocol.Position) (start protocol.Position, answer string, err error) {
	srv := ss.srv
	p := s.ident.Principal()
	var st *stream
	for {
		st = ss.record(p, true)
		st.mu.Lock()
		if !st.dead {
			break
		}
		st.mu.Unlock()
	}
	defer st.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, brokerTimeout)
	defer cancel()
	st.refs++
	if st.refs == 1 {
		// Interest first, then the history: what is published in between
		// waits on st.mu and is sorted out by Seq afterwards.
		if err := srv.member.Interest(ctx, p, true); err != nil {
			srv.opts.Logger.Warn("wsauth: broker interest failed", "sub", p.Subject, "iss", p.Issuer, "err", err)
		}
		if _, head, err := srv.member.History(ctx, p, protocol.Position{}); err == nil {
			st.catchUp(head)
		}
	}
	start = protocol.Position{Epoch: st.epoch, Seq: st.head}
	taken := st.head // the session takes only what comes after
	if resume != nil {
		if !st.known {
			// The stream's head could not be read: neither can what
			// the client missed.
			return start, "", broker.ErrUnavailable
		}
		answer = protocol.ResumeLost
		after := *resume
		if after.Epoch == "" && after.Seq == 0 {
			after.Epoch = st.epoch // the client got nothing yet: from the start
		}
		switch {
		case after.Epoch == "" && st.epoch == "" && after.Seq == 0:
			answer = protocol.ResumeOK // an empty stream, and the client got nothing
		case after.Epoch != "" && after.Epoch == st.epoch:
			msgs, _, err := srv.member.History(ctx, p, after)
			if err != nil && !errors.Is(err, broker.ErrLost) {
				return start, "", err
			}
			if err != nil {
				break
			}
			answer, start = protocol.ResumeOK, after
			var items []outbox.Item
			for _, m := range msgs {
				if m.Seq > st.head {
					break // the node has not handed it over yet: it will
				}
				if it, err := srv.streamItem(m); err == nil {
					items = append(items, it)
				}
			}
			// The backlog may exceed the outbox's bounds: the broker's
			// bounds per user bound it.
			s.mu.Lock()
			s.outbox.PushFrontAll(items)
			s.mu.Unlock()
			if len(items) > 0 && srv.opts.Observer != nil {
				bytes := 0
				for _, it := range items {
					bytes += len(it.Frame)
				}
				srv.observe(Event{Kind: Queued, N: len(items), Bytes: bytes})
				srv.observe(Event{Kind: Resumed, N: len(items)})
			}
			taken = max(taken, after.Seq)
		}
	}
	s.mu.Lock()
	s.streamEpoch, s.streamSeq = st.epoch, taken
	s.mu.Unlock()
	srv.registry.Add(s.id, p, s)
	return start, answer, nil
}

// catchUp moves an empty record to head: the node hands over nothing up
// to it. The caller holds st.mu.
func (st *stream) catchUp(head protocol.Position) {
	if !st.known {
		st.epoch, st.head, st.known = head.Epoch, head.Seq, true
	}
}

// leave releases s's place in its user's stream.
func (ss *streamSet) leave(s *Session, p Principal) {
	st := ss.record(p, false)
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.refs--; st.refs > 0 {
		return
	}
	st.dead = true
	ss.mu.Lock()
	if ss.m[p] == st {
		delete(ss.m, p)
	}
	ss.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	if err := ss.srv.member.Interest(ctx, p, false); err != nil {
		ss.srv.opts.Logger.Warn("wsauth: broker interest failed", "sub", p.Subject, "iss", p.Issuer, "err", err)
	}
}

// deliver hands m to this node's sessions of its user, in Seq order (see
// the top of this file). ctx and cause are the sender's (see enqueue); a
// message from another node has none. It returns how many sessions took m
// now.
func (ss *streamSet) deliver(ctx context.Context, cause *Session, m broker.Message) int {
	st := ss.record(m.Principal, false)
	if st == nil {
		return 0 // no session of the user here
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.dead {
		return 0
	}
	switch {
	case !st.known:
		// The history could not be read when the node joined: start at
		// the first message that comes.
		st.epoch, st.head, st.known = m.Epoch, m.Seq-1, true
	case m.Epoch != st.epoch:
		// The first message of the stream since this node joined it, or
		// the stream started again in a new epoch (the broker dropped it
		// whole): hand over from its Seq 1 on, filling what came before
		// m from the history.
		if st.epoch != "" {
			ss.srv.opts.Logger.Info("wsauth: stream in a new epoch", "sub", m.Principal.Subject, "iss", m.Principal.Issuer)
		}
		st.epoch, st.head, st.waiting = m.Epoch, 0, nil
	}
	switch {
	case m.Seq <= st.head:
		return 0 // handed over already
	case m.Seq > st.head+1:
		if st.waiting == nil {
			st.waiting = make(map[uint64]broker.Message)
		}
		if len(st.waiting) < maxWaiting {
			st.waiting[m.Seq] = m
		}
		st.scheduleFill(ss)
		return 0
	}
	n := st.handOver(ss, ctx, cause, m)
	for next, ok := st.waiting[st.head+1]; ok; next, ok = st.waiting[st.head+1] {
		delete(st.waiting, next.Seq)
		st.handOver(ss, context.Background(), nil, next)
	}
	return n
}

// maxWaiting bounds the messages a stream record holds ahead of a gap;
// past it, the gap fill reads them from the history.
const maxWaiting = 1024

// handOver queues m, the message at head+1, for every session of its user
// on this node, and moves head. The caller holds st.mu.
func (st *stream) handOver(ss *streamSet, ctx context.Context, cause *Session, m broker.Message) int {
	st.head = m.Seq
	it, err := ss.srv.streamItem(m)
	if err != nil {
		return 0
	}
	n := 0
	for _, s := range ss.srv.registry.ByPrincipal(m.Principal, nil) {
		if s.enqueue(ctx, it, cause, false) == nil {
			n++
		}
	}
	return n
}

// scheduleFill reads the history after head once gapWait has passed, if
// the gap is still open then. The caller holds st.mu.
func (st *stream) scheduleFill(ss *streamSet) {
	if st.filling {
		return
	}
	st.filling = true
	time.AfterFunc(gapWait, func() { ss.fill(st) })
}

func (ss *streamSet) fill(st *stream) {
	st.mu.Lock()
	st.filling = false
	if st.dead || len(st.waiting) == 0 {
		st.mu.Unlock()
		return
	}
	after := protocol.Position{Epoch: st.epoch, Seq: st.head}
	st.mu.Unlock()
	ctx, cancel := context.WithTimeout(ss.srv.ctx, brokerTimeout)
	msgs, _, err := ss.srv.member.History(ctx, st.p, after)
	cancel()
	switch {
	case errors.Is(err, broker.ErrLost):
		// What this node missed is gone: its sessions cannot have it
		// either. They are closed, and their clients resume, are told
		// "lost" and resynchronise.
		ss.srv.opts.Logger.Warn("wsauth: messages of a stream lost before this node got them",
			"sub", st.p.Subject, "iss", st.p.Issuer, "after", after.Seq)
		for _, s := range ss.srv.registry.ByPrincipal(st.p, nil) {
			s.close(closeOverflow)
		}
		return
	case err != nil:
		st.mu.Lock()
		st.scheduleFill(ss) // the broker is away: try again
		st.mu.Unlock()
		return
	}
	for _, m := range msgs {
		ss.deliver(context.Background(), nil, m)
	}
}

// catchUpLocked starts catching s up with its stream once it is behind
// (lagging) and its outbox is at most half full. The caller holds s.mu.
func (s *Session) catchUpLocked() {
	if s.lagging && !s.catchingUp && s.state != session.Closed && s.outbox.Len() <= s.srv.opts.BufferMessages/2 {
		s.catchingUp = true
		go s.srv.streams.catchUp(s)
	}
}

// catchUp queues for s, from its stream's history, what came after the
// last message of the stream it queued, until it has caught up with this
// node (then live messages reach it again) or its outbox is full again
// (then it goes on when the outbox has room).
func (ss *streamSet) catchUp(s *Session) {
	p := s.Principal()
	done := func() {
		s.mu.Lock()
		s.catchingUp = false
		s.mu.Unlock()
	}
	for {
		s.mu.Lock()
		after := protocol.Position{Epoch: s.streamEpoch, Seq: s.streamSeq}
		closed := s.state == session.Closed
		s.mu.Unlock()
		if closed {
			done()
			return
		}
		if after.Epoch == "" && after.Seq == 0 {
			// The session started on an empty stream: from its start.
			if st := ss.record(p, false); st != nil {
				st.mu.Lock()
				after.Epoch = st.epoch
				st.mu.Unlock()
			}
		}
		ctx, cancel := context.WithTimeout(s.ctx, brokerTimeout)
		msgs, _, err := ss.srv.member.History(ctx, p, after)
		cancel()
		switch {
		case errors.Is(err, broker.ErrLost):
			// It fell behind by more than the stream keeps: its client
			// resumes, is told "lost" and resynchronises.
			ss.srv.observe(Event{Kind: Overflowed})
			done()
			s.close(closeOverflow)
			return
		case err != nil:
			done()
			time.AfterFunc(gapWait, func() {
				s.mu.Lock()
				s.catchUpLocked()
				s.mu.Unlock()
			})
			return
		}
		progress := false
		for _, m := range msgs {
			it, err := ss.srv.streamItem(m)
			if err != nil {
				continue
			}
			s.mu.Lock()
			full := s.state != session.Closed && it.Seq > s.streamSeq && s.outbox.Push(it) != nil
			if !full && it.Seq > s.streamSeq && s.state != session.Closed {
				ss.srv.observe(Event{Kind: Queued, N: 1, Bytes: len(it.Frame)})
				ss.srv.observe(Event{Kind: Resumed, N: 1})
				s.streamEpoch, s.streamSeq = it.Epoch, it.Seq
				s.scheduleDrainLocked()
				progress = true
			}
			s.mu.Unlock()
			if full {
				done() // the next write that makes room goes on
				return
			}
		}
		// Caught up with this node? Deliveries happen under st.mu: none
		// can slip between this check and the end of lagging.
		st := ss.record(p, false)
		if st == nil {
			done()
			return
		}
		st.mu.Lock()
		s.mu.Lock()
		if s.streamEpoch == st.epoch && s.streamSeq >= st.head {
			s.lagging, s.catchingUp = false, false
			s.mu.Unlock()
			st.mu.Unlock()
			return
		}
		s.mu.Unlock()
		st.mu.Unlock()
		if !progress {
			// The history has not caught up with this node yet (a
			// replica behind): try again shortly rather than spin.
			done()
			time.AfterFunc(gapWait, func() {
				s.mu.Lock()
				s.catchUpLocked()
				s.mu.Unlock()
			})
			return
		}
	}
}

// streamItem encodes a message of a stream for the outbox.
func (srv *Server) streamItem(m broker.Message) (outbox.Item, error) {
	return srv.encodeItem(m.Data, m.Position)
}

// brokerHandler is a Server's side of its broker membership.
type brokerHandler Server

func (h *brokerHandler) Deliver(m broker.Message) {
	(*Server)(h).streams.deliver(context.Background(), nil, m)
}

func (h *brokerHandler) Broadcast(data json.RawMessage) {
	srv := (*Server)(h)
	if it, err := srv.newItem(data); err == nil {
		_, _ = srv.sendAll(context.Background(), srv.registry.All(nil), it)
	}
}

func (h *brokerHandler) Send(sessionID string, data json.RawMessage) bool {
	srv := (*Server)(h)
	s, ok := srv.registry.Get(sessionID)
	if !ok {
		return false
	}
	it, err := srv.newItem(data)
	return err == nil && s.enqueue(context.Background(), it, nil, false) == nil
}

func (h *brokerHandler) Revoke(r broker.Revocation) {
	(*Server)(h).revokeHere(r)
}
