package bench_test

import (
	"context"
	"testing"

	"github.com/wsauth/wsauth/bench/internal/loadgen"
)

// BenchmarkEcho measures authenticated echo round-trips: a client message,
// OnMessage, Session.Send back; each connection has one round-trip in
// flight. The baseline echoes with gws's WriteMessage. One op is one
// round-trip on each target (ns/op covers both); payload is the size of
// the frame in each direction, identical on both targets.
func BenchmarkEcho(b *testing.B) {
	t := startTargets(b, loadgen.ServerOptions{})
	benchThroughput(b, t, func(ctx context.Context, pool *loadgen.Pool, _, _, payload int, n int64) (loadgen.Stats, error) {
		return pool.Echo(ctx, n, payload)
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

// benchThroughput runs phase on both targets for every connection count and
// payload, b.N messages each, in interleaved rounds. target is 0 for gws, 1
// for wsauth.
func benchThroughput(b *testing.B, t *targets, phase func(ctx context.Context, pool *loadgen.Pool, target, conns, payload int, n int64) (loadgen.Stats, error)) {
	for _, conns := range benchConns {
		for _, payload := range benchPayloads {
			b.Run(pairName(conns, payload), func(b *testing.B) {
				pools := t.poolPair(b, conns)
				ctx := benchCtx(b)
				b.ResetTimer()
				gws, ws := interleave(b, int64(b.N), func(target int, n int64) (loadgen.Stats, error) {
					return phase(ctx, pools[target], target, conns, payload, n)
				})
				reportPair(b, gws, ws)
			})
		}
	}
}
