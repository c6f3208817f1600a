package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/protocol"
)

// fakeSource is the token source of clients of a fake, which accepts any
// token: its tokens are distinctive, for probe.checkLogs to look for.
func fakeSource(_ context.Context, call int) (string, error) {
	return fmt.Sprintf("fake-token-%d-ZQ9", call), nil
}

// fake is a hostile or faulty wsauth server on a loopback socket: a bare
// gws server that the test scripts through on, which sees every frame the
// client sends on every connection, on that connection's read goroutine.
// It answers pings unless silent is set.
type fake struct {
	url    string
	on     func(fc *fakeConn, f protocol.ClientFrame)
	silent atomic.Bool
	closes chan string // "code:reason" of every close frame a client sent

	mu    sync.Mutex
	conns []*fakeConn
}

// fakeConn is one connection of a fake.
type fakeConn struct {
	*gws.Conn
	n     int // 1 for the first connection
	auths int // auth frames so far (the connection's read goroutine only)
}

func newFake(t *testing.T, on func(fc *fakeConn, f protocol.ClientFrame)) *fake {
	t.Helper()
	fk := &fake{on: on, closes: make(chan string, 100)}
	up := gws.NewUpgrader(fakeEvents{fk}, &gws.ServerOption{SubProtocols: []string{protocol.Subprotocol}})
	var loops sync.WaitGroup
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		socket, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		fk.mu.Lock()
		fc := &fakeConn{Conn: socket, n: len(fk.conns) + 1}
		fk.conns = append(fk.conns, fc)
		fk.mu.Unlock()
		socket.Session().Store("fc", fc)
		loops.Add(1)
		defer loops.Done()
		socket.ReadLoop()
	}))
	t.Cleanup(func() {
		fk.mu.Lock()
		for _, fc := range fk.conns {
			_ = fc.NetConn().Close()
		}
		fk.mu.Unlock()
		loops.Wait()
		hs.Close()
	})
	fk.url = "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	return fk
}

// count returns how many connections the fake has upgraded.
func (fk *fake) count() int {
	fk.mu.Lock()
	defer fk.mu.Unlock()
	return len(fk.conns)
}

// conn returns connection n (from 1).
func (fk *fake) conn(n int) *fakeConn {
	fk.mu.Lock()
	defer fk.mu.Unlock()
	return fk.conns[n-1]
}

// expectClose requires the next close frame a client sent to be want
// ("code:reason").
func (fk *fake) expectClose(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-fk.closes:
		require.Equal(t, want, got)
	case <-time.After(wait):
		t.Fatalf("no close frame within %v; want %q", wait, want)
	}
}

func (fc *fakeConn) write(f protocol.ServerFrame) {
	_ = fc.WriteMessage(gws.OpcodeText, protocol.AppendServer(nil, f))
}

// authOK answers an auth frame with session "s<n>" (zero exp: none).
func (fc *fakeConn) authOK(sub string, exp time.Time) {
	f := protocol.ServerFrame{Type: protocol.TypeAuthOK, Session: fmt.Sprintf("s%d", fc.n), Subject: sub}
	if !exp.IsZero() {
		f.Exp = exp.Unix()
	}
	fc.write(f)
}

func (fc *fakeConn) send(data string) {
	fc.write(protocol.ServerFrame{Type: protocol.TypeMessage, Data: json.RawMessage(data)})
}

type fakeEvents struct{ fk *fake }

func (fakeEvents) OnOpen(*gws.Conn)         {}
func (fakeEvents) OnPong(*gws.Conn, []byte) {}

func (e fakeEvents) OnClose(_ *gws.Conn, err error) {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		select {
		case e.fk.closes <- fmt.Sprintf("%d:%s", ce.Code, ce.Reason):
		default:
		}
	}
}

func (e fakeEvents) OnPing(s *gws.Conn, payload []byte) {
	if !e.fk.silent.Load() {
		_ = s.WritePong(payload)
	}
}

func (e fakeEvents) OnMessage(s *gws.Conn, m *gws.Message) {
	defer m.Close()
	f, err := protocol.DecodeClient(m.Bytes())
	if err != nil {
		_ = s.WriteClose(uint16(protocol.CloseMalformed), []byte("malformed frame"))
		return
	}
	v, _ := s.Session().Load("fc")
	fc := v.(*fakeConn)
	if f.Type == protocol.TypeAuth {
		fc.auths++
	}
	e.fk.on(fc, f)
}

// proxy forwards the TCP connections it accepts to a server until freeze:
// then it stops reading the connections it holds, as a network that drops
// every packet would (what the peers write piles up in their kernels'
// buffers, and nothing arrives). Connections accepted later are forwarded.
type proxy struct {
	url    string
	frozen chan struct{} // closed by freeze
	done   chan struct{} // closed when the test ends
	wg     sync.WaitGroup

	mu    sync.Mutex
	socks []net.Conn
}

// newProxy returns a proxy in front of the server of wsURL, with the same
// path.
//
// What a client writes to a frozen connection piles up in the kernels'
// buffers until they are full; only then does a write block and time out.
// Linux sizes a socket's send buffer by its segment size, 64 KiB on
// loopback: a client took 4 MiB (15 messages of 256 KiB) to block, which
// costs a -race build seconds of a loaded machine's CPU. The proxy's
// listener therefore announces small segments (smallSegments): a client
// then blocks after two or three such messages.
func newProxy(t *testing.T, wsURL string) *proxy {
	t.Helper()
	target := strings.TrimPrefix(wsURL, "ws://")
	path := target[strings.Index(target, "/"):]
	target = target[:strings.Index(target, "/")]
	lc := net.ListenConfig{Control: smallSegments}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	px := &proxy{url: "ws://" + ln.Addr().String() + path, frozen: make(chan struct{}), done: make(chan struct{})}
	px.wg.Add(1)
	go func() {
		defer px.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			px.mu.Lock()
			px.socks = append(px.socks, in, out)
			frozen := px.frozen
			px.mu.Unlock()
			px.wg.Add(2)
			go px.pipe(out, in, frozen)
			go px.pipe(in, out, frozen)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		close(px.done)
		px.mu.Lock()
		for _, s := range px.socks {
			_ = s.Close()
		}
		px.mu.Unlock()
		px.wg.Wait()
	})
	return px
}

func (px *proxy) pipe(dst, src net.Conn, frozen chan struct{}) {
	defer px.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		select {
		case <-frozen: // hold what was read, and read no more
			<-px.done
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = dst.Close()
			return
		}
	}
}

// freeze stops every connection forwarded so far.
func (px *proxy) freeze() {
	px.mu.Lock()
	defer px.mu.Unlock()
	close(px.frozen)
	px.frozen = make(chan struct{})
}
