package wsauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/cmd/wsauth-bench/loadgen"
	"github.com/wsauth/wsauth/wsauthtest"
)

// BenchmarkReauthStorm authenticates n sessions (1,000, or 10,000 with
// -wsauth.heavy) with tokens that all expire in the same second, over 100
// subjects, while the server sends every session a numbered tick every
// 100 ms. One op is one storm: the fake clock jumps to the reauth lead
// (at=lead: every session gets reauth_required at once and stays active) or
// to the expiry itself (at=expiry: every session also expires, so its ticks
// are buffered until its fresh token arrives). Every client answers
// reauth_required with a fresh token at once.
//
// It fails if a tick is lost, duplicated or reordered, if a message goes to
// OnUndelivered or if a session closes. Metrics, from the clock jump:
// advance-ms is the jump itself (the scheduler firing every session's
// deadline), reauth-ms until the last session's fresh auth_ok,
// drain-ms until every tick sent before the ticker stopped (right after
// the last auth_ok) was delivered; reauth/s is n / reauth-ms.
func BenchmarkReauthStorm(b *testing.B) {
	n := 1000
	if *heavy {
		n = 10000
	}
	// Clients and server share this process: two sockets per session.
	want := uint64(2*n + 512)
	if limit, err := loadgen.RaiseFileLimit(want); err != nil || limit < want {
		n = max(int(limit)-512, 0) / 2
		b.Logf("RLIMIT_NOFILE is %d (%v): storm with %d sessions", limit, err, n)
	}
	for _, at := range []string{"lead", "expiry"} {
		b.Run(fmt.Sprintf("sessions=%d/at=%s", n, at), func(b *testing.B) {
			benchStorm(b, n, at == "expiry")
		})
	}
}

const stormSubjects = 100

func benchStorm(b *testing.B, n int, expire bool) {
	ctx := benchCtx(b)
	clock := wsauthtest.NewClock(epoch)
	var undelivered, closes atomic.Int64
	srv, err := loadgen.StartWsauth(loadgen.ServerOptions{
		Clock: clock,
		Configure: func(o *wsauth.Options) {
			o.OnUndelivered = func(_ string, data []json.RawMessage) { undelivered.Add(int64(len(data))) }
			o.OnClose = func(*wsauth.Session, *wsauth.CloseError) { closes.Add(1) }
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := srv.Close(); err != nil {
			b.Error(err)
		}
	}()

	// The tokens of round r expire at epoch + 24h + r hours: the first ones
	// are the target's own (24h), minted at epoch like every later one.
	expiry := func(round int) time.Time { return epoch.Add(24*time.Hour + time.Duration(round)*time.Hour) }
	var fresh atomic.Pointer[map[string]string]
	mint := func(round int) {
		m := make(map[string]string, stormSubjects)
		for i := range stormSubjects {
			sub := "bench-" + strconv.Itoa(i)
			m[sub] = srv.IdP.Sign(map[string]any{
				"iss": srv.IdP.Issuer(), "aud": loadgen.Audience, "sub": sub,
				"iat": epoch.Unix(), "nbf": epoch.Unix(), "exp": expiry(round).Unix(),
			})
		}
		fresh.Store(&m)
	}
	refresh := func(_ context.Context, sub string) (string, error) { return (*fresh.Load())[sub], nil }

	// Ticks: the server sends session i {"tick":k}, k = 1, 2, 3...; client i
	// checks it got exactly the next one.
	last := make([]atomic.Int64, n)
	var bad atomic.Int64
	onData := func(c *loadgen.Conn, frame []byte) {
		i := bytes.Index(frame, []byte(`"tick":`))
		if i < 0 {
			return
		}
		end := bytes.IndexByte(frame[i:], '}')
		k, err := strconv.ParseInt(string(frame[i+len(`"tick":`):i+end]), 10, 64)
		if err != nil || k != last[c.Index].Load()+1 {
			bad.Add(1)
			return
		}
		last[c.Index].Store(k)
	}
	pool, err := loadgen.Dial(ctx, srv.Target(), n, loadgen.DialOptions{
		Subjects: stormSubjects, Refresh: refresh, OnData: onData,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()

	sent := make([]int64, n)
	var reauth, drain, advance time.Duration
	b.ResetTimer()
	for round := 1; round <= b.N; round++ {
		b.StopTimer()
		mint(round)
		b.StartTimer()
		tk := startTicker(srv.Wsauth, pool.Conns, sent, 100*time.Millisecond)
		time.Sleep(200 * time.Millisecond) // ticks flowing before the storm

		at := expiry(round - 1).Add(-wsauth.DefaultReauthLead)
		if expire {
			at = expiry(round - 1)
		}
		t0 := time.Now()
		clock.Set(at)
		advance += time.Since(t0)
		for _, c := range pool.Conns {
			for c.Reauths.Load() < int64(round) {
				if err := c.CloseErr(); err != nil || ctx.Err() != nil {
					b.Fatalf("session %d: closed (%v) or timed out before its reauth", c.Index, err)
				}
				time.Sleep(time.Millisecond)
			}
		}
		reauth += time.Since(t0)
		tk.stop()
		for i := range pool.Conns {
			for last[i].Load() < sent[i] {
				if ctx.Err() != nil || bad.Load() > 0 {
					b.Fatalf("session %d: got tick %d of %d (%d out of order)", i, last[i].Load(), sent[i], bad.Load())
				}
				time.Sleep(time.Millisecond)
			}
		}
		drain += time.Since(t0)
	}
	b.StopTimer()
	if bad.Load() > 0 || undelivered.Load() > 0 || closes.Load() > 0 || pool.Closes() > 0 {
		b.Fatalf("ticks out of order: %d, undelivered: %d, closed: %d", bad.Load(), undelivered.Load(), closes.Load())
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
	b.ReportMetric(ms(advance), "advance-ms")
	b.ReportMetric(ms(reauth), "reauth-ms")
	b.ReportMetric(ms(drain), "drain-ms")
	b.ReportMetric(float64(n)/(ms(reauth)/1000), "reauth/s")
	var ticks int64
	for i := range last {
		ticks += last[i].Load()
	}
	b.ReportMetric(float64(ticks), "ticks-delivered")
	b.ReportMetric(0, "ns/op")
}

// ticker sends every session its next numbered tick, one round every
// period (or back to back when a round takes longer).
type ticker struct {
	stopCh chan struct{}
	done   chan struct{}
}

// startTicker starts sending ticks; sent[i] is the number of the last tick
// sent to conns[i], owned by the ticker until stop returns.
func startTicker(srv *wsauth.Server, conns []*loadgen.Conn, sent []int64, period time.Duration) *ticker {
	tk := &ticker{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tk.done)
		t := time.NewTicker(period)
		defer t.Stop()
		var buf []byte
		for {
			for i, c := range conns {
				buf = strconv.AppendInt(append(buf[:0], `{"tick":`...), sent[i]+1, 10)
				buf = append(buf, '}')
				if srv.Send(c.Session(), buf) == nil {
					sent[i]++
				}
			}
			select {
			case <-tk.stopCh:
				return
			case <-t.C:
			}
		}
	}()
	return tk
}

// stop stops the ticker and waits for it.
func (tk *ticker) stop() {
	close(tk.stopCh)
	<-tk.done
}
