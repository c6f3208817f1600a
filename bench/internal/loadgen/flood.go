package loadgen

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// FloodOptions configures a flood of unauthenticated sockets.
type FloodOptions struct {
	// Sockets is the number of attacking sockets, each reconnecting as soon
	// as it is closed. Default 1000.
	Sockets int
	// Sources are the source IPs, used round-robin so that no single IP
	// hits a per-IP cap (Linux routes all of 127.0.0.0/8 to loopback).
	// Default: the wsauth default per-IP cap allows 64 pending sockets per
	// IP, so Sockets/50 addresses 127.0.1.1, 127.0.1.2, ...
	Sources []string
	// Interval is the pause between two frames of one socket, and before a
	// reconnect after a refusal. Default 10ms.
	Interval time.Duration
}

// FloodStats counts what the attackers did.
type FloodStats struct {
	Connects int64 // upgrades that succeeded
	Refused  int64 // upgrades answered 503
	Failed   int64 // other dial or upgrade failures
	Frames   int64 // frames sent: pings and junk
	Closes   int64 // sockets the server closed
}

// Flood is a running flood; Stop ends it.
type Flood struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	st     struct{ connects, refused, failed, frames, closes atomic.Int64 }
}

// StartFlood starts opts.Sockets attackers against url, their first
// connects spread over one interval. A quarter of them
// send junk text frames (which a wsauth server closes at once with 4400),
// half send 125-byte pings (counted against the pre-auth byte budget, 4429),
// and a quarter connect and stay silent (4408 at the auth deadline).
func StartFlood(ctx context.Context, url string, opts FloodOptions) *Flood {
	if opts.Sockets <= 0 {
		opts.Sockets = 1000
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Millisecond
	}
	if len(opts.Sources) == 0 {
		for i := range (opts.Sockets + 49) / 50 {
			opts.Sources = append(opts.Sources, net.IPv4(127, 0, 1, byte(1+i)).String())
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Flood{cancel: cancel}
	for i := range opts.Sockets {
		src := opts.Sources[i%len(opts.Sources)]
		// Spread the attackers' first connects evenly over one interval, so
		// that their frames do not arrive in synchronized bursts.
		delay := opts.Interval * time.Duration(i) / time.Duration(opts.Sockets)
		f.wg.Go(func() { f.attack(ctx, url, src, i%4, opts.Interval, delay) })
	}
	return f
}

// Stats returns the counts so far.
func (f *Flood) Stats() FloodStats {
	return FloodStats{
		Connects: f.st.connects.Load(), Refused: f.st.refused.Load(), Failed: f.st.failed.Load(),
		Frames: f.st.frames.Load(), Closes: f.st.closes.Load(),
	}
}

// Stop ends the flood, closing every attacking socket, and returns the
// final counts.
func (f *Flood) Stop() FloodStats {
	f.cancel()
	f.wg.Wait()
	return f.Stats()
}

// attacker is the gws event handler of one attacking socket.
type attacker struct{ closed chan struct{} }

func (a *attacker) OnOpen(*gws.Conn)                      {}
func (a *attacker) OnClose(*gws.Conn, error)              { close(a.closed) }
func (a *attacker) OnPing(c *gws.Conn, p []byte)          { _ = c.WritePong(p) }
func (a *attacker) OnPong(*gws.Conn, []byte)              {}
func (a *attacker) OnMessage(_ *gws.Conn, m *gws.Message) { m.Close() }

var (
	junkFrame   = []byte(`{"type":"auth","token":`)
	pingPayload = bytes.Repeat([]byte{'p'}, 125)
)

func (f *Flood) attack(ctx context.Context, url, src string, kind int, interval, delay time.Duration) {
	local := &net.TCPAddr{IP: net.ParseIP(src)}
	copts := &gws.ClientOption{
		Addr:             url,
		HandshakeTimeout: 5 * time.Second,
		NewDialer: func() (gws.Dialer, error) {
			return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: local}, nil
		},
	}
	pause := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	if !pause(delay) {
		return
	}
	for ctx.Err() == nil {
		a := &attacker{closed: make(chan struct{})}
		ws, resp, err := gws.NewClient(a, copts)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
				f.st.refused.Add(1)
			} else if !errors.Is(err, context.Canceled) {
				f.st.failed.Add(1)
			}
			if !pause(interval) {
				return
			}
			continue
		}
		f.st.connects.Add(1)
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			ws.ReadLoop()
		}()
		f.harass(ctx, ws, a, kind, interval)
		select {
		case <-a.closed:
			f.st.closes.Add(1)
		default:
			_ = ws.WriteClose(1000, nil)
		}
		<-readDone
	}
}

// harass sends frames of its kind until the server closes the socket or
// ctx ends.
func (f *Flood) harass(ctx context.Context, ws *gws.Conn, a *attacker, kind int, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.closed:
			return
		case <-t.C:
		}
		var err error
		switch kind {
		case 0, 1:
			err = ws.WritePing(pingPayload)
		case 2:
			err = ws.WriteMessage(gws.OpcodeText, junkFrame)
		default:
			continue // silent: wait for the auth deadline
		}
		if err != nil {
			return
		}
		f.st.frames.Add(1)
	}
}
