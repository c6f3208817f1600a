package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/wsauth/wsauth/protocol"
)

// Target says how to reach a server.
type Target struct {
	Name string
	URL  string // ws://host:port/path
	// Auth: the server speaks the wsauth protocol; a connection sends auth
	// and is ready at auth_ok. Otherwise it is ready at the gws baseline's
	// hello frame.
	Auth bool
	// Centrifuge: the server speaks Centrifuge's JSON protocol; a
	// connection sends connect with a token and is ready at its reply, and
	// echo messages are RPCs.
	Centrifuge bool
	// Token mints or fetches the token of a subject for the first auth.
	Token TokenSource
	// Refresh answers reauth_required. Default: Token.
	Refresh TokenSource
}

// TokenSource returns a token for subject sub.
type TokenSource func(ctx context.Context, sub string) (string, error)

// tokenCache mints one token per subject and reuses it: signing an RS256
// token costs a millisecond, far more than the handshake being measured.
type tokenCache struct {
	mint TokenSource
	mu   sync.Mutex
	m    map[string]string
}

func newTokenCache(mint TokenSource) *tokenCache {
	return &tokenCache{mint: mint, m: make(map[string]string)}
}

func (c *tokenCache) get(ctx context.Context, sub string) (string, error) {
	c.mu.Lock()
	tok, ok := c.m[sub]
	c.mu.Unlock()
	if ok {
		return tok, nil
	}
	tok, err := c.mint(ctx, sub)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.m[sub] = tok
	c.mu.Unlock()
	return tok, nil
}

// Cached returns a TokenSource that asks ts once per subject.
func Cached(ts TokenSource) TokenSource { return newTokenCache(ts).get }

// HTTPTokenSource fetches tokens from a development IdP's token endpoint
// (the demo's POST /token {"sub":…,"ttl":…} -> {"token":…}).
func HTTPTokenSource(tokenURL string, ttl time.Duration) TokenSource {
	// No keep-alive: a token is fetched once per subject, and no idle
	// connection (with its goroutines) outlives the fetch.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return func(ctx context.Context, sub string) (string, error) {
		body, _ := json.Marshal(map[string]string{"sub": sub, "ttl": ttl.String()})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var out struct {
			Token string `json:"token"`
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("loadgen: token endpoint answered %s", resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
			return "", fmt.Errorf("loadgen: token endpoint answered no token: %v", err)
		}
		return out.Token, nil
	}
}

// DialOptions configures the connections of a Pool.
type DialOptions struct {
	// Subjects is the number of distinct subjects: connection i
	// authenticates as "bench-<i mod Subjects>". Default min(n, 100).
	Subjects int
	// Parallel is the number of connections dialled at once. Default 32,
	// below wsauth's default per-IP pending cap.
	Parallel int
	// LocalIP, if set, is the source address of every connection.
	LocalIP string
	// Refresh answers reauth_required; default Target.Refresh, then
	// Target.Token.
	Refresh TokenSource
	// OnData, if set, receives message frames that arrive outside a phase,
	// on the connection's read goroutine. frame is only valid during the call.
	OnData func(c *Conn, frame []byte)
	// Timeout bounds one connection's handshake and authentication.
	// Default 10s.
	Timeout time.Duration
	// TokenPerMessage puts the connection's token (the one it last
	// authenticated with) in every message frame of an echo phase, as a
	// server with wsauth.Options.TokenPerMessage requires: the frame is
	// the payload size plus its "token" member. wsauth targets only.
	// Default false: message frames carry no token.
	TokenPerMessage bool
}

func (o DialOptions) withDefaults(n int) DialOptions {
	if o.Subjects <= 0 {
		o.Subjects = min(max(n, 1), 100)
	}
	if o.Parallel <= 0 {
		o.Parallel = 32
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return o
}

// ErrRefused is returned when the server answered the upgrade with 503.
var ErrRefused = errors.New("loadgen: upgrade refused with 503")

// Pool is a set of ready connections to one target.
type Pool struct {
	target  Target
	refresh TokenSource
	opts    DialOptions
	Conns   []*Conn

	wg     sync.WaitGroup // read loops
	phase  atomic.Pointer[phase]
	closes atomic.Int64 // connections the server closed
}

// Conn is one client connection of a Pool.
type Conn struct {
	pool    *Pool
	Index   int
	Subject string
	ws      *gws.Conn
	session string // set before ready is closed

	ready    chan struct{}
	readyErr error // set before ready is closed, when the connection failed first
	once     sync.Once
	closed   chan struct{}
	closeErr error // set before closed is closed

	// Received counts message frames; Reauths the auth_ok frames after the
	// first; ErrorFrames the error frames.
	Received    atomic.Int64
	Reauths     atomic.Int64
	ErrorFrames atomic.Int64

	sendMu   sync.Mutex
	buf      []byte
	token    string // with DialOptions.TokenPerMessage: put in message frames
	ids      centrifugeIDs
	toSend   atomic.Int64 // echo messages still to send
	inFlight atomic.Int64 // echo messages sent and not answered
}

// Session returns the session id the server gave the connection.
func (c *Conn) Session() string { return c.session }

// CloseErr returns why the connection closed, nil while it is open.
func (c *Conn) CloseErr() error {
	select {
	case <-c.closed:
		return c.closeErr
	default:
		return nil
	}
}

// Dial opens n connections to t, authenticating each when t.Auth, and
// returns once all are ready. It fails, closing what it opened, if one
// cannot be opened.
func Dial(ctx context.Context, t Target, n int, opts DialOptions) (*Pool, error) {
	if opts.TokenPerMessage && !t.Auth {
		return nil, fmt.Errorf("loadgen: TokenPerMessage needs a wsauth target, not %s", t.Name)
	}
	p := newPool(t, n, opts)
	p.Conns = make([]*Conn, n)
	errs := make(chan error, p.opts.Parallel)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(p.opts.Parallel, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := p.dial(ctx, i)
				if err != nil {
					errs <- fmt.Errorf("loadgen: connection %d of %d: %w", i, n, err)
					next.Store(int64(n))
					return
				}
				p.Conns[i] = c
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil || ctx.Err() != nil {
		p.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
	return p, nil
}

func newPool(t Target, n int, opts DialOptions) *Pool {
	p := &Pool{target: t, opts: opts.withDefaults(n)}
	p.refresh = p.opts.Refresh
	if p.refresh == nil {
		p.refresh = t.Refresh
	}
	if p.refresh == nil {
		p.refresh = t.Token
	}
	return p
}

// dial opens connection i and waits until it is ready.
func (p *Pool) dial(ctx context.Context, i int) (*Conn, error) {
	c := &Conn{pool: p, Index: i, Subject: "bench-" + strconv.Itoa(i%p.opts.Subjects),
		ready: make(chan struct{}), closed: make(chan struct{})}
	copts := &gws.ClientOption{
		Addr:             p.target.URL,
		HandshakeTimeout: p.opts.Timeout,
		RequestHeader:    http.Header{},
	}
	if p.target.Auth {
		copts.RequestHeader.Set("Sec-WebSocket-Protocol", protocol.Subprotocol)
	}
	if p.opts.LocalIP != "" {
		local := &net.TCPAddr{IP: net.ParseIP(p.opts.LocalIP)}
		copts.NewDialer = func() (gws.Dialer, error) {
			return &net.Dialer{Timeout: p.opts.Timeout, LocalAddr: local}, nil
		}
	}
	ws, resp, err := gws.NewClient(c, copts)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
			return nil, ErrRefused
		}
		return nil, err
	}
	c.ws = ws
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ws.ReadLoop()
	}()
	if p.target.Auth {
		tok, err := p.target.Token(ctx, c.Subject)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.setToken(tok)
		_ = ws.WriteMessage(gws.OpcodeText, protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeAuth, Token: tok}))
	}
	if p.target.Centrifuge {
		tok, err := p.target.Token(ctx, c.Subject)
		if err != nil {
			c.Close()
			return nil, err
		}
		_ = ws.WriteMessage(gws.OpcodeText, appendCentrifugeConnect(nil, tok))
	}
	timer := time.NewTimer(p.opts.Timeout)
	defer timer.Stop()
	select {
	case <-c.ready:
		if c.readyErr != nil {
			return nil, c.readyErr
		}
		return c, nil
	case <-timer.C:
		err = errors.New("no auth_ok in time")
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.Close()
	return nil, err
}

// Close closes the connection with 1000 and waits for its read loop to
// see the close.
func (c *Conn) Close() {
	_ = c.ws.WriteClose(1000, nil)
	<-c.closed
}

// Close closes every connection and waits for their read loops.
func (p *Pool) Close() {
	for _, c := range p.Conns {
		if c != nil {
			_ = c.ws.WriteClose(1000, nil)
		}
	}
	p.wg.Wait()
}

// Closes returns how many connections the server closed (or lost) while
// the pool was open.
func (p *Pool) Closes() int64 { return p.closes.Load() }

// The gws event handler of a client connection.

func (c *Conn) OnOpen(*gws.Conn) {}

func (c *Conn) OnClose(_ *gws.Conn, err error) {
	c.closeErr = err
	if err == nil {
		c.closeErr = errors.New("closed")
	}
	c.setReady(c.closeErr)
	close(c.closed)
	var ce *gws.CloseError
	if !errors.As(err, &ce) || ce.Code != 1000 {
		c.pool.closes.Add(1)
	}
	if ph := c.pool.phase.Load(); ph != nil {
		ph.abort(fmt.Errorf("loadgen: connection %d closed during the phase: %w", c.Index, c.closeErr))
	}
}

func (c *Conn) OnPing(socket *gws.Conn, payload []byte) { _ = socket.WritePong(payload) }

func (c *Conn) OnPong(*gws.Conn, []byte) {}

var (
	prefixMessage = []byte(`{"type":"message"`)
	prefixAuthOK  = []byte(`{"type":"auth_ok"`)
	prefixReauth  = []byte(`{"type":"reauth_required"`)
	prefixError   = []byte(`{"type":"error"`)
)

func (c *Conn) OnMessage(socket *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	b := msg.Bytes()
	if c.pool.target.Centrifuge {
		for len(b) > 0 {
			line := b
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				line, b = b[:i], b[i+1:]
			} else {
				b = nil
			}
			c.onCentrifugeReply(socket, line)
		}
		return
	}
	switch {
	case bytes.HasPrefix(b, prefixMessage):
		c.Received.Add(1)
		if ph := c.pool.phase.Load(); ph != nil {
			ph.onData(c, b)
		} else if h := c.pool.opts.OnData; h != nil {
			h(c, b)
		}
	case bytes.HasPrefix(b, prefixAuthOK):
		select {
		case <-c.ready:
			c.Reauths.Add(1)
		default:
			c.session = jsonString(b, `"session":`)
			c.setReady(nil)
		}
	case bytes.HasPrefix(b, prefixReauth):
		// On the read goroutine: a slow token source delays only this
		// connection's reads.
		tok, err := c.pool.refresh(context.Background(), c.Subject)
		if err == nil {
			c.setToken(tok)
			err = socket.WriteMessage(gws.OpcodeText, protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeAuth, Token: tok}))
		}
		if err != nil {
			c.ErrorFrames.Add(1)
		}
	case bytes.HasPrefix(b, prefixError):
		c.ErrorFrames.Add(1)
	}
}

var (
	centrifugePing    = []byte(`{}`)
	centrifugeRPC     = []byte(`"rpc":`)
	centrifugeConnect = []byte(`{"id":1,"connect":`)
	centrifugeError   = []byte(`"error":`)
)

// onCentrifugeReply handles one line of a Centrifuge frame.
func (c *Conn) onCentrifugeReply(socket *gws.Conn, b []byte) {
	switch {
	case bytes.Equal(b, centrifugePing):
		_ = socket.WriteMessage(gws.OpcodeText, centrifugePing)
	case bytes.Contains(b, centrifugeError):
		c.ErrorFrames.Add(1)
		c.setReady(fmt.Errorf("loadgen: centrifuge answered %s", b))
	case bytes.HasPrefix(b, centrifugeConnect):
		c.session = jsonString(b, `"client":`)
		c.setReady(nil)
	case bytes.Contains(b, centrifugeRPC):
		c.Received.Add(1)
		if ph := c.pool.phase.Load(); ph != nil {
			ph.onData(c, b)
		}
	}
}

// setToken makes tok the token of c's next message frames, with
// DialOptions.TokenPerMessage.
func (c *Conn) setToken(tok string) {
	if !c.pool.opts.TokenPerMessage {
		return
	}
	c.sendMu.Lock()
	c.token = tok
	c.sendMu.Unlock()
}

func (c *Conn) setReady(err error) {
	c.once.Do(func() {
		c.readyErr = err
		close(c.ready)
	})
}

// jsonString returns the string value following key in b, without
// unescaping: enough for session ids.
func jsonString(b []byte, key string) string {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return ""
	}
	rest := b[i+len(key):]
	start := bytes.IndexByte(rest, '"')
	if start < 0 {
		return ""
	}
	rest = rest[start+1:]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return ""
	}
	return string(rest[:end])
}

// Messages carry a marker so that a receiver can tell when it was sent and
// to which connection it belongs: '~', the sender's clock in Unix
// nanoseconds as 16 hex digits, the connection index as 8 hex digits, then
// padding. It sits inside a JSON string.
const markerLen = 1 + 16 + 8

// minPayload is the smallest frame size Echo and Push accept.
var minPayload = len(`{"type":"message","data":""}`) + markerLen

func appendMarker(dst []byte, ts int64, idx int) []byte {
	dst = append(dst, '~')
	dst = appendHex(dst, uint64(ts), 16)
	return appendHex(dst, uint64(idx), 8)
}

func appendHex(dst []byte, v uint64, digits int) []byte {
	const hex = "0123456789abcdef"
	for i := digits - 1; i >= 0; i-- {
		dst = append(dst, hex[(v>>(4*i))&0xf])
	}
	return dst
}

// parseMarker finds the marker in frame.
func parseMarker(frame []byte) (ts int64, idx int, ok bool) {
	i := bytes.IndexByte(frame, '~')
	if i < 0 || len(frame)-i < markerLen {
		return 0, 0, false
	}
	v, ok1 := parseHex(frame[i+1 : i+17])
	x, ok2 := parseHex(frame[i+17 : i+25])
	return int64(v), int(x), ok1 && ok2
}

func parseHex(b []byte) (uint64, bool) {
	var v uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// appendClientMessage appends a client message frame whose data is a marked
// string: exactly size bytes (at least minPayload), plus, if token is not
// empty, the member "token":token, (len(token)+11 bytes).
func appendClientMessage(dst []byte, ts int64, idx, size int, token string) []byte {
	start := len(dst)
	dst = append(dst, `{"type":"message",`...)
	extra := 0
	if token != "" {
		// A compact JWS is base64url and dots: nothing to escape.
		n := len(dst)
		dst = append(dst, `"token":"`...)
		dst = append(dst, token...)
		dst = append(dst, `",`...)
		extra = len(dst) - n
	}
	dst = append(dst, `"data":"`...)
	dst = appendMarker(dst, ts, idx)
	for len(dst)-start-extra < size-2 {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

// appendPushData appends the data of a pushed message, a marked JSON
// string, sized so that the server's message frame is size bytes.
func appendPushData(dst []byte, ts int64, idx, size int) []byte {
	start := len(dst)
	dst = append(dst, '"')
	dst = appendMarker(dst, ts, idx)
	for len(dst)-start < size-len(`{"type":"message","data":}`)-1 {
		dst = append(dst, 'x')
	}
	return append(dst, '"')
}

// checkPayload reports whether size is a usable message size.
func checkPayload(size int) error {
	if size < minPayload {
		return fmt.Errorf("loadgen: payload %d B is below the minimum of %d B", size, minPayload)
	}
	return nil
}
