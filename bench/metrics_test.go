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
	obs, err := prommetrics.New(prometheus.NewRegistry(), prommetrics.Options{})
	if err != nil {
		b.Fatal(err)
	}
	servers := startOnOffPair(b, "metrics",
		[2]loadgen.ServerOptions{on: {Configure: func(o *wsauth.Options) { o.Observer = obs }}},
		[2]loadgen.DialOptions{})
	for _, conns := range []int{1, 100} {
		b.Run(fmt.Sprintf("mode=echo/conns=%d/payload=64", conns), func(b *testing.B) {
			servers.echo(b, conns)
		})
	}
	for _, workers := range []int{1, 16} {
		b.Run(fmt.Sprintf("mode=handshake/workers=%d", workers), func(b *testing.B) {
			benchMetricsHandshake(b, servers, workers)
		})
	}
}

func benchMetricsHandshake(b *testing.B, servers *onOffPair, workers int) {
	ctx := benchCtx(b)
	b.ResetTimer()
	total := interleaveFine(b, int64(b.N), func(i int, n int64) (loadgen.Stats, error) {
		st, err := loadgen.Handshakes(ctx, servers.servers[i].Target(), n, 0, workers, loadgen.DialOptions{}, nil)
		return st, servers.err(i, err)
	})
	b.StopTimer()
	reportOnOff(b, total, "hs/s")
}
