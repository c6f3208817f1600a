package wsauth

import (
	"bytes"
	"encoding/binary"
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
