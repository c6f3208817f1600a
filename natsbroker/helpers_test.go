package natsbroker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/broker/brokertest"
	"github.com/wsauth/wsauth/natsbroker"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// connect opens a connection to url that reconnects quickly and forever,
// closed when tb ends.
func connect(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(10*time.Millisecond),
		nats.ReconnectJitter(0, 0),
		nats.Timeout(time.Second),
		nats.NoCallbacksAfterClientClose(),
	)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// newBroker returns a Broker on a new connection to url.
func newBroker(tb testing.TB, url string, opts natsbroker.Options) *natsbroker.Broker {
	tb.Helper()
	b, err := natsbroker.New(context.Background(), connect(tb, url), opts)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var nodes atomic.Int64

// join makes a new node of b, which leaves when tb ends.
func join(tb testing.TB, b broker.Broker) (broker.Member, *brokertest.Recorder) {
	tb.Helper()
	rec := &brokertest.Recorder{Node: fmt.Sprintf("node-%d", nodes.Add(1)), Sessions: map[string]bool{}}
	m, err := b.Join(context.Background(), rec.Node, rec)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Leave() })
	return m, rec
}

var users atomic.Int64

// newUser returns a principal no other test uses.
func newUser() session.Principal {
	return session.Principal{Issuer: "https://idp.example/", Subject: fmt.Sprintf("user-%d", users.Add(1))}
}

func data(i int) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)) }

// publish publishes n messages to p and returns the last position.
func publish(tb testing.TB, m broker.Member, p session.Principal, n int) protocol.Position {
	tb.Helper()
	var pos protocol.Position
	for i := range n {
		var err error
		if pos, err = m.Publish(context.Background(), p, data(i)); err != nil {
			tb.Fatal(err)
		}
	}
	return pos
}

// eventually polls cond every 5ms for up to 10s.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("no %s within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// proxy forwards TCP connections to a server until cut: then it closes
// them and refuses new ones, until restored. It cuts one client off NATS
// while the others stay connected.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns []net.Conn
	wg    sync.WaitGroup
}

func newProxy(tb testing.TB, target string) *proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	tb.Cleanup(func() {
		_ = ln.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		p.wg.Go(func() { pipe(s, c) })
		p.wg.Go(func() { pipe(c, s) })
	}
}

// setCut cuts the proxied connections (and refuses new ones) or restores
// them.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil
	}
}
