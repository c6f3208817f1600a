package bench_test

import (
	"context"
	"testing"

	"github.com/wsauth/wsauth/bench/internal/loadgen"
)

// BenchmarkEcho measures authenticated echo round-trips: a client message,
// OnMessage, Session.Reply back; each connection has one round-trip in
// flight. The gws baseline echoes with gws's WriteMessage; the Centrifuge
// baseline answers an RPC carrying the same data. One op is one round-trip
// on each target (ns/op covers all three); payload is the size of the
// frame in each direction, identical on wsauth and gws (Centrifuge's
// envelope adds about 20 bytes).
func BenchmarkEcho(b *testing.B) {
	t := startTargetsWith(b, loadgen.ServerOptions{}, true)
	benchThroughput(b, t, func(ctx context.Context, pool *loadgen.Pool, _, _, payload int, n int64) (loadgen.Stats, error) {
		return pool.Echo(ctx, n, payload)
	})
}

// pipelineWindow is the number of echo messages a pipelining client keeps
// in flight.
const pipelineWindow = 256

// BenchmarkPipelined measures echo with pipelining clients: each
// connection keeps pipelineWindow messages in flight (it sends one more for
// each reply) and reads every reply. Otherwise as BenchmarkEcho.
func BenchmarkPipelined(b *testing.B) {
	t := startTargetsWith(b, loadgen.ServerOptions{}, true)
	benchThroughputOver(b, t, []int{1, 100}, func(ctx context.Context, pool *loadgen.Pool, _, _, payload int, n int64) (loadgen.Stats, error) {
		return pool.EchoPipelined(ctx, n, payload, pipelineWindow)
	})
}

// pushWindow is the number of pushed messages in flight per connection:
// 64 for one connection, down to 4 for 1,000, so that about 4,000 messages
// at most are queued and latency stays a measure of the servers rather than
// of the queue (Little's law). Always well below wsauth's outbox bound (256).
func pushWindow(conns int) int { return min(64, max(4, 4096/conns)) }

// BenchmarkPush measures server-to-client push: GOMAXPROCS goroutines call
// Server.Send (the baseline: gws's WriteAsync of the same frame) for
// connections that have fewer than pushWindow messages in flight. One op is
// one message received on each target.
func BenchmarkPush(b *testing.B) {
	t := startTargets(b, loadgen.ServerOptions{})
	push := [2]loadgen.PushFunc{t.raw.Push(), t.ws.Push()}
	benchThroughput(b, t, func(ctx context.Context, pool *loadgen.Pool, target, conns, payload int, n int64) (loadgen.Stats, error) {
		return pool.Push(ctx, n, payload, pushWindow(conns), push[target])
	})
}

// benchThroughput runs phase on every target for every connection count and
// payload, b.N messages each, in interleaved rounds. target is targetGws,
// targetWsauth or targetCentrifuge.
func benchThroughput(b *testing.B, t *targets, phase func(ctx context.Context, pool *loadgen.Pool, target, conns, payload int, n int64) (loadgen.Stats, error)) {
	benchThroughputOver(b, t, benchConns, phase)
}

func benchThroughputOver(b *testing.B, t *targets, connCounts []int, phase func(ctx context.Context, pool *loadgen.Pool, target, conns, payload int, n int64) (loadgen.Stats, error)) {
	for _, conns := range connCounts {
		for _, payload := range benchPayloads {
			b.Run(pairName(conns, payload), func(b *testing.B) {
				pools := t.poolSet(b, conns)
				ctx := benchCtx(b)
				b.ResetTimer()
				total := interleaveN(b, int64(b.N), len(pools), func(target int, n int64) (loadgen.Stats, error) {
					return phase(ctx, pools[target], target, conns, payload, n)
				})
				reportPair(b, total[targetGws], total[targetWsauth])
				if len(total) > targetCentrifuge {
					reportCentrifuge(b, total[targetWsauth], total[targetCentrifuge])
				}
			})
		}
	}
}
