// Package wstest is a raw WebSocket client for wsauth's own tests: it speaks
// RFC 6455 byte by byte, so tests can send what no well-behaved client
// would (fragments, oversized headers, pings, binary frames, invalid UTF-8)
// and read exactly what the server answers.
package wstest

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Opcodes.
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

// Conn is a client connection.
type Conn struct {
	net.Conn
	br          *bufio.Reader
	Subprotocol string
	// Timeout bounds each Read* call. Default 5s.
	Timeout time.Duration
}

// HandshakeError is returned by Dial when the server did not answer 101.
type HandshakeError struct {
	Status int
	Header http.Header
	Body   string
}

func (e *HandshakeError) Error() string { return fmt.Sprintf("wstest: handshake status %d", e.Status) }

// Dial opens a WebSocket to rawURL ("ws://host/path" or "http://host/path")
// with extra request headers.
func Dial(rawURL string, header http.Header) (*Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	nc, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	path := u.RequestURI()
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", path, u.Host)
	fmt.Fprintf(&b, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", base64.StdEncoding.EncodeToString(key[:]))
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(nc, b.String()); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		nc.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		nc.Close()
		return nil, &HandshakeError{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
	}
	_ = nc.SetDeadline(time.Time{})
	return &Conn{Conn: nc, br: br, Subprotocol: resp.Header.Get("Sec-WebSocket-Protocol"), Timeout: 5 * time.Second}, nil
}

// Frame builds one masked client frame.
func Frame(fin bool, opcode byte, payload []byte) []byte {
	var hdr []byte
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	switch n := len(payload); {
	case n < 126:
		hdr = []byte{b0, 0x80 | byte(n)}
	case n <= 0xffff:
		hdr = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		hdr = make([]byte, 10)
		hdr[0], hdr[1] = b0, 0x80|127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	out := append(hdr, mask[:]...)
	for i, c := range payload {
		out = append(out, c^mask[i%4])
	}
	return out
}

// HeaderOnly builds the header of a masked frame announcing length payload
// bytes, without the payload.
func HeaderOnly(fin bool, opcode byte, length uint64) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	hdr := make([]byte, 10, 14)
	hdr[0], hdr[1] = b0, 0x80|127
	binary.BigEndian.PutUint64(hdr[2:], length)
	return append(hdr, 1, 2, 3, 4)
}

// Abort drops the connection without a close frame: a TCP reset, as a
// crashed client or a cut network leaves the server.
func (c *Conn) Abort() {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Conn.Close()
}

// WriteFrame writes one frame.
func (c *Conn) WriteFrame(fin bool, opcode byte, payload []byte) error {
	_, err := c.Write(Frame(fin, opcode, payload))
	return err
}

// WriteText writes a text frame.
func (c *Conn) WriteText(s string) error { return c.WriteFrame(true, OpText, []byte(s)) }

// WriteJSON writes v as a text frame.
func (c *Conn) WriteJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.WriteFrame(true, OpText, b)
}

// Auth sends an auth frame with token.
func (c *Conn) Auth(token string) error {
	return c.WriteJSON(map[string]string{"type": "auth", "token": token})
}

// ReadFrame reads one server frame (servers do not mask).
func (c *Conn) ReadFrame() (opcode byte, payload []byte, err error) {
	_ = c.SetReadDeadline(time.Now().Add(c.Timeout))
	var h [2]byte
	if _, err = io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err = io.ReadFull(c.br, e[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err = io.ReadFull(c.br, e[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	if n > 64<<20 {
		return 0, nil, errors.New("wstest: frame too large")
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(c.br, payload); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, payload, nil
}

// Close is a close frame as received.
type Close struct {
	Code   int
	Reason string
}

// ErrClosed is returned by ReadJSON when the server sent a close frame;
// errors.As gives the *CloseReceived.
type CloseReceived struct{ Close }

func (e *CloseReceived) Error() string {
	return fmt.Sprintf("wstest: server closed %d %q", e.Code, e.Reason)
}

// Next reads the next text frame, answering nothing and skipping pongs. A
// close frame returns *CloseReceived.
func (c *Conn) Next() ([]byte, error) {
	for {
		op, p, err := c.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch op {
		case OpText:
			return p, nil
		case OpClose:
			cl := Close{Code: 1005}
			if len(p) >= 2 {
				cl.Code = int(binary.BigEndian.Uint16(p))
				cl.Reason = string(p[2:])
			}
			// Answer like a browser: echo the close, then close the
			// socket once the server has closed its side.
			_ = c.WriteFrame(true, OpClose, p[:min(len(p), 2)])
			c.Close()
			return nil, &CloseReceived{cl}
		case OpPong, OpPing:
			continue
		default:
			return nil, fmt.Errorf("wstest: unexpected opcode %d", op)
		}
	}
}

// ReadJSON reads the next text frame into a generic map.
func (c *Conn) ReadJSON() (map[string]any, error) {
	p, err := c.Next()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		return nil, fmt.Errorf("wstest: server sent non-JSON %q: %w", p, err)
	}
	return m, nil
}

// ReadClose reads frames until a close frame and returns it; text frames
// before it are returned too.
func (c *Conn) ReadClose() (Close, [][]byte, error) {
	var texts [][]byte
	for {
		p, err := c.Next()
		var cr *CloseReceived
		if errors.As(err, &cr) {
			return cr.Close, texts, nil
		}
		if err != nil {
			return Close{}, texts, err
		}
		texts = append(texts, p)
	}
}

// Sync sends a ping and waits for its pong, skipping nothing else: when it
// returns, the server's read loop for this connection is running. Text frames
// that arrive first are returned.
func (c *Conn) Sync() ([][]byte, error) {
	if err := c.WriteFrame(true, OpPing, []byte("sync")); err != nil {
		return nil, err
	}
	var texts [][]byte
	for {
		op, p, err := c.ReadFrame()
		if err != nil {
			return texts, err
		}
		switch op {
		case OpPong:
			if string(p) == "sync" {
				return texts, nil
			}
		case OpText:
			texts = append(texts, p)
		case OpClose:
			return texts, fmt.Errorf("wstest: closed during sync: %q", p)
		}
	}
}
