package bench_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/bench/internal/loadgen"
)

// BenchmarkUnderAttack measures the echo round-trip latency of 100
// authenticated clients (64-byte frames, each sending one every 10 ms)
// while 1,000 unauthenticated sockets flood the gate, against the same
// clients on a quiet server. One op is a cycle of three timed phases: quiet
// for half a phase, attack for a phase (after the flood ramped up), quiet
// again; a phase is 300 ms, 3 s with -wsauth.heavy. The server runs with the
// default pending caps (1,024 in all, 64 per IP); the attackers come from
// 20 loopback addresses, a quarter sending junk frames (closed at once,
// 4400), half pinging every 10 ms (closed when the 16 KiB pre-auth budget
// is spent, 4429) and a quarter silent (closed at the 5 s auth deadline,
// 4408), each reconnecting at once. The attackers run in a child process
// (this test binary, running TestBenchFloodChild), pinned with taskset to
// the machine's last CPU where taskset exists, so that their own work
// takes at most that CPU from the server and its clients; the server and
// the clients are not pinned.
//
// The same flood against the gws baseline (target=gws: no gate, so its
// attackers are never closed and ping or echo junk forever) tells what the
// flood costs the machine from what it costs wsauth. interval is the pause
// between two frames of one attacker: 10 ms saturates the two cores with
// the attackers' own writes, 100 ms and 1 s are floods the machine can
// absorb.
//
// Metrics: p99-x-quiet is the attack p99 over the quiet p99 (goal <= 2);
// attack-conn/s, attack-frame/s and refused/s describe the flood.
func BenchmarkUnderAttack(b *testing.B) {
	const clients = 100
	attackers := 1000
	// Both ends of the clients' sockets are in this process, and the
	// server's end of the attackers'.
	need := uint64(2*2*clients + attackers + 512)
	if limit, err := loadgen.RaiseFileLimit(need); err != nil || limit < need {
		attackers = max(int(limit)-512, 0) - 4*clients
		if attackers < 100 {
			b.Skipf("RLIMIT_NOFILE is %d (%v): too few descriptors for a flood", limit, err)
		}
		b.Logf("RLIMIT_NOFILE is %d (%v): %d attackers", limit, err, attackers)
	}
	t := startTargets(b, loadgen.ServerOptions{
		// The default per-IP cap (Options.MaxPendingPerIP's default, 64), which
		// loadgen raises for its single-address clients: the attackers spread
		// over 20 addresses.
		Configure: func(o *wsauth.Options) { o.MaxPendingPerIP = 64 },
	})
	// The clients connect while the servers are quiet.
	pools := t.poolPair(b, clients)
	for _, interval := range []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, time.Second} {
		for i, srv := range []*loadgen.Server{t.ws, t.raw} {
			b.Run(fmt.Sprintf("target=%s/interval=%v", srv.Kind, interval), func(b *testing.B) {
				benchAttack(b, srv, pools[1-i], attackers, interval)
			})
		}
	}
}

// attackPace is the time between two messages of one client: 100 clients
// make an open load of 10,000 round-trips per second, a fraction of what
// the machine can echo, so that latency measures how responsive the server
// stays, not the queue of a saturated machine.
const attackPace = 10 * time.Millisecond

// attackPhase is how long each measured phase of BenchmarkUnderAttack
// lasts: short by default so that the benchmark stays quick at -benchtime
// 1x, 3 seconds with -wsauth.heavy.
func attackPhase() time.Duration {
	if *heavy {
		return 3 * time.Second
	}
	return 300 * time.Millisecond
}

func benchAttack(b *testing.B, srv *loadgen.Server, pool *loadgen.Pool, attackers int, interval time.Duration) {
	ctx := benchCtx(b)
	d := attackPhase()
	echo := func(d time.Duration) loadgen.Stats {
		st, err := pool.EchoPaced(ctx, d, attackPace, 64)
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	var quiet, attack loadgen.Stats
	var flooded loadgen.FloodStats
	var floodTime time.Duration
	for range b.N {
		settle(b, srv, len(pool.Conns))
		quiet.Add(echo(d / 2))
		flood := startFloodChild(b, srv.URL, loadgen.FloodOptions{Sockets: attackers, Interval: interval})
		// Let the flood ramp up: every attacker connected at least once.
		warm := time.Now()
		for flood.Stats().Connects < int64(attackers) && time.Since(warm) < 10*time.Second {
			time.Sleep(20 * time.Millisecond)
		}
		before, t0 := flood.Stats(), time.Now()
		attack.Add(echo(d))
		after := flood.Stats()
		floodTime += time.Since(t0)
		flood.Stop()
		settle(b, srv, len(pool.Conns))
		flooded.Connects += after.Connects - before.Connects
		flooded.Frames += after.Frames - before.Frames
		flooded.Refused += after.Refused - before.Refused
		quiet.Add(echo(d / 2))
	}

	p99q, p99a := quiet.Hist.Quantile(0.99), attack.Hist.Quantile(0.99)
	b.ReportMetric(us(quiet.Hist.Quantile(0.50)), "quiet-p50-us")
	b.ReportMetric(us(p99q), "quiet-p99-us")
	b.ReportMetric(us(attack.Hist.Quantile(0.50)), "attack-p50-us")
	b.ReportMetric(us(p99a), "attack-p99-us")
	if p99q > 0 {
		b.ReportMetric(float64(p99a)/float64(p99q), "p99-x-quiet")
	}
	b.ReportMetric(quiet.Rate(), "quiet-msg/s")
	b.ReportMetric(attack.Rate(), "attack-msg/s")
	sec := floodTime.Seconds()
	b.ReportMetric(float64(flooded.Connects)/sec, "attack-conn/s")
	b.ReportMetric(float64(flooded.Frames)/sec, "attack-frame/s")
	b.ReportMetric(float64(flooded.Refused)/sec, "refused/s")
	b.ReportMetric(0, "ns/op")
	if pool.Closes() > 0 {
		b.Fatalf("%d authenticated clients were disconnected", pool.Closes())
	}
}

// startFloodChild starts the flood in a child process pinned to the last
// CPU (see BenchmarkUnderAttack).
func startFloodChild(b *testing.B, url string, opts loadgen.FloodOptions) loadgen.Flooder {
	b.Helper()
	ctx := benchCtx(b)
	pinned := false
	f, err := loadgen.StartFloodChild(ctx, url, opts, func() *exec.Cmd {
		var cmd *exec.Cmd
		cmd, pinned = loadgen.PinnedCommand(ctx, runtime.NumCPU(), os.Args[0],
			"-test.run=^TestBenchFloodChild$", "-test.bench=^$", "-test.count=1")
		return cmd
	})
	if err != nil {
		b.Fatal(err)
	}
	if !pinned {
		b.Log("taskset not found or a single CPU: the attackers' process is not pinned")
	}
	return f
}

// TestBenchFloodChild is the attackers' side of BenchmarkUnderAttack; it
// only runs in the child process the benchmark starts.
func TestBenchFloodChild(t *testing.T) {
	if !loadgen.IsFloodChild() {
		t.Skip("runs only as BenchmarkUnderAttack's flood child")
	}
	if err := loadgen.RunFloodChild(context.Background(), os.Stdin, os.Stdout); err != nil {
		t.Fatal(err)
	}
}

// settle waits until the server holds only the clients' connections again
// (the attackers' are closed and, for wsauth, none is pending), so that a
// quiet phase does not measure the flood's teardown.
func settle(b *testing.B, srv *loadgen.Server, clients int) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for srv.Conns() != clients || (srv.Wsauth != nil && srv.Wsauth.Pending() != 0) {
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d connections after the flood, want %d", srv.Kind, srv.Conns(), clients)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
}
