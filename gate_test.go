package wsauth

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// frame builds a masked client frame header announcing n payload bytes,
// followed by n zero bytes.
func frame(fin bool, opcode byte, n int) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	var h []byte
	switch {
	case n < 126:
		h = []byte{b0, 0x80 | byte(n)}
	case n <= 0xffff:
		h = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		h = make([]byte, 10)
		h[0], h[1] = b0, 0x80|127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	h = append(h, 1, 2, 3, 4)
	return append(h, make([]byte, n)...)
}

// header builds a masked client frame header announcing length payload
// bytes, without the payload.
func header(fin bool, opcode byte, length uint64) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	h := []byte{b0, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}
	binary.BigEndian.PutUint64(h[2:10], length)
	return h
}

func repeatFrames(n int, f []byte) []byte { return bytes.Repeat(f, n) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestFrameGate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"one frame at the cap", frame(true, 1, 100), nil},
		{"one frame over the cap", frame(true, 1, 101), errFrameTooLarge},
		{"16-bit length over the cap", frame(true, 1, 300), errFrameTooLarge},
		{"64-bit length header alone", frame(true, 1, 70000)[:14], errFrameTooLarge},
		{"fragments at the cap", cat(frame(false, 1, 50), frame(true, 0, 50)), nil},
		{"fragments over the cap", cat(frame(false, 1, 50), frame(false, 0, 50), frame(true, 0, 1)), errFrameTooLarge},
		{"pings between fragments do not count as payload", cat(frame(false, 1, 60), frame(true, 9, 20), frame(true, 0, 40)), nil},
		{"a new message resets the count", cat(frame(true, 1, 90), frame(true, 1, 90)), nil},
		{"bytes past the total budget", cat(frame(true, 9, 100), frame(true, 9, 100), frame(true, 9, 100)), errPreAuthFlood},
	}
	authed := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"no byte budget", repeatFrames(100, frame(true, 9, 100)), nil},
		{"one frame at MaxFrame", frame(true, 1, 1000), nil},
		{"one frame over MaxFrame", frame(true, 1, 1001), errFrameTooLarge},
		{"length 2^63", header(true, 1, 1<<63), errFrameTooLarge},
		{"length 2^64-1", header(true, 2, 1<<64-1), errFrameTooLarge},
		{"length 2^63+4096 on a continuation", cat(frame(false, 1, 10), header(true, 0, 1<<63+4096)), errFrameTooLarge},
		{"fragments over MaxFrame", cat(frame(false, 1, 600), frame(true, 0, 401)), errFrameTooLarge},
	}
	for _, tc := range authed {
		t.Run("authenticated/"+tc.name, func(t *testing.T) {
			t.Parallel()
			for _, chunk := range []int{1, 3, 7, len(tc.stream)} {
				g := frameGate{maxMessage: 100, maxTotal: 250}
				g.authenticated(1000)
				var err error
				for p := tc.stream; len(p) > 0 && err == nil; {
					n := min(chunk, len(p))
					err = g.feed(p[:n])
					p = p[n:]
				}
				assert.Equal(t, tc.want, err, "chunk size %d", chunk)
			}
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, chunk := range []int{1, 3, 7, len(tc.stream)} {
				g := frameGate{maxMessage: 100, maxTotal: 250}
				var err error
				for p := tc.stream; len(p) > 0 && err == nil; {
					n := min(chunk, len(p))
					err = g.feed(p[:n])
					p = p[n:]
				}
				assert.Equal(t, tc.want, err, "chunk size %d", chunk)
			}
		})
	}
}

// FuzzFrameGate checks that the gate never panics and that how the stream
// is split into reads never changes its verdict.
func FuzzFrameGate(f *testing.F) {
	f.Add(frame(true, 1, 10), uint8(1))
	f.Add(cat(frame(false, 1, 50), frame(true, 0, 60)), uint8(5))
	f.Add(frame(true, 1, 70000)[:20], uint8(3))
	f.Add([]byte{0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		whole := frameGate{maxMessage: 100, maxTotal: 1 << 20}
		want := whole.feed(stream)
		g := frameGate{maxMessage: 100, maxTotal: 1 << 20}
		n := int(chunk) + 1
		var err error
		for p := stream; len(p) > 0 && err == nil; {
			k := min(n, len(p))
			err = g.feed(p[:k])
			p = p[k:]
		}
		if err != want {
			t.Fatalf("split reads gave %v, one read gave %v", err, want)
		}
	})
}

// TestGateConnWriteDeadline checks that every write is bounded by the write
// timeout although the deadline is not moved on every write: a write to a
// peer that does not read fails, and a write after a pause longer than the
// timeout still gets a fresh deadline.
func TestGateConnWriteDeadline(t *testing.T) {
	t.Parallel()
	const timeout = 50 * time.Millisecond
	srv, peer := net.Pipe()
	defer peer.Close()
	c := &gateConn{Conn: srv, writeTimeout: timeout}
	defer c.Conn.Close()

	read := make(chan []byte)
	go func() {
		defer close(read)
		buf := make([]byte, 16)
		for {
			n, err := peer.Read(buf)
			if err != nil {
				return
			}
			read <- bytes.Clone(buf[:n])
		}
	}()
	for i := range 3 {
		if i == 2 {
			time.Sleep(timeout + 10*time.Millisecond) // the first deadline has passed
		}
		go func() { _, _ = c.Write([]byte{byte(i)}) }()
		select {
		case got := <-read:
			require.Equal(t, []byte{byte(i)}, got, "write %d", i)
		case <-time.After(5 * time.Second):
			t.Fatalf("write %d not delivered", i)
		}
	}

	// The peer stops reading: the next write ends with a timeout.
	stalled, _ := net.Pipe()
	defer stalled.Close()
	s := &gateConn{Conn: stalled, writeTimeout: timeout}
	done := make(chan error, 1)
	go func() {
		_, err := s.Write([]byte("x"))
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	case <-time.After(5 * time.Second):
		_ = stalled.Close()
		t.Fatal("a write to a peer that does not read was not bounded")
	}
}

// BenchmarkFrameGate measures what the per-frame header check costs an
// authenticated connection (red team item 1): the stream of masked client
// frames is fed to the gate in 4 KiB reads, as gws's reader asks for them.
// ns/op is per frame; the echo benchmarks (bench/) put it beside the whole
// cost of a message.
func BenchmarkFrameGate(b *testing.B) {
	for _, size := range []int{64, 1024, 16 << 10} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			f := frame(true, 1, size)
			stream := repeatFrames(max(1, 64<<10/len(f)), f)
			frames := len(stream) / len(f)
			var g frameGate
			g.authenticated(1 << 20)
			b.SetBytes(int64(len(f)))
			b.ResetTimer()
			for i := 0; i < b.N; i += frames {
				for p := stream; len(p) > 0; {
					n := min(len(p), 4096)
					if err := g.feed(p[:n]); err != nil {
						b.Fatal(err)
					}
					p = p[n:]
				}
			}
		})
	}
}

// recordingConn records each Write; it accepts at most accept bytes in all
// (negative: no limit), then fails.
type recordingConn struct {
	net.Conn
	writes [][]byte
	accept int
}

var errRecordingFull = errors.New("recordingConn: full")

func (c *recordingConn) Write(p []byte) (int, error) {
	if c.accept >= 0 && len(p) > c.accept {
		n := c.accept
		c.writes = append(c.writes, bytes.Clone(p[:n]))
		c.accept = 0
		return n, errRecordingFull
	}
	if c.accept >= 0 {
		c.accept -= len(p)
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *recordingConn) SetWriteDeadline(time.Time) error { return nil }
func (c *recordingConn) Close() error                     { return nil }

// serverFrames parses unmasked server frames.
func serverFrames(t *testing.T, b []byte) (ops []byte, payloads [][]byte) {
	t.Helper()
	for len(b) > 0 {
		require.GreaterOrEqual(t, len(b), 2)
		require.Zero(t, b[1]&0x80, "a server frame is masked")
		n, h := uint64(b[1]&0x7f), 2
		switch n {
		case 126:
			n, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			n, h = binary.BigEndian.Uint64(b[2:]), 10
		}
		require.GreaterOrEqual(t, uint64(len(b)-h), n, "truncated frame")
		ops = append(ops, b[0])
		payloads = append(payloads, b[h:h+int(n)])
		b = b[h+int(n):]
	}
	return ops, payloads
}

// TestWriteTexts checks the batched write of drain: a batch is one write of
// whole text frames in order, of every length encoding; a batch past
// maxWriteBatch bytes is split between frames; a failed write counts only
// the frames that went out whole; nothing is written after a close frame.
func TestWriteTexts(t *testing.T) {
	t.Parallel()
	sizes := []int{0, 1, 125, 126, 1000, 65535, 65536, 70000, 3}
	var frames [][]byte
	for i, n := range sizes {
		frames = append(frames, bytes.Repeat([]byte{byte('a' + i)}, n))
	}

	rc := &recordingConn{accept: -1}
	c := &gateConn{Conn: rc, writeTimeout: time.Second}
	n, err := c.writeTexts(frames[:4])
	require.NoError(t, err)
	require.Equal(t, 4, n)
	require.Len(t, rc.writes, 1, "a small batch is one write")
	ops, got := serverFrames(t, rc.writes[0])
	require.Equal(t, []byte{0x81, 0x81, 0x81, 0x81}, ops)
	require.Equal(t, frames[:4], got)

	rc.writes = nil
	n, err = c.writeTexts(frames)
	require.NoError(t, err)
	require.Equal(t, len(frames), n)
	var all []byte
	for _, w := range rc.writes {
		require.LessOrEqual(t, len(w), maxWriteBatch+maxFrameHeader+70000)
		_, ws := serverFrames(t, w) // every write holds whole frames
		require.NotEmpty(t, ws)
		all = append(all, w...)
	}
	_, got = serverFrames(t, all)
	require.Equal(t, frames, got)
	require.Greater(t, len(rc.writes), 1, "past maxWriteBatch the batch is split")

	// The socket takes the first two frames and half the third: two were
	// written; the connection is then dead.
	rc = &recordingConn{accept: frameSize(len(frames[0])) + frameSize(len(frames[1])) + 60}
	c = &gateConn{Conn: rc, writeTimeout: time.Second}
	n, err = c.writeTexts(frames[:4])
	require.ErrorIs(t, err, errRecordingFull)
	require.Equal(t, 2, n)
	n, err = c.writeTexts(frames[:1])
	require.ErrorIs(t, err, net.ErrClosed)
	require.Zero(t, n)

	// After a close frame (gws's Write), a batch writes nothing.
	rc = &recordingConn{accept: -1}
	c = &gateConn{Conn: rc, writeTimeout: time.Second}
	c.ownClose.Store(true)
	_, err = c.Write(closeFrame(4000, "bye"))
	require.NoError(t, err)
	n, err = c.writeTexts(frames[:1])
	require.ErrorIs(t, err, net.ErrClosed)
	require.Zero(t, n)
	require.Len(t, rc.writes, 1)
	// A close frame without a code counts too.
	rc = &recordingConn{accept: -1}
	c = &gateConn{Conn: rc, writeTimeout: time.Second}
	_, err = c.Write([]byte{0x88, 0})
	require.NoError(t, err)
	_, err = c.writeTexts(frames[:1])
	require.ErrorIs(t, err, net.ErrClosed)
}
