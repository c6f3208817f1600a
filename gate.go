package wsauth

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The pre-auth gate. gws reads a frame's whole payload (up to its single
// ReadMaxPayloadSize) before handing it over, so a small pre-auth frame cap
// cannot be enforced after the fact without letting an unauthenticated client
// make the server allocate a large buffer. gateConn therefore sits between
// gws and the socket and parses frame headers itself while the session is
// pending: it refuses an oversized frame from its header, before gws sees the
// payload, and counts every byte the client sends before authenticating.
// Once the session is authenticated it is a plain pass-through.

var (
	errPreAuthTooLarge = errors.New("wsauth: pre-auth frame too large")
	errPreAuthFlood    = errors.New("wsauth: too many bytes before auth")
)

// gateConn wraps the hijacked connection of one session.
type gateConn struct {
	net.Conn
	prefix       []byte // bytes net/http had buffered past the request
	writeTimeout time.Duration
	gating       atomic.Bool // true while the session is pending
	gate         frameGate   // used only by the reading goroutine
	sess         *Session
	onViolation  func(err error)
}

func (c *gateConn) Read(p []byte) (int, error) {
	var n int
	var err error
	if len(c.prefix) > 0 {
		n = copy(p, c.prefix)
		c.prefix = c.prefix[n:]
	} else {
		n, err = c.Conn.Read(p)
	}
	if n > 0 && c.gating.Load() {
		if gerr := c.gate.feed(p[:n]); gerr != nil {
			c.onViolation(gerr)
			return 0, gerr
		}
	}
	return n, err
}

// Write bounds every write with the write timeout, so a client that stops
// reading cannot pin a writer (and the session's buffers) forever.
func (c *gateConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// frameGate follows the WebSocket frame structure of the client's byte
// stream (RFC 6455 section 5.2) without buffering payloads.
type frameGate struct {
	maxMessage uint64 // MaxPreAuthFrame
	maxTotal   uint64 // bytes allowed before auth
	total      uint64
	hdr        [14]byte
	hdrLen     int
	hdrNeed    int
	skip       uint64 // payload bytes of the current frame still to pass
	msgLen     uint64 // payload bytes of the current data message so far
}

// feed checks the next bytes of the stream. Its verdict depends only on the
// stream, never on how it was split into reads: the byte budget is enforced
// at the exact byte that exceeds it, after the bytes before it were parsed.
func (g *frameGate) feed(p []byte) error {
	over := false
	if allowed := g.maxTotal - g.total; uint64(len(p)) > allowed {
		p, over = p[:allowed], true
	}
	g.total += uint64(len(p))
	if err := g.parse(p); err != nil {
		return err
	}
	if over {
		return errPreAuthFlood
	}
	return nil
}

func (g *frameGate) parse(p []byte) error {
	for len(p) > 0 {
		if g.skip > 0 {
			n := uint64(len(p))
			if n > g.skip {
				n = g.skip
			}
			g.skip -= n
			p = p[n:]
			continue
		}
		g.hdr[g.hdrLen] = p[0]
		g.hdrLen++
		p = p[1:]
		if g.hdrLen == 2 {
			g.hdrNeed = 2
			switch g.hdr[1] & 0x7f {
			case 126:
				g.hdrNeed += 2
			case 127:
				g.hdrNeed += 8
			}
			if g.hdr[1]&0x80 != 0 {
				g.hdrNeed += 4
			}
		}
		if g.hdrLen < 2 || g.hdrLen < g.hdrNeed {
			continue
		}
		var length uint64
		switch l := g.hdr[1] & 0x7f; l {
		case 126:
			length = uint64(g.hdr[2])<<8 | uint64(g.hdr[3])
		case 127:
			for i := 2; i < 10; i++ {
				length = length<<8 | uint64(g.hdr[i])
			}
		default:
			length = uint64(l)
		}
		g.hdrLen, g.hdrNeed = 0, 0
		if opcode := g.hdr[0] & 0x0f; opcode < 8 { // data or continuation frame
			if opcode != 0 {
				g.msgLen = 0
			}
			if length > g.maxMessage || g.msgLen+length > g.maxMessage {
				return errPreAuthTooLarge
			}
			g.msgLen += length
		}
		g.skip = length
	}
	return nil
}

// pendingLimiter counts unauthenticated connections, globally and per IP.
type pendingLimiter struct {
	max, maxPerIP int
	mu            sync.Mutex
	total         int
	perIP         map[string]int
}

// acquire takes a slot for ip, or reports that a cap is full.
func (l *pendingLimiter) acquire(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max || l.perIP[ip] >= l.maxPerIP {
		return false
	}
	if l.perIP == nil {
		l.perIP = make(map[string]int)
	}
	l.total++
	l.perIP[ip]++
	return true
}

func (l *pendingLimiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

func (l *pendingLimiter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}
