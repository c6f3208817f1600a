package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

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

// member is one session and the number of the last tick sent to it.
type member struct {
	s     *wsauth.Session
	ticks int64
}

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
		c.members[s.ID()] = &member{s: s}
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

// onMessage runs on the sender's read goroutine and broadcasts the message.
// With the handler's ctx, Broadcast waits while a receiver that reads is
// behind, which slows the sender's reading instead of dropping anything; a
// receiver that stopped reading is skipped (ErrBufferFull).
func (c *chat) onMessage(ctx context.Context, s *wsauth.Session, m wsauth.Message) error {
	b, err := json.Marshal(chatMessage{From: s.Principal().Subject, Data: m.Data})
	if err != nil {
		return err
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
