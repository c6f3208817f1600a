package client

import (
	"sync"

	"github.com/wsauth/wsauth/protocol"
)

// The client's place in the user's stream (docs/protocol.md, section 5).
// A server that keeps streams numbers the messages its application sends to
// the user; the client keeps two positions:
//
//   - read: the last stream message a read goroutine handed on (into the
//     inbox, or to OnMessage), or the start that the last first auth_ok
//     gave. The next connection resumes from it: messages still waiting
//     for Receive stay in the inbox across connections, so asking for them
//     again would deliver them twice.
//   - handed: the same, counting only what the application has got
//     (Receive returned it, or OnMessage returned). Position reports it, so
//     that an application that saves it never claims a message it did not
//     get. With OnMessage it is read without the lag of an inbox.
//
// Both start at Options.Resume, if set. Only read goroutines move them:
// the one of the current connection (the next starts after it returned),
// and Receive's callers for handed, under the inbox's lock, in the order
// the messages were put.

// streamPos is a position in the user's stream and whether the client has
// one: false until the server said it keeps streams (or Options.Resume).
type streamPos struct {
	mu sync.Mutex
	at protocol.Position
	ok bool
}

func (s *streamPos) get() (protocol.Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at, s.ok
}

func (s *streamPos) set(at protocol.Position) {
	s.mu.Lock()
	s.at, s.ok = at, true
	s.mu.Unlock()
}

// Position returns the client's place in the user's stream as the
// application sees it: the position of the last stream message handed to
// the application (Receive returned it, or OnMessage returned), or, if it
// came later, where a connection's session started (its first auth_ok; the
// stream's head after a resume that was lost). ok is false until the
// client has a position: from Options.Resume, or from a server that keeps
// streams. Inside OnMessage it does not yet count the message being
// handled. It stays readable after the client ended.
//
// The client presents its position by itself when it reconnects. To resume
// after the process restarts, save the position once the messages up to
// it are handled, and pass it as Options.Resume to the next Dial.
func (c *Client) Position() (at protocol.Position, ok bool) { return c.handed.get() }

// repeated reports whether f is a stream message at or before the
// client's read position in the same epoch: one it handed on already. A
// server that resumes correctly never sends one; the client drops it
// rather than deliver a message twice.
func (c *Client) repeated(f protocol.ServerFrame) bool {
	if f.Seq == 0 {
		return false
	}
	at, ok := c.read.get()
	return ok && f.Epoch == at.Epoch && f.Seq <= at.Seq
}

// startStream runs on the read goroutine for the first auth_ok of a
// connection to a server that keeps streams: the session starts after
// f's position. For the application that is the case once it has taken
// the messages received before this auth_ok.
func (c *Client) startStream(f protocol.ServerFrame) {
	at := protocol.Position{Epoch: f.Epoch, Seq: f.Seq}
	c.read.set(at)
	if c.inbox != nil {
		c.inbox.mark(at)
	} else {
		c.handed.set(at)
	}
}

// resumeLost runs on the read goroutine after the first auth_ok of a
// connection answered a resume with "lost": it waits until the
// application has taken every message received before that auth_ok, then
// calls OnResumeLost, so that the application resynchronises between the
// messages before the gap and those after it. If the client is closed
// meanwhile, OnResumeLost is not called: Position then still names the
// lost place, and a client that resumes from it is told again.
func (c *Client) resumeLost(cn *conn, f protocol.ServerFrame) {
	c.opts.Logger.Info("client: resume lost: the server no longer has what the client missed",
		"session", f.Session, "epoch", f.Epoch, "seq", f.Seq)
	h := c.opts.OnResumeLost
	if h == nil {
		return
	}
	cn.stalled.Store(true)
	defer cn.stalled.Store(false)
	if c.inbox != nil && !c.inbox.drain(c.ctx.Done()) {
		return
	}
	c.guard("OnResumeLost", h)
}
