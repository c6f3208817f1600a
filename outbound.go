package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wsauth/wsauth/internal/outbox"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// The outbound path: how an application message gets from a Send to the
// client's socket, and what happens when the client does not keep up.
//
// Every session has an outbox bounded by Options.BufferMessages and
// BufferBytes. An empty outbox takes any one message. A full one:
//
//   - while the session is active, refuses a sender that is not working on a
//     client's message (Session.Send, or a Server method called with any
//     context but one OnMessage received) with ErrBufferFull: such a sender
//     never blocks;
//   - makes the work of a client's message (Session.Reply, or a Server
//     method called with the ctx OnMessage received) wait for room. That
//     client's read goroutine then waits, so its reading slows to the pace
//     of the clients it sends to: a burst or a pipeline is throttled by TCP
//     backpressure, not turned into disconnects. A receiver whose socket
//     write has been blocked for stallWait (it stopped reading) is not
//     waited for (ErrBufferFull), so one stalled client cannot hold up the
//     others;
//   - while the session's token is expired (buffering for reauth), closes
//     the session with 4413: the client is too late, not too slow.
//
// A client that accepts no write for WriteTimeout is dropped; OnClose gets
// 4413 "client not reading" (gateConn.Write, Session.finish).

// errHadIt: the session has the stream message already. errLagging: the
// session is behind its stream and will read the message from its history.
var (
	errHadIt   = errors.New("wsauth: session had the message")
	errLagging = errors.New("wsauth: session behind its stream")
)

// ErrBufferFull: the session's outbox is full and the message was not
// queued. A sender that is not part of a client message's work gets it
// instead of waiting; see Session.Send.
var ErrBufferFull = errors.New("wsauth: session's outbound buffer is full")

// causeKey marks the context OnMessage receives with the session whose
// message it handles.
type causeKey struct{}

// causeOf returns the session whose message ctx belongs to, or nil.
func causeOf(ctx context.Context) *Session {
	s, _ := ctx.Value(causeKey{}).(*Session)
	return s
}

// handlerContext returns the context OnMessage gets: the session's own,
// marked as the work of this session's messages. Read goroutine only.
func (s *Session) handlerContext() context.Context {
	if s.hctx == nil {
		s.hctx = context.WithValue(s.ctx, causeKey{}, s)
	}
	return s.hctx
}

// Send queues data, one JSON value, for delivery to the client as a message
// frame, and returns at once: it never blocks. It returns nil once wsauth
// is responsible for the message: it is then either written to the client,
// in order, or handed to Options.OnUndelivered. While the session's token is
// expired the message is buffered. It returns ErrBufferFull if the
// session's outbox is full (the message is not queued and stays the
// caller's), ErrSessionClosed if the session already closed, and
// ErrInvalidData if data is not valid JSON.
//
// To answer a client's message from OnMessage use Reply, which waits for
// room instead of failing.
func (s *Session) Send(data json.RawMessage) error {
	it, err := s.srv.newItem(data)
	if err != nil {
		return err
	}
	return s.enqueue(s.ctx, it, nil, false)
}

// Reply answers a client's message: call it from Options.OnMessage. It
// queues data like Send, in one order with Send, but when the session's
// outbox is full it waits for room instead of failing, so a client that
// sends faster than it reads (a pipelining client) is slowed down, not
// disconnected: while its handler waits, its socket is not read.
//
// A reply made while the handler runs is written when the handler returns,
// by the goroutine that ran it (or earlier, if the outbox fills or another
// goroutine's Send starts a writer), which saves a goroutine handoff per
// request/response round trip. When the client's next messages have
// already arrived (a pipelining client), the replies wait for those
// messages' handlers too, up to 16 frames, and go out in one write. A
// handler that must deliver something before it finishes a long task
// should use Send. Called from another goroutine, Reply may block until
// the session's client reads.
func (s *Session) Reply(data json.RawMessage) error {
	it, err := s.srv.newItem(data)
	if err != nil {
		return err
	}
	return s.enqueue(s.ctx, it, s, true)
}

// newItem encodes data as a message frame once; the frame can then be shared
// by every session it is sent to.
func (srv *Server) newItem(data json.RawMessage) (outbox.Item, error) {
	if !protocol.ValidData(data) {
		return outbox.Item{}, ErrInvalidData
	}
	return srv.encodeItem(data, protocol.Position{})
}

// encodeItem encodes valid data as a message frame at pos in its user's
// stream (none if pos.Seq is 0).
func (srv *Server) encodeItem(data json.RawMessage, pos protocol.Position) (outbox.Item, error) {
	frame := protocol.AppendServer(make([]byte, 0, len(data)+64+len(pos.Epoch)),
		protocol.ServerFrame{Type: protocol.TypeMessage, Epoch: pos.Epoch, Seq: pos.Seq, Data: data})
	end := len(frame) - 1 // the frame's closing brace
	return outbox.Item{Frame: frame, Data: frame[end-len(data) : end : end], Epoch: pos.Epoch, Seq: pos.Seq}, nil
}

// sendAll queues it for every one of sessions and returns how many took it
// (see Server.Broadcast).
func (srv *Server) sendAll(ctx context.Context, sessions []*Session, it outbox.Item) (int, error) {
	cause := causeOf(ctx)
	n, full := 0, 0
	for _, s := range sessions {
		switch err := s.enqueue(ctx, it, cause, false); {
		case err == nil:
			n++
		case errors.Is(err, ErrBufferFull):
			full++
		case ctx.Err() != nil:
			return n, err
		}
	}
	if full > 0 {
		return n, fmt.Errorf("%w: %d of %d sessions", ErrBufferFull, full, len(sessions))
	}
	return n, nil
}

// enqueue queues it for s, by the rules at the top of this file. cause is
// the session whose message the send is the work of, nil if none; ctx ends
// a wait for room. A reply made while OnMessage runs is left for the read
// goroutine to write when the handler returns (see flushAfterHandler).
func (s *Session) enqueue(ctx context.Context, it outbox.Item, cause *Session, reply bool) error {
	var stall *time.Timer
	s.mu.Lock()
	for {
		if s.state == session.Closed {
			s.mu.Unlock()
			stopTimer(stall)
			return ErrSessionClosed
		}
		if it.Seq != 0 && (it.Seq <= s.streamSeq || s.lagging) {
			s.mu.Unlock()
			stopTimer(stall)
			if s.lagging {
				return errLagging
			}
			return errHadIt // its client has it, or has it queued
		}
		if s.outbox.Push(it) == nil {
			s.srv.observe(Event{Kind: Queued, N: 1, Bytes: len(it.Frame)})
			if it.Seq != 0 {
				s.streamEpoch, s.streamSeq = it.Epoch, it.Seq
			}
			if !reply || !s.inHandler {
				s.scheduleDrainLocked()
			}
			s.mu.Unlock()
			stopTimer(stall)
			return nil
		}
		if it.Seq != 0 && (cause == nil || s.state == session.Expired || cause != s && s.stalledLocked()) {
			// A message of the user's stream that cannot wait: the
			// session falls behind its stream and catches up from the
			// stream's history once its outbox has room (catchUp).
			if !s.lagging {
				s.srv.observe(Event{Kind: Overflowed})
			}
			s.lagging = true
			s.mu.Unlock()
			stopTimer(stall)
			return errLagging
		}
		if s.state == session.Expired {
			s.srv.observe(Event{Kind: Overflowed})
			s.overflowed = append(s.overflowed, it)
			s.markClosedLocked(closeOverflow)
			s.mu.Unlock()
			stopTimer(stall)
			// Do not make the sender wait for the close frame to be written.
			go s.writeClose(closeOverflow)
			return nil
		}
		if cause == nil || cause != s && s.stalledLocked() {
			s.mu.Unlock()
			stopTimer(stall)
			return ErrBufferFull
		}
		// Wait for the writer to make room. Replies held for the end of
		// the handler must go now, or the wait would be for nothing.
		s.scheduleDrainLocked()
		room := s.roomLocked()
		s.mu.Unlock()
		var stalled <-chan time.Time
		if cause != s {
			if stall == nil {
				stall = time.NewTimer(s.srv.stallWait)
			} else {
				stall.Reset(s.srv.stallWait)
			}
			stalled = stall.C
		}
		select {
		case <-room:
		case <-stalled:
		case <-ctx.Done():
			stopTimer(stall)
			return ctx.Err()
		}
		s.mu.Lock()
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// stalledLocked reports whether s's client has stopped taking data: a write
// to its socket has been blocked for longer than stallWait (the kernel's
// send buffer is full). A writer that merely has not run yet (a busy
// machine) is not a stalled client: senders wait for it.
func (s *Session) stalledLocked() bool {
	since := s.writingSince.Load()
	return since != 0 && time.Since(monoEpoch)-time.Duration(since) > s.srv.stallWait
}

// roomLocked returns a channel that is closed when the outbox gains room
// or the session's state changes.
func (s *Session) roomLocked() <-chan struct{} {
	if s.room == nil {
		s.room = make(chan struct{})
	}
	return s.room
}

// wakeLocked wakes the senders waiting in enqueue.
func (s *Session) wakeLocked() {
	if s.room != nil {
		close(s.room)
		s.room = nil
	}
}

func (s *Session) scheduleDrainLocked() {
	if s.draining || s.paused || s.state == session.Closed || s.outbox.Len() == 0 {
		return
	}
	s.draining = true
	// gws runs Async jobs of one connection one at a time, in order, on a
	// goroutine that exists only while jobs are queued.
	s.socket.Async(s.drainFn)
}

// drainBatch is how many frames drain takes per hold of s.mu, and writes
// in one write to the socket (gateConn.writeTexts).
const drainBatch = 16

// drain writes queued frames until the outbox is empty, paused or closed.
func (s *Session) drain() { _ = s.drainUpTo(-1) }

// drainUpTo writes queued frames like drain, but at most limit of them
// (no limit if it is negative); if frames remain after that, it hands them
// to a drain job. The caller set s.draining. It returns how many frames it
// wrote itself.
//
// Each batch goes out in one socket write, not one per frame: with a deep
// queue, that divides the write system calls by up to drainBatch.
//
// Frames are peeked, written, and only then discarded from the outbox, so
// that the frames being written still count against the outbox's bounds.
// Only the drainer (s.draining) removes from the outbox's front, and
// nothing is put in front of it while a drain runs (PushFront happens at
// the first auth, while the session is paused), so the frames discarded
// are the ones written. A frame that did not go out whole stays queued:
// finish hands it to OnUndelivered with the rest.
func (s *Session) drainUpTo(limit int) (written int) {
	var batch [drainBatch]outbox.Item
	var frames [drainBatch][]byte
	for {
		s.mu.Lock()
		if s.paused || s.state == session.Closed {
			s.stopDrainingLocked()
			s.mu.Unlock()
			return
		}
		if limit == 0 {
			s.stopDrainingLocked()
			s.scheduleDrainLocked()
			s.mu.Unlock()
			return
		}
		size := len(batch)
		if limit > 0 && limit < size {
			size = limit
		}
		n := s.outbox.Peek(batch[:size])
		if n == 0 {
			s.stopDrainingLocked()
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		for i := range n {
			frames[i] = batch[i].Frame
		}
		s.writingSince.Store(max(int64(time.Since(monoEpoch)), 1))
		ok, err := s.conn.writeTexts(frames[:n])
		s.writingSince.Store(0)
		if ok > 0 && s.srv.opts.Observer != nil {
			bytes := 0
			for _, f := range frames[:ok] {
				bytes += len(f)
			}
			s.srv.observe(Event{Kind: Sent, N: ok})
			s.srv.observe(Event{Kind: Queued, N: -ok, Bytes: -bytes})
		}
		clear(batch[:n])
		clear(frames[:n])
		written += ok
		limit -= ok
		s.mu.Lock()
		s.outbox.Discard(ok)
		if ok > 0 {
			s.wakeLocked()
			s.catchUpLocked()
		}
		if err != nil {
			// gateConn closed the socket: the read loop ends and finish
			// says why (closeNotReading for a write timeout).
			s.stopDrainingLocked()
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// beginHandler marks OnMessage as running: replies wait for it.
func (s *Session) beginHandler() {
	s.mu.Lock()
	s.inHandler = true
	s.mu.Unlock()
}

// flushAfterHandler runs on the read goroutine when OnMessage returns: it
// writes what was queued while the handler ran (its replies, and whatever
// else came first), unless a drain job is already at it. It writes at most
// what is queued now, so senders on other goroutines cannot keep the read
// goroutine from reading; anything queued after goes to a drain job.
//
// With hold, when the client's next messages have already been read (a
// pipelining client) and fewer than drainBatch frames are queued, it
// writes nothing yet: the replies wait for those messages' handlers, and
// all of them go out in one write. Held replies are written (flushHeld)
// before the read goroutine reads from the socket again or writes anything
// itself, and a drain job started by any other send writes them too; see
// gateConn.moreDataBuffered for the frames they may wait behind.
func (s *Session) flushAfterHandler(hold bool) (written int) {
	s.mu.Lock()
	s.inHandler = false
	if s.draining || s.paused || s.state == session.Closed || s.outbox.Len() == 0 {
		s.held.Store(false)
		s.mu.Unlock()
		return 0
	}
	if hold && s.outbox.Len() < drainBatch && s.conn.moreDataBuffered() {
		s.held.Store(true)
		s.mu.Unlock()
		return 0
	}
	s.held.Store(false)
	s.draining = true
	n := s.outbox.Len()
	s.mu.Unlock()
	return s.drainUpTo(n)
}

// flushHeld writes the replies flushAfterHandler held, if any. Read
// goroutine only.
func (s *Session) flushHeld() {
	if s.held.Load() {
		s.flushAfterHandler(false)
	}
}

func (s *Session) stopDrainingLocked() {
	s.draining = false
	s.drained.Broadcast()
}
