package wsauth

import (
	"bufio"
	"encoding/binary"
	"errors"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsauth/wsauth/protocol"
)

// The frame gate. gws reads a frame's whole payload (up to its single
// ReadMaxPayloadSize) before handing it over, and it parses a 64-bit frame
// length into an int: a length with the top bit set becomes negative, passes
// its size check and panics in its reader. gateConn therefore sits between
// gws and the socket and parses every frame header itself, for the life of
// the connection, before gws sees it: a frame over the size allowed is
// refused from its header alone, before gws allocates or misreads anything.
// While the session is pending the allowed size is MaxPreAuthFrame and every
// byte the client sends counts against the pre-auth budget; once it is
// authenticated the allowed size is MaxFrame and there is no budget.

var (
	errFrameTooLarge = errors.New("wsauth: frame too large")
	errPreAuthFlood  = errors.New("wsauth: too many bytes before auth")
)

// gateConn wraps the hijacked connection of one session.
//
// Two paths write to it: gws's (Write: auth_ok, error and control frames,
// pongs, close frames, each under gws's own write mutex) and wsauth's
// batches of message frames (writeTexts). wmu serialises the two, so every
// frame reaches the socket whole and in one order.
type gateConn struct {
	net.Conn
	prefix        []byte        // bytes net/http had buffered past the request
	br            *bufio.Reader // gws's reader of this connection, fed by Read
	writeTimeout  time.Duration
	wmu           sync.Mutex    // held for each write to Conn
	closeWritten  bool          // a close frame is out: nothing may follow it; under wmu
	writeUntil    atomic.Int64  // the write deadline set last, as time since monoEpoch
	writeFailed   atomic.Bool   // a write failed: the connection is dead
	writeTimedOut atomic.Bool   // ... because the client did not read for writeTimeout
	lingered      atomic.Bool   // Close was called: the write side is shut
	ownClose      atomic.Bool   // the session chose the close code and reason
	sentClose     atomic.Uint32 // code of the close frame written, 0 if none
	gate          frameGate     // used only by the reading goroutine
	sess          *Session
	onViolation   func(err error)
	// onReadDeadline is called on the reading goroutine when the pre-auth
	// read backstop runs out.
	onReadDeadline func()
}

func (c *gateConn) Read(p []byte) (int, error) {
	if c.lingered.Load() {
		// The close frame is out: end the read loop now, so the session
		// finishes promptly. drainAndClose deals with what is left.
		return 0, net.ErrClosed
	}
	var n int
	var err error
	if len(c.prefix) > 0 {
		n = copy(p, c.prefix)
		c.prefix = c.prefix[n:]
	} else {
		if s := c.sess; s != nil && s.held.Load() {
			// Replies held while the client's earlier frames were handled
			// go out before the read goroutine waits for the client.
			s.flushHeld()
		}
		n, err = c.Conn.Read(p)
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.lingered.Load() {
			c.onReadDeadline()
		}
	}
	if n > 0 {
		if gerr := c.gate.feed(p[:n]); gerr != nil {
			c.onViolation(gerr)
			return 0, gerr
		}
	}
	return n, err
}

// moreDataBuffered reports whether gws's reader holds more of the client's
// stream that gws has not consumed yet, and all of it belongs to final,
// masked text or binary frames: frames gws hands to OnMessage without
// writing anything itself (no pong, no close frame, no protocol error).
// Read goroutine only.
func (c *gateConn) moreDataBuffered() bool {
	if c.br == nil {
		return false
	}
	n := uint64(c.br.Buffered())
	return n > 0 && c.gate.otherAt <= c.gate.pos-n
}

// SetDeadline, SetReadDeadline and SetWriteDeadline do nothing: the
// connection's deadlines are gateConn's own (Write's write timeout, the
// read backstop set on the raw connection). gws sets a deadline around the
// 101 response and then clears it, which would leave the first writes of
// the session, and the pre-auth read backstop, without any deadline.
func (c *gateConn) SetDeadline(time.Time) error      { return nil }
func (c *gateConn) SetReadDeadline(time.Time) error  { return nil }
func (c *gateConn) SetWriteDeadline(time.Time) error { return nil }

// Write bounds every write with the write timeout, so a client that stops
// reading cannot pin a writer (and the session's buffers) forever. Moving
// the deadline costs a runtime timer update, so it is only moved once it is
// an eighth of the timeout behind: every write still has between 7/8 of the
// timeout and the whole of it. A write that fails ends the connection: the
// socket is closed at once, so the read loop ends and the session finishes,
// and every later write (the close frame among them) fails without waiting
// for a second timeout.
//
// It also notes the close frame when one goes out. gws writes each frame in
// one Write and, when it closes a connection itself (a protocol error, a
// frame over MaxFrame), puts its own error text in the reason: that text is
// replaced by the code's fixed name, and the code is recorded so that
// OnClose reports what the client was actually sent.
func (c *gateConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writeFailed.Load() {
		return 0, net.ErrClosed
	}
	if err := c.moveDeadlineLocked(); err != nil {
		return 0, err
	}
	if len(p) > 0 && p[0] == 0x88 { // a final close frame (gws writes nothing else with opcode 8)
		c.closeWritten = true
	}
	if code, ok := closeFrameCode(p); ok {
		c.sentClose.Store(uint32(code))
		if !c.ownClose.Load() {
			if _, err := c.Conn.Write(closeFrame(code, code.String())); err != nil {
				return 0, c.failed(err)
			}
			return len(p), nil
		}
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		return n, c.failed(err)
	}
	return n, nil
}

// moveDeadlineLocked moves the write deadline if it is an eighth of the
// write timeout behind (see Write). c.wmu is held.
func (c *gateConn) moveDeadlineLocked() error {
	if until := time.Since(monoEpoch) + c.writeTimeout; until-time.Duration(c.writeUntil.Load()) > c.writeTimeout/8 {
		if err := c.Conn.SetWriteDeadline(monoEpoch.Add(until)); err != nil {
			return c.failed(err)
		}
		c.writeUntil.Store(int64(until))
	}
	return nil
}

// maxWriteBatch bounds the bytes writeTexts puts in one write, and so the
// buffers it keeps pooled; a larger frame goes alone.
const maxWriteBatch = 64 << 10

// maxFrameHeader is the longest header of an unmasked frame.
const maxFrameHeader = 10

var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// writeTexts writes each of frames as one unmasked text frame, in order,
// all in one write to the socket (several only past maxWriteBatch bytes),
// where gws would make one write per frame. It returns how many frames
// were written whole; the first error ends it and, like any failed write,
// closes the socket. It writes nothing after a close frame.
//
// Framing here instead of in gws is sound because wsauth turns off what
// gws's framing adds: no permessage-deflate (so no RSV1 and no compression
// window to keep in step) and no UTF-8 check (the frames are JSON that
// newItem validated). gws's write mutex is not taken, so wmu alone keeps
// the frames of the two paths whole and ordered.
func (c *gateConn) writeTexts(frames [][]byte) (written int, err error) {
	bp := writeBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) > 2*maxWriteBatch {
			*bp = make([]byte, 0, 4096) // do not keep a large frame's buffer
		}
		writeBufs.Put(bp)
	}()
	for written < len(frames) {
		buf, end := (*bp)[:0], written
		for end < len(frames) && (end == written || len(buf)+maxFrameHeader+len(frames[end]) <= maxWriteBatch) {
			buf = appendTextFrame(buf, frames[end])
			end++
		}
		*bp = buf
		n, err := c.writeRaw(buf)
		if err != nil {
			// Count the frames that went out whole before the error.
			for i := written; i < end; i++ {
				size := frameSize(len(frames[i]))
				if n < size {
					break
				}
				n -= size
				written++
			}
			return written, err
		}
		written = end
	}
	return written, nil
}

// writeRaw writes p, whole frames, unless the connection is closing.
func (c *gateConn) writeRaw(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writeFailed.Load() || c.closeWritten || c.lingered.Load() {
		return 0, net.ErrClosed
	}
	if err := c.moveDeadlineLocked(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		return n, c.failed(err)
	}
	return n, nil
}

// appendTextFrame appends payload as an unmasked, final text frame.
func appendTextFrame(dst, payload []byte) []byte {
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x81, byte(n))
	case n <= math.MaxUint16:
		dst = append(dst, 0x81, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x81, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// frameSize is the size on the wire of an unmasked frame of n payload bytes.
func frameSize(n int) int {
	switch {
	case n < 126:
		return 2 + n
	case n <= math.MaxUint16:
		return 4 + n
	}
	return 10 + n
}

// failed records a write error and closes the socket.
func (c *gateConn) failed(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.writeTimedOut.Store(true)
	}
	if c.writeFailed.CompareAndSwap(false, true) {
		_ = c.Conn.Close()
	}
	return err
}

// monoEpoch is the origin of gateConn.writeUntil. Durations since it are
// monotonic: a step of the wall clock cannot make a deadline look fresh.
var monoEpoch = time.Now()

// lingerTimeout bounds how long a closed connection is drained.
const lingerTimeout = time.Second

// Close is called by gws right after it wrote a close frame. Closing the
// socket at once, with client bytes still unread, makes the kernel answer
// with a TCP reset that can overtake the close frame: the client would see
// a reset instead of the close code. So Close only shuts the write side
// (the client sees the close frame, then end of stream) and ends the read
// loop; the session then finishes and drainAndClose closes the socket.
func (c *gateConn) Close() error {
	if !c.lingered.CompareAndSwap(false, true) {
		return nil
	}
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return c.Conn.Close()
	}
	_ = cw.CloseWrite()
	return c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
}

// drainAndClose closes the socket, after reading and discarding what the
// client still sends, until it closes its side or lingerTimeout passes, if
// a close frame was sent. It runs last, on the connection's goroutine.
func (c *gateConn) drainAndClose() {
	if c.lingered.Load() {
		var buf [512]byte
		for {
			if _, err := c.Conn.Read(buf[:]); err != nil {
				break
			}
		}
	}
	_ = c.Conn.Close()
}

// closeFrameCode recognises an unmasked server close frame with a status
// code, written whole.
func closeFrameCode(p []byte) (protocol.CloseCode, bool) {
	if len(p) < 4 || p[0] != 0x88 || int(p[1]) != len(p)-2 {
		return 0, false
	}
	return protocol.CloseCode(binary.BigEndian.Uint16(p[2:4])), true
}

func closeFrame(code protocol.CloseCode, reason string) []byte {
	b := make([]byte, 4, 4+len(reason))
	b[0], b[1] = 0x88, byte(2+len(reason))
	binary.BigEndian.PutUint16(b[2:], uint16(code))
	return append(b, reason...)
}

// frameGate follows the WebSocket frame structure of the client's byte
// stream (RFC 6455 section 5.2) without buffering payloads.
type frameGate struct {
	maxMessage uint64 // MaxPreAuthFrame, then MaxFrame
	maxTotal   uint64 // bytes allowed before auth, then no limit
	total      uint64
	hdr        [14]byte
	hdrLen     int
	hdrNeed    int
	skip       uint64 // payload bytes of the current frame still to pass
	msgLen     uint64 // payload bytes of the current data message so far
	pos        uint64 // bytes of the stream parsed so far
	hdrAt      uint64 // stream offset of the current header's first byte
	// otherAt is 1 + the stream offset of the last frame that is not a
	// final, masked text or binary frame (0 if none): a control frame, a
	// fragment, or a frame gws will refuse (see moreDataBuffered).
	otherAt uint64
}

// authenticated lifts the pre-auth limits: from now on a message may have
// up to maxMessage bytes and the stream has no byte budget.
func (g *frameGate) authenticated(maxMessage uint64) {
	g.maxMessage = maxMessage
	g.maxTotal, g.total = math.MaxUint64, 0
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
			g.pos += n
			p = p[n:]
			continue
		}
		if g.hdrLen == 0 {
			g.hdrAt = g.pos
		}
		g.hdr[g.hdrLen] = p[0]
		g.hdrLen++
		g.pos++
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
		if b0 := g.hdr[0]; (b0 != 0x81 && b0 != 0x82) || g.hdr[1]&0x80 == 0 {
			g.otherAt = g.hdrAt + 1
		}
		if opcode := g.hdr[0] & 0x0f; opcode < 8 { // data or continuation frame
			if opcode != 0 {
				g.msgLen = 0
			}
			if length > g.maxMessage || g.msgLen+length > g.maxMessage {
				return errFrameTooLarge
			}
			g.msgLen += length
		}
		g.skip = length
	}
	return nil
}
