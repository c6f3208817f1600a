package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsauth/wsauth/protocol"
)

// reauthInterval is the server's least time between two verified auth
// frames of a session (docs/protocol.md). The client leaves at least this
// long, on its Clock, between two auth frames on a socket, whatever asks
// for the second: its own refresh, or a server that sends reauth_required
// again and again.
const reauthInterval = time.Second

// Client is an authenticated connection to a wsauth server that stays
// authenticated (reauthenticating on the same socket) and connected
// (reconnecting after retryable closes) until Close or a terminal error.
// Its methods are safe for concurrent use.
type Client struct {
	opts   Options
	url    *url.URL
	addr   string // host:port to dial
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	inbox  *inbox        // messages for Receive; nil when OnMessage is set
	kick   chan struct{} // capacity 1: the queue may be flushable
	bo     backoff       // client goroutine only
	buf    []byte        // frame buffer, client goroutine only
	// ticketURL is Options.TicketURL parsed, hc the HTTP client of the
	// ticket exchange; both nil without tickets.
	ticketURL *url.URL
	hc        *http.Client
	// report says whether setState reports to OnState: not for Dial's own
	// transitions. Set by Dial before it starts the client's goroutine.
	report bool

	closing atomic.Bool   // Close was called
	pongs   atomic.Uint64 // pongs received, for tests

	// The client's place in the user's stream (stream.go): what the next
	// connection resumes from, and what the application has got.
	read, handed streamPos

	mu      sync.Mutex
	state   State
	err     error // terminal error, set once
	session string
	subject string
	exp     time.Time
	seq     uint64        // message ids
	queue   []item        // accepted by Send, not yet written, in order
	resend  []item        // refused with error 4401: written first after auth_ok
	sent    window        // written since the last auth_ok
	space   chan struct{} // closed (and replaced) when a full queue shrinks
}

// item is one message of Send with the id the client gave it.
type item struct {
	id   string
	data json.RawMessage // never nil for a live item
}

// Dial connects to the wsauth endpoint at rawURL (ws:// or wss://),
// authenticates with a token from opts.Token and returns once the server
// has answered auth_ok. ctx bounds only this first connection: the client
// then runs until Close or a terminal error (see Err). To tie its life to a
// context, use context.AfterFunc(ctx, func() { c.Close() }).
//
// Dial makes one attempt. If the server closes the connection before
// auth_ok, the error is a *protocol.CloseError (4401 for a refused token); a
// refused upgrade or ticket exchange is a *HandshakeError (a 401, a token
// refused there, also matches a 4401 *protocol.CloseError); a failing
// token source matches ErrTokenSource. Dial calls no OnState: its
// transitions are not reported (see Options.OnState).
func Dial(ctx context.Context, rawURL string, opts Options) (*Client, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	u, addr, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	var ticketURL *url.URL
	if o.TicketURL != "" {
		if ticketURL, err = parseTicketURL(o.TicketURL, u); err != nil {
			return nil, err
		}
	}
	c := &Client{
		opts:  o,
		url:   u,
		addr:  addr,
		done:  make(chan struct{}),
		kick:  make(chan struct{}, 1),
		bo:    backoff{cfg: o.Backoff},
		sent:  window{items: make([]item, o.QueueSize)},
		space: make(chan struct{}),
	}
	if ticketURL != nil {
		c.ticketURL, c.hc = ticketURL, newTicketClient(o)
	}
	if o.Resume != nil {
		c.read.set(*o.Resume)
		c.handed.set(*o.Resume)
	}
	if o.OnMessage == nil {
		c.inbox = newInbox(&c.handed)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	cn, err := c.connect(ctx)
	if err != nil {
		c.finish(err, false)
		return nil, err
	}
	c.report = true
	go c.run(cn)
	return c, nil
}

func parseURL(rawURL string) (*url.URL, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", fmt.Errorf("client: bad URL: %w", err)
	}
	port := u.Port()
	switch u.Scheme {
	case "ws":
		if port == "" {
			port = "80"
		}
	case "wss":
		if port == "" {
			port = "443"
		}
	default:
		return nil, "", errors.New("client: URL scheme must be ws or wss")
	}
	if u.Hostname() == "" {
		return nil, "", errors.New("client: URL has no host")
	}
	return u, net.JoinHostPort(u.Hostname(), port), nil
}

// Send queues data, one JSON value, to be sent as a message frame. It
// returns once the message is queued, before it is written. Messages are
// written in the order Send accepted them, only while the client is Active:
// those sent while it connects or reauthenticates wait in the queue and go
// out after auth_ok. When the queue is full (Options.QueueSize), Send waits
// for room until ctx ends, then returns an error matching both
// ErrQueueFull and ctx's error.
//
// Each message gets an id, a per-client sequence number, which the server
// sees as the message id and echoes as the ref of an error frame. A message
// the server refuses with error 4401 (its token had expired: not processed)
// is sent again after the next auth_ok. A message written to a connection
// that is then lost may or may not have reached the server; it is not sent
// again. Messages still queued when the client ends are dropped.
//
// After the client ended, Send returns Err().
func (c *Client) Send(ctx context.Context, data json.RawMessage) error {
	if !protocol.ValidData(data) {
		return ErrInvalidData
	}
	data = bytes.Clone(data)
	for {
		c.mu.Lock()
		if c.state == Closed {
			err := c.err
			c.mu.Unlock()
			return err
		}
		if len(c.queue) < c.opts.QueueSize {
			c.seq++
			c.queue = append(c.queue, item{id: strconv.FormatUint(c.seq, 10), data: data})
			c.mu.Unlock()
			c.flushSoon()
			return nil
		}
		space := c.space
		c.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrQueueFull, context.Cause(ctx))
		}
	}
}

// Receive returns the data of the next message from the server, in order,
// waiting until one arrives or ctx ends. Once the client has ended it
// returns the messages already received, then Err(); after Close it returns
// ErrClosed at once. With Options.OnMessage set it returns an error.
//
// Up to 64 received messages, and up to 1 MiB of them (but always one, of
// up to Options.ReadLimit), wait for Receive; past that the client stops
// reading the socket, so an application that does not keep up makes the
// server buffer (and, past its limit, close with 4413, after which the
// client reconnects). Meanwhile the client still notices a dead
// connection when a write to it fails (a message, or a ping: see
// Options.PingInterval) and reconnects; the messages it had read stay
// here for Receive, in order, ahead of those of the next connection (which
// resumes the user's stream after them: see Position).
func (c *Client) Receive(ctx context.Context) (json.RawMessage, error) {
	if c.inbox == nil {
		return nil, errReceiveWithHandler
	}
	if c.closing.Load() {
		return nil, c.errOr(ErrClosed)
	}
	data, ok, err := c.inbox.take(ctx)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, c.Err()
	}
	return data, nil
}

// Session returns the session id of the last auth_ok; it changes when the
// client reconnects, not when it reauthenticates.
func (c *Client) Session() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// Subject returns the subject of the last auth_ok.
func (c *Client) Subject() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subject
}

// Expiry returns the token expiry of the last auth_ok (whole seconds); zero
// if the server ignores expiry.
func (c *Client) Expiry() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exp
}

// State returns the client's current state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Close closes the connection with 1000 (normal closure), stops
// reconnecting and waits until every goroutine of the client has returned,
// including a running OnMessage, OnError or OnState callback: do not call
// it from one of them. Messages still queued are dropped. Close always
// returns nil; calling it again does nothing.
func (c *Client) Close() error {
	c.closing.Store(true)
	c.cancel()
	<-c.done
	return nil
}

// Done returns a channel that is closed when the client has ended and all
// its goroutines have returned.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client ended, or nil while it runs: ErrClosed after
// Close; a *protocol.CloseError for a terminal close code (or any close
// code with DisableReconnect), e.g. 4401 when a fresh token was refused,
// 4403 when the session was revoked, 1009 for a message over
// Options.ReadLimit, or, with DisableReconnect, 1006 for a lost connection
// (reason "connection lost", or "reauth timeout" and "keepalive timeout"
// when the client gave up on an unresponsive server); an error matching
// ErrTokenSource; one matching protocol.ErrMalformed for a server that
// broke the protocol (a malformed frame, or an auth_ok naming another
// subject than the socket's first); or the last connection error when
// reconnecting became pointless (a *HandshakeError such as 403, or 401
// for a token refused on the upgrade or by the ticket exchange, which
// also matches a 4401 *protocol.CloseError).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Client) errOr(def error) error {
	if err := c.Err(); err != nil {
		return err
	}
	return def
}

// flushSoon wakes the client's goroutine to write queued messages.
func (c *Client) flushSoon() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// deliver hands a message to OnMessage or Receive, and moves the client's
// stream position past it if it has one. It runs on the read goroutine;
// waiting here is what makes a slow reader slow the server down. The wait
// for Receive ends when the connection is found dead (cn.ctx).
func (c *Client) deliver(cn *conn, f protocol.ServerFrame) {
	at, moves := protocol.Position{Epoch: f.Epoch, Seq: f.Seq}, f.Seq > 0
	if h := c.opts.OnMessage; h != nil {
		c.guard("OnMessage", func() { h(f.Data) })
		if moves {
			c.handed.set(at)
		}
	} else {
		c.inbox.put(entry{data: f.Data, at: at, moves: moves}, cn.ctx.Done())
	}
	if moves {
		c.read.set(at)
	}
}

// reasonTokenRequired is the message of the error 4401 with which a
// server that wants a token per message refuses a message without one
// (docs/protocol.md, section 2).
const reasonTokenRequired = "token required"

// onErrorFrame runs on the read goroutine. The server writes the error
// frames of an auth frame's predecessors before its auth_ok, so every 4401
// refusal is known when the client's goroutine handles that auth_ok. A
// 4401 for a message without a token is reported, not resent: sent again
// after a reauth, it would carry no token again (the client lacks
// Options.TokenPerMessage).
func (c *Client) onErrorFrame(f protocol.ServerFrame) {
	ef := ErrorFrame{Code: f.Code, Message: f.Message, Ref: f.Ref}
	c.mu.Lock()
	if f.Ref != "" {
		if f.Code == protocol.ErrorReauthRequired && f.Message != reasonTokenRequired {
			if it, ok := c.sent.take(f.Ref); ok {
				c.resend = append(c.resend, it)
				c.mu.Unlock()
				c.opts.Logger.Debug("client: message refused while the token was expired; will resend",
					"id", it.id)
				return
			}
		}
		ef.Data = c.sent.find(f.Ref)
	}
	c.mu.Unlock()
	if h := c.opts.OnError; h != nil {
		c.guard("OnError", func() { h(ef) })
		return
	}
	c.opts.Logger.Info("client: server refused a message", "code", ef.Code, "message", ef.Message, "ref", ef.Ref)
}

// guard runs an application callback, turning a panic into a logged error.
func (c *Client) guard(name string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			c.opts.Logger.Error("client: callback panicked", "callback", name,
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	f()
}

func (c *Client) callOnState(s State) {
	if h := c.opts.OnState; h != nil {
		c.guard("OnState", func() { h(s) })
	}
}

// setState changes the state and reports a change to OnState, once Dial
// has connected. Only the client's goroutine (or Dial's caller, before it
// starts that goroutine) calls it, so OnState sees changes in order.
func (c *Client) setState(s State) {
	c.mu.Lock()
	prev := c.state
	c.state = s
	c.mu.Unlock()
	if prev != s && c.report {
		c.callOnState(s)
	}
}

// window keeps the last len(items) messages written since the last auth_ok,
// to resend those refused with error 4401 and to show the data of refused
// messages in ErrorFrame.
type window struct {
	items      []item
	head, size int
}

func (w *window) push(it item) {
	if len(w.items) == 0 {
		return
	}
	if w.size == len(w.items) {
		w.items[w.head] = it
		w.head = (w.head + 1) % len(w.items)
		return
	}
	w.items[(w.head+w.size)%len(w.items)] = it
	w.size++
}

// dropNewest forgets the message pushed last (its write failed).
func (w *window) dropNewest() {
	if w.size > 0 {
		w.size--
		w.items[(w.head+w.size)%len(w.items)] = item{}
	}
}

func (w *window) slot(id string) *item {
	for i := 0; i < w.size; i++ {
		if p := &w.items[(w.head+i)%len(w.items)]; p.data != nil && p.id == id {
			return p
		}
	}
	return nil
}

// take removes and returns the message with that id.
func (w *window) take(id string) (item, bool) {
	p := w.slot(id)
	if p == nil {
		return item{}, false
	}
	it := *p
	*p = item{} // a hole: a later 4401 for the same id finds nothing
	return it, true
}

func (w *window) find(id string) json.RawMessage {
	if p := w.slot(id); p != nil {
		return p.data
	}
	return nil
}

func (w *window) reset() {
	clear(w.items)
	w.head, w.size = 0, 0
}
