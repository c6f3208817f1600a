package bench_test

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/wsauth/wsauth/bench/internal/loadgen"
)

// The benchmarks compare wsauth with a plain gws server written for them
// (loadgen.StartGws: same gws options, upgraded through net/http). Every
// figure is a ratio of two measurements taken in the same process, in
// interleaved rounds (gws, wsauth, wsauth, gws, ...), so that the load other
// processes put on the machine hits both alike. docs/benchmarks.md has the
// numbers and the commands.
//
// With -benchtime 1x (CI) every benchmark runs once at a small size. The
// 10,000-connection cases need -wsauth.heavy:
//
//	go test -run '^$' -bench 'IdleMemory|ReauthStorm' -wsauth.heavy .

var heavy = flag.Bool("wsauth.heavy", false, "run the idle-memory and reauth-storm benchmarks at 10,000 connections")

// benchCtx bounds every benchmark phase: a stuck phase fails instead of
// hanging the run.
func benchCtx(b *testing.B) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b.Cleanup(cancel)
	return ctx
}

// targets is a wsauth server and the gws baseline, with client pools cached
// by size so that sub-benchmarks (and the benchmark framework's repeated
// calls with growing b.N) reuse their connections.
type targets struct {
	ws, raw *loadgen.Server
	pools   map[int][2]*loadgen.Pool // conns -> {gws, wsauth}
}

// startTargets starts both servers; they and every cached pool close when
// the top-level benchmark b ends.
func startTargets(b *testing.B, opts loadgen.ServerOptions) *targets {
	b.Helper()
	ws, err := loadgen.StartWsauth(opts)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := loadgen.StartGws(loadgen.GwsOptions{})
	if err != nil {
		_ = ws.Close()
		b.Fatal(err)
	}
	t := &targets{ws: ws, raw: raw, pools: make(map[int][2]*loadgen.Pool)}
	b.Cleanup(func() {
		for _, p := range t.pools {
			p[0].Close()
			p[1].Close()
		}
		if err := ws.Close(); err != nil {
			b.Error(err)
		}
		if err := raw.Close(); err != nil {
			b.Error(err)
		}
	})
	return t
}

// poolPair returns conns connections to each server: {gws, wsauth}.
func (t *targets) poolPair(b *testing.B, conns int) [2]*loadgen.Pool {
	b.Helper()
	if p, ok := t.pools[conns]; ok {
		return p
	}
	ctx := benchCtx(b)
	raw, err := loadgen.Dial(ctx, t.raw.Target(), conns, loadgen.DialOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ws, err := loadgen.Dial(ctx, t.ws.Target(), conns, loadgen.DialOptions{})
	if err != nil {
		raw.Close()
		b.Fatal(err)
	}
	t.pools[conns] = [2]*loadgen.Pool{raw, ws}
	return t.pools[conns]
}

// interleave measures n operations on each of the two targets (0: gws, 1:
// wsauth) in alternating rounds and returns their totals.
func interleave(b *testing.B, n int64, run func(target int, n int64) (loadgen.Stats, error)) (gws, ws loadgen.Stats) {
	b.Helper()
	rounds := int64(1)
	if n >= 2000 {
		rounds = 4
	}
	var total [2]loadgen.Stats
	order := [...]int{0, 1, 1, 0}
	for r := range rounds {
		chunk := n / rounds
		if r < n%rounds {
			chunk++
		}
		for i := range 2 {
			target := order[(2*int(r)+i)%4]
			st, err := run(target, chunk)
			if err != nil {
				b.Fatalf("%s: %v", [2]string{"gws", "wsauth"}[target], err)
			}
			total[target].Add(st)
		}
	}
	return total[0], total[1]
}

// reportPair reports the throughput, latency and allocations of both
// targets and their ratios: x-gws is wsauth's throughput over gws's (goal
// >= 0.8), p99-x-gws wsauth's p99 latency over gws's.
func reportPair(b *testing.B, gws, ws loadgen.Stats) {
	b.ReportMetric(gws.Rate(), "gws-msg/s")
	b.ReportMetric(ws.Rate(), "wsauth-msg/s")
	if gws.Rate() > 0 {
		b.ReportMetric(ws.Rate()/gws.Rate(), "x-gws")
	}
	b.ReportMetric(us(gws.Hist.Quantile(0.99)), "gws-p99-us")
	b.ReportMetric(us(ws.Hist.Quantile(0.50)), "wsauth-p50-us")
	b.ReportMetric(us(ws.Hist.Quantile(0.99)), "wsauth-p99-us")
	if p := gws.Hist.Quantile(0.99); p > 0 {
		b.ReportMetric(float64(ws.Hist.Quantile(0.99))/float64(p), "p99-x-gws")
	}
	b.ReportMetric(gws.AllocsPerMsg(), "gws-allocs/msg")
	b.ReportMetric(ws.AllocsPerMsg(), "wsauth-allocs/msg")
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// benchConns are the connection counts of the throughput benchmarks.
var benchConns = []int{1, 100, 1000}

// benchPayloads are the frame sizes of the throughput benchmarks, in bytes.
var benchPayloads = []int{64, 1024}

func pairName(conns, payload int) string { return fmt.Sprintf("conns=%d/payload=%d", conns, payload) }
