package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wsauth/wsauth/protocol"
)

// The client's goroutine. It owns the connection's life: every state
// change, every token fetch, every write but pongs, the refresh timer and
// reconnection. It runs from Dial's return until the client ends; before
// that, Dial's caller does the same work for the first connection.

// run serves connections until the client ends.
func (c *Client) run(cn *conn) {
	var err error
	for {
		err = c.serve(cn)
		if c.ctx.Err() != nil {
			err = ErrClosed
			break
		}
		if c.opts.DisableReconnect || !retryable(err) {
			break
		}
		if cn.stable() {
			c.bo.reset()
		}
		c.opts.Logger.Info("client: connection lost; reconnecting", logErr(err)...)
		if cn, err = c.reconnect(err); err != nil {
			break
		}
	}
	c.finish(err, true)
}

// connect fetches a token, opens a socket, authenticates and returns the
// connection once auth_ok has been handled. The token is fetched before
// dialing so that a slow identity provider does not eat the server's auth
// timeout. It goes in the auth frame, or on the upgrade (credentials.go).
func (c *Client) connect(ctx context.Context) (*conn, error) {
	c.setState(Connecting)
	tok, err := c.token(ctx)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeoutCause(ctx, c.opts.HandshakeTimeout, errHandshakeTimeout)
	defer cancel()
	cr, err := c.credentialFor(hctx, tok)
	if err != nil {
		return nil, err
	}
	cn := newConn(c)
	if err := c.dial(hctx, cn, cr); err != nil {
		cn.cancel()
		return nil, err
	}
	c.setState(Authenticating)
	c.opts.Logger.Debug("client: connected; authenticating", "credential", cr.kind())
	go cn.readLoop()
	cn.lastAuth = c.opts.Clock.Now()
	cn.authSent(tok) // a ticket's session is that of the token exchanged for it
	if cr.inBand() {
		auth := protocol.ClientFrame{Type: protocol.TypeAuth, Token: tok}
		if at, ok := c.read.get(); ok {
			auth.Resume = &at // the server said it keeps streams, or Options.Resume
		}
		_ = cn.write(protocol.AppendClient(nil, auth)) // a failed write ends the read loop
	} // else the server authenticated the upgrade: auth_ok comes first
	for {
		select {
		case <-hctx.Done():
			cn.shutdown(context.Cause(hctx), protocol.CloseNormal, "")
			return nil, context.Cause(hctx)
		case <-cn.done:
			err := cn.endErr()
			var ce *protocol.CloseError
			if cr.bearer != "" && errors.As(err, &ce) && ce.Code == protocol.CloseAuthTimeout {
				c.opts.Logger.Warn("client: the server ignored the token in the Authorization header; " +
					"does it accept one (wsauth.Options.TokenInHeader)?")
			}
			return nil, err
		case <-cn.signal:
			for {
				ev, ok := cn.pop()
				if !ok {
					break
				}
				if ev.kind == evAuthOK {
					c.activate(cn, ev.frame)
					cn.notify() // events after auth_ok are the client goroutine's
					return cn, nil
				}
			}
		}
	}
}

// reconnect waits out the backoff and connects, again and again, until it
// succeeds, the client is closed, or an attempt fails for good. cause is
// why the previous connection or attempt ended.
func (c *Client) reconnect(cause error) (*conn, error) {
	for {
		c.setState(Connecting)
		d := c.bo.next()
		var he *HandshakeError
		var ce *protocol.CloseError
		switch {
		case errors.As(cause, &he) && he.RetryAfter > 0:
			d = max(d, min(he.RetryAfter, c.opts.Backoff.Max))
		case errors.As(cause, &ce) && ce.Code == protocol.CloseTooManyRequests:
			d = max(d, c.opts.Backoff.Max)
		}
		if !c.sleep(d) {
			return nil, ErrClosed
		}
		cn, err := c.connect(c.ctx)
		if err == nil {
			return cn, nil
		}
		if c.ctx.Err() != nil {
			return nil, ErrClosed
		}
		if !retryable(err) {
			return nil, err
		}
		c.opts.Logger.Info("client: reconnection failed; retrying", logErr(err)...)
		cause = err
	}
}

// sleep waits d on the client's clock; false if the client was closed.
func (c *Client) sleep(d time.Duration) bool {
	ch := make(chan struct{})
	t := c.opts.Clock.AfterFunc(d, func() { close(ch) })
	select {
	case <-ch:
		return true
	case <-c.ctx.Done():
		t.Stop()
		return false
	}
}

// serve runs an authenticated connection until it ends and returns why.
func (c *Client) serve(cn *conn) error {
	defer cn.stopTimers()
	c.flush(cn)
	for {
		select {
		case <-c.ctx.Done():
			cn.shutdown(ErrClosed, protocol.CloseNormal, "")
			return ErrClosed
		case <-cn.done:
			return cn.endErr()
		case <-cn.signal:
			for {
				ev, ok := cn.pop()
				if !ok {
					break
				}
				if err := c.handle(cn, ev); err != nil {
					code, reason := closeFrameFor(err)
					cn.shutdown(err, code, reason)
					return err
				}
			}
			c.flush(cn)
		case <-c.kick:
			c.flush(cn)
		}
	}
}

// closeFrameFor returns the close frame with which the client ends a
// connection for err, a reason of its own.
func closeFrameFor(err error) (protocol.CloseCode, string) {
	var ce *protocol.CloseError
	switch {
	case errors.Is(err, errSubjectChanged):
		return protocol.CloseMalformed, "subject changed"
	case errors.As(err, &ce) && ce.Code == protocol.CloseAbnormal: // a timeout
		return protocol.CloseNormal, ce.Reason
	}
	return protocol.CloseNormal, ""
}

// handle acts on one event of cn. Events are handled in the order the read
// goroutine saw the frames, so a reauth_required that the server sent
// before it processed the client's auth frame is handled while the client
// is still Reauthenticating, and ignored: that auth answers it.
func (c *Client) handle(cn *conn, ev event) error {
	switch ev.kind {
	case evAuthOK:
		if cn.authed && ev.frame.Subject != c.Subject() {
			// The server swapped the identity of a live session: nothing
			// the client sends any more is what its user meant to send.
			return errSubjectChanged
		}
		c.activate(cn, ev.frame)
	case evReauth:
		if c.State() == Active {
			return c.reauth(cn, "server asked")
		}
	case evRefresh:
		if cn.refresh.current(ev) && c.State() == Active {
			return c.reauth(cn, "token expires soon")
		}
	case evRefused:
		if c.State() != Reauthenticating {
			break
		}
		cn.reauthDue.stop()
		if ev.frame.Code == protocol.ErrorTooManyRequests {
			// Refreshed too soon after the last auth (by the server's
			// clock): the session keeps its token; try again once the
			// server's interval has passed. (The timer is armed before
			// OnState hears of the change.)
			cn.arm(&cn.refresh, evRefresh, reauthInterval)
			c.setState(Active)
			return nil
		}
		// The server refused the fresh token (the session would live on
		// until its current token runs out): as at connect, a token the
		// server refuses is terminal.
		return &protocol.CloseError{Code: protocol.CloseUnauthorized, Reason: ev.frame.Message}
	case evReauthTimeout:
		if cn.reauthDue.current(ev) && c.State() == Reauthenticating {
			return lostConnection("reauth timeout")
		}
	case evKeepalive:
		if cn.keepalive.current(ev) {
			return c.keepalive(cn)
		}
	}
	return nil
}

// reauth fetches a fresh token and sends it on cn, at least reauthInterval
// after the previous auth frame: sooner, it waits on the refresh timer.
// Its auth_ok arrives as an event. It returns an error only for a token
// source failure, which ends the client.
func (c *Client) reauth(cn *conn, why string) error {
	if wait := cn.lastAuth.Add(reauthInterval).Sub(c.opts.Clock.Now()); wait > 0 {
		cn.arm(&cn.refresh, evRefresh, wait)
		return nil
	}
	c.setState(Reauthenticating)
	cn.refresh.stop()
	c.opts.Logger.Debug("client: reauthenticating", "session", c.Session(), "why", why)
	tok, err := c.token(cn.ctx)
	if err != nil {
		if cn.ctx.Err() != nil {
			return nil // the connection ended or the client is closing: serve sees it
		}
		return err
	}
	cn.lastAuth = c.opts.Clock.Now()
	cn.authSent(tok)
	if cn.write(protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeAuth, Token: tok})) == nil {
		cn.arm(&cn.reauthDue, evReauthTimeout, c.opts.ReauthTimeout)
	} // else the connection ended: serve sees it
	return nil
}

// keepalive runs when the keepalive timer fires: PingInterval after the
// first auth_ok or the last check, it writes a ping; PongTimeout after
// that, it checks that some frame arrived since. Without one the server is
// taken for dead, unless the read goroutine waits for the application: then
// the client cannot see what arrived, and the next ping's write is what
// notices a server that closed or reset the connection.
func (c *Client) keepalive(cn *conn) error {
	if !cn.pinged {
		cn.readsAtPing = cn.reads.Load()
		if cn.ping() != nil {
			return nil // the connection ended: serve sees it
		}
		cn.pinged = true
		cn.arm(&cn.keepalive, evKeepalive, c.opts.PongTimeout)
		return nil
	}
	if cn.reads.Load() == cn.readsAtPing && !cn.stalled.Load() {
		return lostConnection("keepalive timeout")
	}
	cn.pinged = false
	cn.arm(&cn.keepalive, evKeepalive, max(c.opts.PingInterval-c.opts.PongTimeout, 0))
	return nil
}

// authSent records tok as the token of the auth just sent on cn, to carry in
// messages once its auth_ok arrives; without Options.TokenPerMessage the
// client keeps no token.
func (cn *conn) authSent(tok string) {
	if cn.c.opts.TokenPerMessage {
		cn.sentToken = tok
	}
}

// stable reports whether cn stayed authenticated long enough, Backoff.Max,
// to start the backoff count again after it ended.
func (cn *conn) stable() bool {
	return cn.authed && cn.c.opts.Clock.Now().Sub(cn.activeAt) >= cn.c.opts.Backoff.Max
}

// activate handles auth_ok: the connection (again) is Active, with the
// token just accepted for messages (Options.TokenPerMessage), the messages
// refused for an expired token go first, and the early refresh is armed;
// the first auth_ok of a socket starts its keepalive.
func (c *Client) activate(cn *conn, f protocol.ServerFrame) {
	now := c.opts.Clock.Now()
	cn.reauthDue.stop()
	cn.token = cn.sentToken
	if !cn.authed {
		cn.authed = true
		cn.activeAt = now
		if c.opts.PingInterval > 0 {
			cn.arm(&cn.keepalive, evKeepalive, c.opts.PingInterval)
		}
	}
	var exp time.Time
	if f.Exp > 0 {
		exp = time.Unix(f.Exp, 0)
	}
	c.mu.Lock()
	c.session, c.subject, c.exp = f.Session, f.Subject, exp
	if len(c.resend) > 0 {
		c.queue = append(c.resend, c.queue...)
		c.resend = nil
	}
	// Everything written before this auth_ok has been processed or refused.
	c.sent.reset()
	c.mu.Unlock()
	cn.armRefresh(now, exp)
	c.opts.Logger.Debug("client: authenticated", "session", f.Session, "sub", f.Subject, "exp", f.Exp)
	c.setState(Active)
}

// flush writes queued messages, in order, while the client is Active: so
// with Options.TokenPerMessage each carries a token the server accepted.
func (c *Client) flush(cn *conn) {
	for c.ctx.Err() == nil && !cn.ended() {
		c.mu.Lock()
		if c.state != Active || len(c.queue) == 0 {
			c.mu.Unlock()
			return
		}
		it := c.queue[0]
		c.queue[0] = item{}
		if len(c.queue) >= c.opts.QueueSize { // Send may be waiting for room
			close(c.space)
			c.space = make(chan struct{})
		}
		c.queue = c.queue[1:]
		c.sent.push(it)
		c.mu.Unlock()

		c.buf = protocol.AppendClient(c.buf[:0], protocol.ClientFrame{Type: protocol.TypeMessage, ID: it.id, Data: it.data, Token: cn.token})
		if err := cn.write(c.buf); err != nil {
			// Not written in full: the server cannot have processed it.
			c.mu.Lock()
			c.sent.dropNewest()
			c.queue = append([]item{it}, c.queue...)
			c.mu.Unlock()
			return
		}
	}
}

// token asks the token source for a token.
func (c *Client) token(ctx context.Context) (string, error) {
	tok, err := c.opts.Token.Token(ctx)
	if err == nil && tok == "" {
		err = errors.New("empty token")
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrTokenSource, err)
	}
	return tok, nil
}

// finish ends the client with err (unless it already has an error); logged
// says whether to log it (Dial returns its error instead).
func (c *Client) finish(err error, logged bool) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	err = c.err
	c.state = Closed
	dropped := len(c.queue) + len(c.resend)
	c.queue, c.resend = nil, nil
	c.sent.reset()
	close(c.space)
	c.mu.Unlock()
	c.cancel()
	if c.hc != nil {
		c.hc.CloseIdleConnections()
	}
	switch {
	case !logged:
	case errors.Is(err, ErrClosed):
		c.opts.Logger.Debug("client: closed", "dropped", dropped)
	default:
		c.opts.Logger.Info("client: ended", append(logErr(err), "dropped", dropped)...)
	}
	if c.report {
		c.callOnState(Closed)
	}
	if c.inbox != nil {
		c.inbox.end()
	}
	close(c.done)
}

// logErr returns log attributes for a connection error: code and reason
// for a close, the error text otherwise, a refused upgrade or ticket
// exchange included (never a token: neither the server's reasons nor our
// errors contain one).
func logErr(err error) []any {
	var ce *protocol.CloseError
	var he *HandshakeError
	if errors.As(err, &ce) && !errors.As(err, &he) {
		return []any{"code", int(ce.Code), "reason", ce.Reason}
	}
	return []any{"err", err}
}
