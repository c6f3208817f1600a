package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/protocol"
)

// chat is the demo application: it broadcasts every client message to every
// session, sends direct messages to users' streams and, with a tick
// interval, sends every user with a session here a numbered tick.
type chat struct {
	srv    *wsauth.Server // set before the server is mounted
	logger *slog.Logger
	tick   time.Duration

	mu      sync.Mutex
	members map[string]*member             // by session id: sessions that authenticated and did not close
	users   map[wsauth.Principal]*userTick // users with a member

	ctx        context.Context // of the ticker's sends; cancelled by stop
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	due        []dueTick // the ticker's own, reused
	brokerDown bool      // the ticker's own: its last send found the broker away
}

// member is one session and its message budget.
type member struct {
	s       *wsauth.Session
	limiter *rate.Limiter // read goroutine only
}

// userTick counts a user's sessions here and the ticks this node sent the
// user. Ticks go to the user's stream, so every session of the user, on
// every node, gets them and a client that reconnects resumes them: each
// node numbers its own, 1, 2, 3… from the user's first session here, and
// says which node it is.
type userTick struct {
	sessions int
	n        int64
}

// tickMessage is the data of a tick.
type tickMessage struct {
	Tick int64  `json:"tick"`
	Node string `json:"node"`
}

// The demo's limits on what one session may send, as docs/security.md tells
// applications to have: a chat is not a firehose.
const (
	maxChatBytes = 4 << 10 // of a message's data
	chatRate     = 10      // messages a second, sustained
	chatBurst    = 20
)

func newChat(logger *slog.Logger, tick time.Duration) *chat {
	ctx, cancel := context.WithCancel(context.Background())
	return &chat{
		logger: logger, tick: tick,
		members: make(map[string]*member), users: make(map[wsauth.Principal]*userTick),
		ctx: ctx, cancel: cancel,
	}
}

// hook installs the chat's hooks in opts.
func (c *chat) hook(opts *wsauth.Options) {
	opts.OnAuthenticated = c.onAuthenticated
	opts.OnMessage = c.onMessage
	opts.OnClose = c.onClose
	opts.OnUndelivered = c.onUndelivered
}

// onAuthenticated runs on the session's read goroutine for every successful
// auth frame; only the first one adds a member.
func (c *chat) onAuthenticated(_ context.Context, s *wsauth.Session) error {
	c.mu.Lock()
	_, known := c.members[s.ID()]
	if !known {
		c.members[s.ID()] = &member{s: s, limiter: rate.NewLimiter(chatRate, chatBurst)}
		u := c.users[s.Principal()]
		if u == nil {
			u = &userTick{}
			c.users[s.Principal()] = u
		}
		u.sessions++
	}
	c.mu.Unlock()
	id := s.Identity()
	if known {
		c.logger.Debug("session reauthenticated", "session", s.ID(), "sub", id.Subject, "exp", id.ExpiresAt)
	} else {
		c.logger.Info("session authenticated", "session", s.ID(), "sub", id.Subject,
			"remote", s.RemoteAddr(), "exp", id.ExpiresAt)
	}
	return nil
}

// chatMessage is what every session receives for one client message.
type chatMessage struct {
	From string          `json:"from"`
	Data json.RawMessage `json:"data"`
}

// Error codes the demo refuses messages with (an application's own).
const (
	errorTooLarge  protocol.ErrorCode = 4013
	errorSlowDown  protocol.ErrorCode = 4029
	errorNoSuchDst protocol.ErrorCode = 4004
)

// revokeTimeout bounds telling the cluster about a revocation.
const revokeTimeout = 5 * time.Second

// onMessage runs on the sender's read goroutine. A message whose data is an
// object with a string "to" goes to that user only (every session of it,
// on every node, resumable); one with "revoke": true closes every session
// of the sender, on every node (sign out everywhere); any other is
// broadcast. With the handler's ctx, a receiver that reads but is behind
// slows the sender's reading instead of dropping anything; a receiver that
// stopped reading is skipped (ErrBufferFull).
func (c *chat) onMessage(ctx context.Context, s *wsauth.Session, m wsauth.Message) error {
	if len(m.Data) > maxChatBytes {
		return &wsauth.MessageError{Code: errorTooLarge, Message: "message too large (4 KiB at most)"}
	}
	c.mu.Lock()
	mem := c.members[s.ID()]
	c.mu.Unlock()
	if mem != nil && !mem.limiter.Allow() {
		return &wsauth.MessageError{Code: errorSlowDown, Message: "slow down (10 messages a second)"}
	}
	from := s.Principal()
	b, err := json.Marshal(chatMessage{From: from.Subject, Data: m.Data})
	if err != nil {
		return err
	}
	var direct struct {
		To     *string `json:"to"`
		Revoke bool    `json:"revoke"`
	}
	command := json.Unmarshal(m.Data, &direct) == nil // else: a chat message
	if command && direct.Revoke {
		// Revoking closes this very session first, which cancels ctx: the
		// rest of the cluster is told under a context of its own.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
		defer cancel()
		n, err := c.srv.Revoke(rctx, from)
		c.logger.Info("sessions revoked", "sub", from.Subject, "here", n, "err", err)
		return nil
	}
	if command && direct.To != nil {
		if *direct.To == "" {
			return &wsauth.MessageError{Code: errorNoSuchDst, Message: "empty \"to\""}
		}
		// The sender gets its copy too, so that all its tabs show the
		// conversation.
		to := wsauth.Principal{Issuer: from.Issuer, Subject: *direct.To}
		n, err := s.Server().SendToPrincipals(ctx, b, to, from)
		if err != nil && !errors.Is(err, wsauth.ErrBufferFull) {
			return err
		}
		c.logger.Debug("direct message", "session", s.ID(), "sub", from.Subject, "to", *direct.To, "recipients", n)
		return nil
	}
	n, err := c.srv.Broadcast(ctx, b)
	if errors.Is(err, wsauth.ErrBufferFull) {
		c.logger.Warn("message not delivered to stalled sessions", "session", s.ID(), "err", err)
	} else if err != nil {
		return err
	}
	c.logger.Debug("message broadcast", "session", s.ID(), "sub", s.Principal().Subject, "id", m.ID, "recipients", n)
	return nil
}

func (c *chat) onClose(s *wsauth.Session, ce *protocol.CloseError) {
	c.mu.Lock()
	_, known := c.members[s.ID()]
	if known {
		delete(c.members, s.ID())
		if u := c.users[s.Principal()]; u != nil {
			if u.sessions--; u.sessions == 0 {
				// Its next session here counts from 1 again: the page
				// takes a tick 1 for a new count, not for a gap.
				delete(c.users, s.Principal())
			}
		}
	}
	c.mu.Unlock()
	if known {
		c.logger.Info("session closed", "session", s.ID(), "sub", s.Principal().Subject, "code", int(ce.Code), "reason", ce.Reason)
	}
}

// onUndelivered must not block: it only logs how much was lost, never the
// data itself.
func (c *chat) onUndelivered(p wsauth.Principal, data []json.RawMessage) {
	c.logger.Warn("messages not delivered", "sub", p.Subject, "count", len(data))
}

// start starts the ticker, if the chat has a tick interval.
func (c *chat) start() {
	if c.tick <= 0 {
		return
	}
	c.wg.Add(1)
	go c.runTicker()
}

// stop stops the ticker and waits for it.
func (c *chat) stop() {
	c.cancel()
	c.wg.Wait()
}

func (c *chat) runTicker() {
	defer c.wg.Done()
	t := time.NewTicker(c.tick)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			c.sendTicks()
		}
	}
}

type dueTick struct {
	p wsauth.Principal
	n int64
}

// sendTicks sends every user with a session here its next tick, to its
// stream. A session whose token is expired buffers it; the server delivers
// it after the next auth_ok. The lock is not held while sending: with NATS,
// each send is a round trip. Only the ticker calls it.
func (c *chat) sendTicks() {
	c.mu.Lock()
	due := c.due[:0]
	for p, u := range c.users {
		u.n++
		due = append(due, dueTick{p, u.n})
	}
	c.due = due
	c.mu.Unlock()
	node := c.srv.Node()
	for _, d := range due {
		// A new slice each time: a broker keeps the data in the stream.
		data, _ := json.Marshal(tickMessage{Tick: d.n, Node: node}) // cannot fail
		_, err := c.srv.SendToPrincipals(c.ctx, data, d.p)
		switch {
		case errors.Is(err, broker.ErrUnavailable):
			// This node's sessions still got it, outside the stream. Said
			// once an outage, not once a tick.
			if !c.brokerDown {
				c.logger.Warn("broker unavailable: ticks reach this node's sessions only, and are not resumable", "err", err)
			}
			c.brokerDown = true
		case err == nil:
			if c.brokerDown {
				c.logger.Info("broker available again")
			}
			c.brokerDown = false
		case errors.Is(err, wsauth.ErrBufferFull):
			// Without a broker: that session misses this tick (its page
			// shows a gap). With one, a full session catches up instead.
			c.logger.Debug("tick not delivered to a full session", "sub", d.p.Subject, "tick", d.n)
		case c.ctx.Err() == nil:
			c.logger.Error("sending tick", "sub", d.p.Subject, "err", err)
		}
	}
}
