package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/protocol"
)

// chat is the demo application: it broadcasts every client message to every
// session and, with a tick interval, sends each session a numbered tick.
type chat struct {
	srv    *wsauth.Server // set before the server is mounted
	logger *slog.Logger
	tick   time.Duration

	mu      sync.Mutex
	members map[string]*member // by session id: sessions that authenticated and did not close

	done chan struct{}
	wg   sync.WaitGroup
}

// member is one session, the number of the last tick sent to it, and its
// message budget.
type member struct {
	s       *wsauth.Session
	ticks   int64
	limiter *rate.Limiter // read goroutine only
}

// The demo's limits on what one session may send, as docs/security.md tells
// applications to have: a chat is not a firehose.
const (
	maxChatBytes = 4 << 10 // of a message's data
	chatRate     = 10      // messages a second, sustained
	chatBurst    = 20
)

func newChat(logger *slog.Logger, tick time.Duration) *chat {
	return &chat{logger: logger, tick: tick, members: make(map[string]*member), done: make(chan struct{})}
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

// onMessage runs on the sender's read goroutine. A message whose data is an
// object with a string "to" goes to that user only (every session of it,
// on every node, resumable); any other is broadcast. With the handler's
// ctx, a receiver that reads but is behind slows the sender's reading
// instead of dropping anything; a receiver that stopped reading is skipped
// (ErrBufferFull).
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
		To *string `json:"to"`
	}
	if json.Unmarshal(m.Data, &direct) == nil && direct.To != nil {
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
	delete(c.members, s.ID())
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
	close(c.done)
	c.wg.Wait()
}

func (c *chat) runTicker() {
	defer c.wg.Done()
	t := time.NewTicker(c.tick)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			c.sendTicks()
		}
	}
}

// sendTicks sends every member its next tick. A session whose token is
// expired buffers it; the server delivers it after the next auth_ok.
func (c *chat) sendTicks() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var buf []byte
	for id, m := range c.members {
		m.ticks++
		buf = append(buf[:0], `{"tick":`...)
		buf = strconv.AppendInt(buf, m.ticks, 10)
		buf = append(buf, '}')
		// Send copies the data into its frame; buf can be reused.
		switch err := m.s.Send(buf); {
		case errors.Is(err, wsauth.ErrBufferFull):
			m.ticks-- // not sent: the next tick carries this number
		case err != nil && !errors.Is(err, wsauth.ErrSessionClosed):
			c.logger.Error("sending tick", "session", id, "err", err)
		}
	}
}
