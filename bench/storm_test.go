package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/bench/internal/loadgen"
	"github.com/wsauth/wsauth/protocol"
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
// The server and its fake clock run in this process; the clients run in a
// child process (this test binary running TestBenchStormChild, driven by
// loadgen.StartStorm), so that each process needs one descriptor per
// session: 10,000 sessions fit in an RLIMIT_NOFILE of 20,000. This process
// mints every token (the initial ones and each round's fresh ones) and hands
// them to the child before the round starts; the child answers
// reauth_required from them, checks the ticks of every session and reports
// back.
//
// It fails if a tick is lost, duplicated or reordered on any session, if a
// session does not reauthenticate, if a message goes to OnUndelivered, if a
// session closes or a client gets an error frame. Metrics, from the clock
// jump: advance-ms is the jump itself (the scheduler firing every session's
// deadline), reauth-ms until the last session's fresh auth_ok,
// drain-ms until every tick sent before the ticker stopped (right after the
// last auth_ok) was delivered; reauth/s is n / reauth-ms.
//
// Timing across the two processes: advance-ms is this process's clock
// around clock.Set. reauth-ms and drain-ms are differences of readings of
// one clock both processes share, loadgen.StormNow (CLOCK_MONOTONIC on
// Linux): this process reads it just before clock.Set, the child when its
// 1 ms poll first sees the last session's fresh auth_ok (last tick) and
// sends the reading back. So they include neither the pipe nor this
// process's lag in reading the child's report while it serves the storm
// (tens of milliseconds at 10,000 sessions; -test.v logs it). The child
// confirms it is watching ("armed") before the clock jumps.
func BenchmarkReauthStorm(b *testing.B) {
	n := 1000
	if *heavy {
		n = 10000
	}
	// Each process holds one socket per session (the server here, the
	// clients in the child), plus a few for the IdP, JWKS and pipes.
	want := uint64(n + 512)
	if limit, err := loadgen.RaiseFileLimit(want); err != nil || limit < want {
		n = max(int(limit)-512, 10)
		b.Logf("RLIMIT_NOFILE is %d (%v): storm with %d sessions", limit, err, n)
	}
	for _, at := range []string{"lead", "expiry"} {
		b.Run(fmt.Sprintf("sessions=%d/at=%s", n, at), func(b *testing.B) {
			benchStorm(b, n, at == "expiry")
		})
	}
}

const stormSubjects = 100

// epoch is where the storm's fake clock starts.
var epoch = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// stormLead is the reauth lead the storm runs with: 30s,
// Options.ReauthLead's default. The server gets it explicitly so that the
// at=lead jump lands on the lead even if the default changes.
const stormLead = 30 * time.Second

func benchStorm(b *testing.B, n int, expire bool) {
	ctx := benchCtx(b)
	clock := wsauthtest.NewClock(epoch)
	var undelivered, closes atomic.Int64
	srv, err := loadgen.StartWsauth(loadgen.ServerOptions{
		Clock: clock,
		Configure: func(o *wsauth.Options) {
			o.ReauthLead = stormLead
			o.OnUndelivered = func(_ wsauth.Principal, data []json.RawMessage) { undelivered.Add(int64(len(data))) }
			o.OnClose = func(*wsauth.Session, *protocol.CloseError) { closes.Add(1) }
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

	// The tokens of round r expire at epoch + 24h + r hours: round 0's are
	// the initial ones. All are minted at epoch (the fake clock's start), so
	// a fresh token's exp is an hour past the clock's jump.
	expiry := func(round int) time.Time { return epoch.Add(24*time.Hour + time.Duration(round)*time.Hour) }
	mint := func(round int) map[string]string {
		m := make(map[string]string, stormSubjects)
		for i := range stormSubjects {
			sub := "bench-" + strconv.Itoa(i)
			m[sub] = srv.IdP.Sign(map[string]any{
				"iss": srv.IdP.Issuer(), "aud": loadgen.Audience, "sub": sub,
				"iat": epoch.Unix(), "nbf": epoch.Unix(), "exp": expiry(round).Unix(),
			})
		}
		return m
	}

	// The clients: session i authenticates as bench-<i mod 100>; the server
	// sends it {"tick":k}, k = 1, 2, 3..., and the child checks that each
	// arrives once, in order.
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBenchStormChild$", "-test.bench=^$",
		"-test.count=1", "-test.timeout=15m")
	child, err := loadgen.StartStorm(ctx, cmd, srv.URL, n, stormSubjects, mint(0))
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := child.Close(); err != nil {
			b.Error(err)
		}
	}()

	sent := make([]int64, n)
	var reauth, drain, advance time.Duration
	var ticks int64
	var tk *ticker
	defer func() { // on failure; a no-op once stopped
		if tk != nil {
			tk.stop()
		}
	}()
	b.ResetTimer()
	for round := 1; round <= b.N; round++ {
		b.StopTimer()
		if err := child.Tokens(ctx, round, mint(round)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		tk = startTicker(srv.Wsauth, child.Sessions, sent, 100*time.Millisecond)
		time.Sleep(200 * time.Millisecond) // ticks flowing before the storm

		at := expiry(round - 1).Add(-stormLead)
		if expire {
			at = expiry(round - 1)
		}
		rtt, err := child.Reauth(ctx, round)
		if err != nil {
			b.Fatal(err)
		}
		t0, start := loadgen.StormNow(), time.Now()
		clock.Set(at)
		advance += time.Since(start)
		r, err := child.WaitReauth(ctx, round)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Check(); err != nil {
			b.Fatal(err)
		}
		dr, err := r.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		reauth += dr
		tk.stop()
		d, err := child.Drain(ctx, round, sent)
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Check(); err != nil {
			b.Fatal(err)
		}
		dd, err := d.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		drain += dd
		ticks = d.Ticks
		if testing.Verbose() {
			b.Logf("round %d: arm round trip %v; reauth %v, drain %v; this process read the reports %v, %v after the jump's start",
				round, rtt, dr, dd, time.Duration(r.At-t0), time.Duration(d.At-t0))
		}
	}
	b.StopTimer()
	if undelivered.Load() > 0 || closes.Load() > 0 {
		b.Fatalf("server side: %d messages undelivered, %d sessions closed", undelivered.Load(), closes.Load())
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
	b.ReportMetric(ms(advance), "advance-ms")
	b.ReportMetric(ms(reauth), "reauth-ms")
	b.ReportMetric(ms(drain), "drain-ms")
	b.ReportMetric(float64(n)/(ms(reauth)/1000), "reauth/s")
	b.ReportMetric(float64(ticks), "ticks-delivered")
	b.ReportMetric(0, "ns/op")
}

// TestBenchStormChild is the client side of BenchmarkReauthStorm; it only
// runs in the child process the benchmark starts.
func TestBenchStormChild(t *testing.T) {
	if !loadgen.IsStormChild() {
		t.Skip("only runs as BenchmarkReauthStorm's child process")
	}
	if err := loadgen.RunStormChild(context.Background(), os.Stdin, os.Stdout); err != nil {
		t.Fatal(err)
	}
}

// ticker sends every session its next numbered tick, one round every
// period (or back to back when a round takes longer).
type ticker struct {
	stopCh chan struct{}
	done   chan struct{}
	once   sync.Once
}

// startTicker starts sending ticks; sent[i] is the number of the last tick
// sent to sessions[i], owned by the ticker until stop returns.
func startTicker(srv *wsauth.Server, sessions []string, sent []int64, period time.Duration) *ticker {
	tk := &ticker{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tk.done)
		t := time.NewTicker(period)
		defer t.Stop()
		var buf []byte
		for {
			for i, id := range sessions {
				buf = strconv.AppendInt(append(buf[:0], `{"tick":`...), sent[i]+1, 10)
				buf = append(buf, '}')
				if srv.Send(context.Background(), id, buf) == nil {
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

// stop stops the ticker and waits for it; later calls do nothing.
func (tk *ticker) stop() {
	tk.once.Do(func() { close(tk.stopCh) })
	<-tk.done
}
