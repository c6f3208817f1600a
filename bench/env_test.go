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

// targets is a wsauth server and the gws baseline, and optionally the
// Centrifuge baseline, with client pools cached by size so that
// sub-benchmarks (and the benchmark framework's repeated calls with growing
// b.N) reuse their connections.
type targets struct {
	ws, raw *loadgen.Server
	cf      *loadgen.Server         // nil unless asked for
	pools   map[int][]*loadgen.Pool // conns -> {gws, wsauth[, centrifuge]}
}

// Target indexes in interleave and poolSet.
const (
	targetGws = iota
	targetWsauth
	targetCentrifuge
)

var targetNames = [...]string{"gws", "wsauth", "centrifuge"}

// startTargets starts both servers; they and every cached pool close when
// the top-level benchmark b ends.
func startTargets(b *testing.B, opts loadgen.ServerOptions) *targets {
	return startTargetsWith(b, opts, false)
}

// startTargetsWith starts both servers and, with centrifuge, the
// Centrifuge baseline with an identity provider of the same algorithm.
func startTargetsWith(b *testing.B, opts loadgen.ServerOptions, centrifuge bool) *targets {
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
	t := &targets{ws: ws, raw: raw, pools: make(map[int][]*loadgen.Pool)}
	if centrifuge {
		if t.cf, err = loadgen.StartCentrifuge(opts.Algorithm); err != nil {
			_ = ws.Close()
			_ = raw.Close()
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for _, set := range t.pools {
			for _, p := range set {
				p.Close()
			}
		}
		for _, s := range []*loadgen.Server{ws, raw, t.cf} {
			if s == nil {
				continue
			}
			if err := s.Close(); err != nil {
				b.Error(err)
			}
		}
	})
	return t
}

// servers returns the targets in index order: gws, wsauth, then
// Centrifuge if it runs.
func (t *targets) servers() []*loadgen.Server {
	if t.cf != nil {
		return []*loadgen.Server{t.raw, t.ws, t.cf}
	}
	return []*loadgen.Server{t.raw, t.ws}
}

// poolPair returns conns connections to each server: {gws, wsauth}.
func (t *targets) poolPair(b *testing.B, conns int) [2]*loadgen.Pool {
	set := t.poolSet(b, conns)
	return [2]*loadgen.Pool{set[targetGws], set[targetWsauth]}
}

// poolSet returns conns connections to each server, in servers' order.
func (t *targets) poolSet(b *testing.B, conns int) []*loadgen.Pool {
	b.Helper()
	if p, ok := t.pools[conns]; ok {
		return p
	}
	ctx := benchCtx(b)
	var set []*loadgen.Pool
	for _, s := range t.servers() {
		p, err := loadgen.Dial(ctx, s.Target(), conns, loadgen.DialOptions{})
		if err != nil {
			for _, p := range set {
				p.Close()
			}
			b.Fatalf("%s: %v", s.Kind, err)
		}
		set = append(set, p)
	}
	t.pools[conns] = set
	return set
}

// interleaveN measures n operations on each of k targets in rounds (1, 4
// or 8, by n) whose order rotates and alternates direction (0 1 2, 2 1 0,
// 1 2 0, 0 2 1, ... for three), so that no target always runs first or
// after the same one, and returns their totals.
func interleaveN(b *testing.B, n int64, k int, run func(target int, n int64) (loadgen.Stats, error)) []loadgen.Stats {
	b.Helper()
	// More rounds when there are enough operations: the load other
	// processes put on a shared machine changes from one second to the
	// next, and finer interleaving spreads it more evenly.
	rounds := int64(1)
	switch {
	case n >= 16000:
		rounds = 8
	case n >= 2000:
		rounds = 4
	}
	total := make([]loadgen.Stats, k)
	for r := range rounds {
		chunk := n / rounds
		if r < n%rounds {
			chunk++
		}
		for i := range k {
			target := (i + int(r)/2) % k
			if r%2 == 1 {
				target = (k - 1 - i + int(r)/2) % k
			}
			st, err := run(target, chunk)
			if err != nil {
				b.Fatalf("%s: %v", targetNames[target], err)
			}
			total[target].Add(st)
		}
	}
	return total
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

// reportCentrifuge reports the Centrifuge baseline's throughput, latency
// and allocations, and wsauth's ratios to it: x-centrifuge is wsauth's
// throughput over Centrifuge's.
func reportCentrifuge(b *testing.B, ws, cf loadgen.Stats) {
	b.ReportMetric(cf.Rate(), "centrifuge-msg/s")
	if cf.Rate() > 0 {
		b.ReportMetric(ws.Rate()/cf.Rate(), "x-centrifuge")
	}
	b.ReportMetric(us(cf.Hist.Quantile(0.99)), "centrifuge-p99-us")
	if p := cf.Hist.Quantile(0.99); p > 0 {
		b.ReportMetric(float64(ws.Hist.Quantile(0.99))/float64(p), "p99-x-centrifuge")
	}
	b.ReportMetric(cf.AllocsPerMsg(), "centrifuge-allocs/msg")
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// benchConns are the connection counts of the throughput benchmarks.
var benchConns = []int{1, 100, 1000}

// benchPayloads are the frame sizes of the throughput benchmarks, in bytes.
var benchPayloads = []int{64, 1024}

func pairName(conns, payload int) string { return fmt.Sprintf("conns=%d/payload=%d", conns, payload) }
