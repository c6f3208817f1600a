package bench_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/bench/internal/loadgen"
	"github.com/wsauth/wsauth/prommetrics"
)

// BenchmarkMetrics measures what Prometheus metrics cost a server: two
// wsauth servers that differ only by Options.Observer (none, and a
// prommetrics.Observer on a registry of its own) run echo round trips and
// connect + auth handshakes in interleaved rounds, as the gws comparisons
// do. One op is one round trip (or handshake) on each server.
//
// Metrics: on-x-off is the rate with metrics over the rate without (goal
// >= 0.97: metrics cost under 3%); p99-on-x-off the same for the p99
// latency.
func BenchmarkMetrics(b *testing.B) {
	servers := startMetricsPair(b)
	for _, conns := range []int{1, 100} {
		b.Run(fmt.Sprintf("mode=echo/conns=%d/payload=64", conns), func(b *testing.B) {
			benchMetricsEcho(b, servers, conns)
		})
	}
	for _, workers := range []int{1, 16} {
		b.Run(fmt.Sprintf("mode=handshake/workers=%d", workers), func(b *testing.B) {
			benchMetricsHandshake(b, servers, workers)
		})
	}
}

// Indexes of startMetricsPair's servers.
const (
	metricsOff = iota
	metricsOn
)

// metricsPair is the server without metrics and the one with, and their
// client pools by size, reused by the benchmark framework's repeated calls
// with growing b.N.
type metricsPair struct {
	servers [2]*loadgen.Server
	pools   map[int][2]*loadgen.Pool
}

// startMetricsPair starts both servers; they and their pools close when b
// ends.
func startMetricsPair(b *testing.B) *metricsPair {
	b.Helper()
	obs, err := prommetrics.New(prometheus.NewRegistry(), prommetrics.Options{})
	if err != nil {
		b.Fatal(err)
	}
	mp := &metricsPair{pools: make(map[int][2]*loadgen.Pool)}
	// Registered first, run last: the pools close before the servers.
	b.Cleanup(func() {
		for _, pair := range mp.pools {
			pair[0].Close()
			pair[1].Close()
		}
	})
	servers := &mp.servers
	for i, configure := range []func(*wsauth.Options){nil, func(o *wsauth.Options) { o.Observer = obs }} {
		s, err := loadgen.StartWsauth(loadgen.ServerOptions{Configure: configure})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := s.Close(); err != nil {
				b.Error(err)
			}
		})
		servers[i] = s
	}
	return mp
}

// poolPair returns conns connections to each server: {off, on}.
func (mp *metricsPair) poolPair(b *testing.B, conns int) [2]*loadgen.Pool {
	b.Helper()
	if pair, ok := mp.pools[conns]; ok {
		return pair
	}
	var pair [2]*loadgen.Pool
	for i, s := range mp.servers {
		p, err := loadgen.Dial(benchCtx(b), s.Target(), conns, loadgen.DialOptions{})
		if err != nil {
			if i > 0 {
				pair[0].Close()
			}
			b.Fatal(err)
		}
		pair[i] = p
	}
	mp.pools[conns] = pair
	return pair
}

func benchMetricsEcho(b *testing.B, servers *metricsPair, conns int) {
	ctx := benchCtx(b)
	pools := servers.poolPair(b, conns)
	b.ResetTimer()
	total := interleaveFine(b, int64(b.N), func(i int, n int64) (loadgen.Stats, error) {
		st, err := pools[i].Echo(ctx, n, 64)
		return st, metricsErr(i, err)
	})
	b.StopTimer()
	reportOnOff(b, total, "msg/s")
}

func benchMetricsHandshake(b *testing.B, servers *metricsPair, workers int) {
	ctx := benchCtx(b)
	b.ResetTimer()
	total := interleaveFine(b, int64(b.N), func(i int, n int64) (loadgen.Stats, error) {
		st, err := loadgen.Handshakes(ctx, servers.servers[i].Target(), n, 0, workers, loadgen.DialOptions{}, nil)
		return st, metricsErr(i, err)
	})
	b.StopTimer()
	reportOnOff(b, total, "hs/s")
}

// interleaveFine measures n operations on each server in up to 64
// rounds of at least 250 operations, alternating which server goes first
// (interleaveN runs at most 8 rounds): the difference to measure is a
// fraction of a percent, far below the swings of a shared machine's load,
// and shorter rounds spread those more evenly over both servers.
func interleaveFine(b *testing.B, n int64, run func(i int, n int64) (loadgen.Stats, error)) []loadgen.Stats {
	b.Helper()
	rounds := min(max(n/250, 1), 64)
	total := make([]loadgen.Stats, 2)
	for r := range rounds {
		chunk := n / rounds
		if r < n%rounds {
			chunk++
		}
		for k := range 2 {
			i := k ^ int(r%2) // off, on; then on, off
			st, err := run(i, chunk)
			if err != nil {
				b.Fatal(err)
			}
			total[i].Add(st)
		}
	}
	return total
}

// metricsErr names the server in an error.
func metricsErr(i int, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("metrics %s: %w", [...]string{"off", "on"}[i], err)
}

// reportOnOff reports the rates of a pair of servers, {off, on}, their
// ratios and their allocations per operation (BenchmarkMetrics,
// BenchmarkPerMessageToken).
func reportOnOff(b *testing.B, total []loadgen.Stats, unit string) {
	off, on := total[metricsOff], total[metricsOn]
	b.ReportMetric(off.Rate(), "off-"+unit)
	b.ReportMetric(on.Rate(), "on-"+unit)
	if off.Rate() > 0 {
		b.ReportMetric(on.Rate()/off.Rate(), "on-x-off")
	}
	if p := off.Hist.Quantile(0.99); p > 0 {
		b.ReportMetric(float64(on.Hist.Quantile(0.99))/float64(p), "p99-on-x-off")
	}
	b.ReportMetric(off.AllocsPerMsg(), "off-allocs/op")
	b.ReportMetric(on.AllocsPerMsg(), "on-allocs/op")
}
