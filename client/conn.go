package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/reauth"
)

// conn is one socket, from the upgrade until its read loop has returned.
// Its read goroutine (gws's ReadLoop) decodes frames: it hands messages and
// error frames to the client at once and queues auth_ok and reauth_required
// as events for the client's goroutine, which owns every state change and
// every write but pongs. The connection's timers queue events too.
type conn struct {
	c      *Client
	socket *gws.Conn
	// ctx ends when the connection ends, when a write to it failed, or when
	// the client is closed: a read goroutine waiting for the application
	// gives up then, so that a dead connection is noticed even while the
	// application does not take its messages.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the read loop has returned
	signal chan struct{} // capacity 1: events were queued

	mu     sync.Mutex
	events []event
	err    error // why the connection ended; the first reason wins

	// Written by the read goroutine, read by the client's goroutine.
	reads   atomic.Uint64 // frames read, pongs included
	stalled atomic.Bool   // the read goroutine waits for the application

	// Used by the read goroutine only.
	started bool // the first auth_ok was read

	// Used by the client's goroutine only.
	refresh     timerSlot // early refresh, or a reauth waiting out reauthInterval
	reauthDue   timerSlot // ReauthTimeout of the auth frame in flight
	keepalive   timerSlot // the next ping, or the PongTimeout of the last one
	pinged      bool      // keepalive is timing the answer to a ping
	readsAtPing uint64
	authed      bool      // an auth_ok arrived on this socket
	activeAt    time.Time // Clock time of the first auth_ok
	lastAuth    time.Time // Clock time of the last auth frame written
	// With Options.TokenPerMessage (empty otherwise): the token of the
	// last auth sent on this socket (auth frame, header or ticket), and
	// the one the server last accepted, which messages carry. An auth_ok
	// answers the last auth sent: a socket has one in flight at most.
	sentToken, token string
}

var _ gws.Event = (*conn)(nil)

type eventKind uint8

const (
	evAuthOK        eventKind = iota // auth_ok, in frame
	evReauth                         // reauth_required
	evRefused                        // an error frame without ref: the server refused an auth frame
	evRefresh                        // the refresh timer fired
	evReauthTimeout                  // the reauthDue timer fired
	evKeepalive                      // the keepalive timer fired
)

// fromServer reports whether events of this kind come from server frames,
// which a hostile server can send without end.
func (k eventKind) fromServer() bool { return k <= evRefused }

type event struct {
	kind  eventKind
	frame protocol.ServerFrame
	gen   uint64 // timer events: the generation of the timer that fired
}

// maxEvents bounds the queue of server frame events against a server that
// floods reauth_required frames; a well-behaved one leaves at most two
// queued. Timer events are never dropped (at most one per timer is queued).
const maxEvents = 16

// timerSlot is one Clock timer of a connection. Its events carry the
// generation they were armed in, so that an event queued by a timer that
// was stopped or armed again since is recognised as stale.
type timerSlot struct {
	t   reauth.Timer
	gen uint64
}

// arm (re)starts the timer of s: in d, it queues an event of kind.
func (cn *conn) arm(s *timerSlot, kind eventKind, d time.Duration) {
	s.stop()
	gen := s.gen
	s.t = cn.c.opts.Clock.AfterFunc(d, func() { cn.push(event{kind: kind, gen: gen}) })
}

// stop stops the timer; a callback already running queues a stale event.
func (s *timerSlot) stop() {
	if s.t != nil {
		s.t.Stop()
		s.t = nil
	}
	s.gen++
}

// current reports whether ev comes from the timer as last armed.
func (s *timerSlot) current(ev event) bool { return s.t != nil && ev.gen == s.gen }

func (cn *conn) stopTimers() {
	cn.refresh.stop()
	cn.reauthDue.stop()
	cn.keepalive.stop()
}

func newConn(c *Client) *conn {
	cn := &conn{c: c, done: make(chan struct{}), signal: make(chan struct{}, 1)}
	cn.ctx, cn.cancel = context.WithCancel(c.ctx)
	return cn
}

func (cn *conn) push(ev event) {
	cn.mu.Lock()
	n := len(cn.events)
	if ev.kind.fromServer() && (n >= maxEvents || (ev.kind == evReauth && n > 0 && cn.events[n-1].kind == evReauth)) {
		cn.mu.Unlock()
		return
	}
	cn.events = append(cn.events, ev)
	cn.mu.Unlock()
	cn.notify()
}

func (cn *conn) notify() {
	select {
	case cn.signal <- struct{}{}:
	default:
	}
}

func (cn *conn) pop() (event, bool) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if len(cn.events) == 0 {
		return event{}, false
	}
	ev := cn.events[0]
	cn.events[0] = event{}
	cn.events = cn.events[1:]
	return ev, true
}

func (cn *conn) setErr(err error) {
	cn.mu.Lock()
	if cn.err == nil {
		cn.err = err
	}
	cn.mu.Unlock()
}

// endErr returns why the connection ended; call it after done is closed.
func (cn *conn) endErr() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.err == nil { // gws always reports a close; this is a backstop
		return &protocol.CloseError{Code: protocol.CloseAbnormal, Reason: "connection lost"}
	}
	return cn.err
}

func (cn *conn) ended() bool {
	select {
	case <-cn.done:
		return true
	default:
		return cn.ctx.Err() != nil
	}
}

// write writes one text frame. A failed write closes the socket (gws does)
// and cn.ctx, so that the read loop ends even if it waits for the
// application: callers need not handle the error beyond stopping.
func (cn *conn) write(frame []byte) error {
	return cn.wrote(cn.socket.WriteMessage(gws.OpcodeText, frame))
}

// ping writes a ping frame, as write does a text frame.
func (cn *conn) ping() error {
	return cn.wrote(cn.socket.WritePing(nil))
}

func (cn *conn) wrote(err error) error {
	if err != nil {
		cn.cancel()
	}
	return err
}

// shutdown closes the connection with code, recording err as the reason it
// ended, and waits for the read loop to return.
func (cn *conn) shutdown(err error, code protocol.CloseCode, reason string) {
	cn.setErr(err)
	cn.cancel() // unblocks a read goroutine waiting to deliver a message
	_ = cn.socket.WriteClose(uint16(code), []byte(reason))
	<-cn.done
}

func (cn *conn) readLoop() {
	defer close(cn.done)
	cn.socket.ReadLoop()
}

// armRefresh schedules the early refresh for a token expiring at exp,
// authenticated at now: RefreshBefore before exp, capped at half the
// remaining lifetime (as the server caps its reauth lead), so that a
// short-lived token, or a source that keeps returning the same token, costs
// a few halvings of the remaining time rather than a refresh loop.
// With a non-positive lifetime (the clocks disagree) only the server's
// reauth_required triggers a refresh. Clock durations do not overflow: a
// token living for years gets a timer of years.
func (cn *conn) armRefresh(now, exp time.Time) {
	cn.refresh.stop()
	d, ok := refreshDelay(now, exp, cn.c.opts.RefreshBefore)
	if !ok {
		return
	}
	cn.arm(&cn.refresh, evRefresh, d)
}

func refreshDelay(now, exp time.Time, before time.Duration) (time.Duration, bool) {
	if exp.IsZero() {
		return 0, false
	}
	life := exp.Sub(now) // saturates at the largest Duration
	if life <= 0 {
		return 0, false
	}
	return life - min(before, life/2), true
}

// gws event handler. gws calls these on the read goroutine, one at a time.

// OnOpen implements gws.Event.
func (cn *conn) OnOpen(*gws.Conn) {}

// OnClose implements gws.Event.
func (cn *conn) OnClose(_ *gws.Conn, err error) {
	cn.setErr(closeErrorFrom(err))
	cn.cancel()
}

// OnPing implements gws.Event.
func (cn *conn) OnPing(socket *gws.Conn, payload []byte) {
	cn.reads.Add(1)
	_ = cn.wrote(socket.WritePong(payload))
}

// OnPong implements gws.Event.
func (cn *conn) OnPong(*gws.Conn, []byte) {
	cn.reads.Add(1)
	cn.c.pongs.Add(1)
}

// OnMessage implements gws.Event.
func (cn *conn) OnMessage(socket *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	cn.reads.Add(1)
	if cn.ctx.Err() != nil {
		// The connection was found dead, or the client ends it: what gws
		// still had buffered is not delivered (the message that was
		// waiting for room when that happened was), so that the inbox
		// exceeds its bounds by one message at most.
		return
	}
	if msg.Opcode != gws.OpcodeText {
		cn.fail(socket, fmt.Errorf("client: server sent a binary frame: %w", protocol.ErrMalformed))
		return
	}
	f, err := protocol.DecodeServer(msg.Bytes()) // f does not alias the buffer
	if err != nil {
		cn.fail(socket, fmt.Errorf("client: server sent a bad frame: %w", err))
		return
	}
	switch f.Type {
	case protocol.TypeMessage:
		if cn.c.repeated(f) {
			cn.c.opts.Logger.Warn("client: server repeated a stream message; dropped",
				"epoch", f.Epoch, "seq", f.Seq)
			return
		}
		cn.stalled.Store(true)
		cn.c.deliver(cn, f)
		cn.stalled.Store(false)
	case protocol.TypeError:
		if f.Ref == "" && (f.Code == protocol.ErrorReauthRequired || f.Code == protocol.ErrorTooManyRequests) {
			cn.push(event{kind: evRefused, frame: f})
			return
		}
		cn.stalled.Store(true)
		cn.c.onErrorFrame(f)
		cn.stalled.Store(false)
	case protocol.TypeAuthOK:
		// Only the first auth_ok of a connection places the session in
		// the user's stream; reauths keep it where it is.
		first := !cn.started
		cn.started = true
		if first && f.Stream {
			cn.c.startStream(f)
		}
		cn.push(event{kind: evAuthOK, frame: f})
		if first && f.Stream && f.Resume == protocol.ResumeLost {
			cn.c.resumeLost(cn, f)
		}
	case protocol.TypeReauthRequired:
		cn.push(event{kind: evReauth, frame: f})
	}
}

// fail closes the connection for a protocol violation by the server.
func (cn *conn) fail(socket *gws.Conn, err error) {
	cn.setErr(err)
	_ = socket.WriteClose(uint16(protocol.CloseMalformed), []byte("malformed frame"))
}

// dial opens the socket of cn: TCP (and TLS), then the upgrade, all bounded
// by ctx. gws's NewClient takes no context, so the client dials itself and
// hands the connection to gws.NewClientFromConn, through a netConn that
// caps the handshake deadlines gws sets at ctx's deadline and aborts them
// when ctx ends.
func (c *Client) dial(ctx context.Context, cn *conn, cr credential) error {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return ctxErr(ctx, err)
	}
	if c.url.Scheme == "wss" {
		cfg := c.opts.TLSConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = c.url.Hostname()
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return ctxErr(ctx, err)
		}
		raw = tc
	}
	deadline, _ := ctx.Deadline()
	nc := &netConn{Conn: raw, writeTimeout: c.opts.WriteTimeout, limit: deadline}
	nc.handshaking.Store(true)
	stop := context.AfterFunc(ctx, nc.abort)
	header := c.opts.Header.Clone()
	header.Set("Sec-WebSocket-Protocol", protocol.Subprotocol)
	if cr.bearer != "" {
		header.Set("Authorization", "Bearer "+cr.bearer)
	}
	socket, resp, err := gws.NewClientFromConn(cn, &gws.ClientOption{
		Addr:          c.upgradeURL(cr.ticket),
		RequestHeader: header,
		// Never shorter than ctx's deadline: gws's own timer firing first
		// would leave its request-writing goroutine blocked forever.
		HandshakeTimeout:   c.opts.HandshakeTimeout + time.Minute,
		ReadMaxPayloadSize: c.opts.ReadLimit,
		ParallelEnabled:    false, // must stay off: it reorders messages
		CheckUtf8Enabled:   false, // protocol.DecodeServer checks UTF-8
		Recovery:           c.recovery,
	}, nc)
	aborted := !stop()
	if err != nil {
		if resp != nil {
			// gws has closed the connection: what the client reads of a
			// refusal's body is what arrived with its headers, at once.
			body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBody))
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusSwitchingProtocols {
				return newHandshakeError(resp, body, cr.bearer, cr.ticket)
			}
		}
		return ctxErr(ctx, err)
	}
	if aborted {
		_ = nc.Close()
		return ctxErr(ctx, context.Canceled)
	}
	nc.endHandshake()
	cn.socket = socket
	return nil
}

// ctxErr returns why ctx ended if it did (the cause of a failed dial), else
// err. A socket deadline set from ctx's deadline may expire a moment before
// ctx's own timer: then it waits for ctx, which is due.
func ctxErr(ctx context.Context, err error) error {
	if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
		<-ctx.Done()
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// recovery is gws's panic handler: a backstop for bugs in the event
// handler (application callbacks have their own recovery).
func (c *Client) recovery(gws.Logger) {
	if r := recover(); r != nil {
		c.opts.Logger.Error("client: recovered panic in connection callback", "panic", fmt.Sprint(r))
	}
}

// netConn is the TCP (or TLS) connection under a socket. During the
// upgrade it caps the deadlines gws sets at limit and, once aborted, pins
// them in the past; afterwards it bounds every write with writeTimeout,
// and once a write failed it fails every later one at once (gws writes a
// close frame after a failed write, which would wait writeTimeout again).
type netConn struct {
	net.Conn
	writeTimeout time.Duration
	handshaking  atomic.Bool
	broken       atomic.Bool

	mu      sync.Mutex
	limit   time.Time // ctx's deadline, zero for none
	aborted bool
}

var longAgo = time.Unix(1, 0)

func (n *netConn) capLocked(t time.Time) time.Time {
	if !n.handshaking.Load() {
		return t
	}
	if n.aborted {
		return longAgo
	}
	if !n.limit.IsZero() && (t.IsZero() || t.After(n.limit)) {
		return n.limit
	}
	return t
}

func (n *netConn) SetDeadline(t time.Time) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.Conn.SetDeadline(n.capLocked(t))
}

func (n *netConn) SetReadDeadline(t time.Time) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.Conn.SetReadDeadline(n.capLocked(t))
}

func (n *netConn) SetWriteDeadline(t time.Time) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.Conn.SetWriteDeadline(n.capLocked(t))
}

func (n *netConn) Write(p []byte) (int, error) {
	if n.handshaking.Load() {
		return n.Conn.Write(p)
	}
	if n.broken.Load() {
		return 0, net.ErrClosed
	}
	if err := n.Conn.SetWriteDeadline(time.Now().Add(n.writeTimeout)); err != nil {
		return 0, err
	}
	m, err := n.Conn.Write(p)
	if err != nil {
		n.broken.Store(true)
	}
	return m, err
}

// abort makes the handshake's reads and writes fail at once.
func (n *netConn) abort() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.aborted = true
	if n.handshaking.Load() {
		_ = n.Conn.SetDeadline(longAgo)
	}
}

// endHandshake lifts the handshake deadlines.
func (n *netConn) endHandshake() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.handshaking.Store(false)
	_ = n.Conn.SetDeadline(time.Time{})
}
