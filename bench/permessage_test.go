package bench_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/bench/internal/loadgen"
)

// BenchmarkPerMessageToken measures what Options.TokenPerMessage costs
// against the session mode: two wsauth servers that differ only by
// TokenPerMessage (off: the session's identity; on: every message carries
// a token, verified) run echo round trips in interleaved rounds, as
// BenchmarkMetrics does. The client of the per-message server puts its
// session's own token in every message frame (the frame grows by the
// token's member, 589 bytes with the IdP's 578-byte RS256 tokens); the
// data is the same 64 B frame on both. One op is one round trip on each server.
//
// cache=on gives both servers' jwks.Verifier a token cache
// (jwks.Options.TokenCacheSize 1024, more than the 100 subjects): the
// session's token, verified at auth, is a cache hit in every message.
// cache=off is the Verifier's default, no cache: every message is a full
// verification (the signature included), which is also what a cache hit
// rate of zero costs, e.g. a fresh token in every message.
//
// Metrics: on-x-off is the rate with per-message tokens over the rate
// without; p99-on-x-off the same for the p99 latency; the allocations per
// round trip are the whole process's (clients included).
func BenchmarkPerMessageToken(b *testing.B) {
	for _, cache := range []string{"on", "off"} {
		pair := startPerMessagePair(b, cache == "on")
		for _, conns := range []int{1, 100} {
			b.Run(fmt.Sprintf("cache=%s/conns=%d/payload=64", cache, conns), func(b *testing.B) {
				benchPerMessageEcho(b, pair, conns)
			})
		}
	}
}

// Indexes of startPerMessagePair's servers.
const (
	perMessageOff = iota
	perMessageOn
)

// perMessagePair is the session-mode server and the per-message one, and
// their client pools by size, reused by the benchmark framework's repeated
// calls with growing b.N.
type perMessagePair struct {
	servers [2]*loadgen.Server
	pools   map[int][2]*loadgen.Pool
}

// startPerMessagePair starts both servers, with a token cache or without;
// they and their pools close when b ends.
func startPerMessagePair(b *testing.B, cache bool) *perMessagePair {
	b.Helper()
	pp := &perMessagePair{pools: make(map[int][2]*loadgen.Pool)}
	// Registered first, run last: the pools close before the servers.
	b.Cleanup(func() {
		for _, pair := range pp.pools {
			pair[0].Close()
			pair[1].Close()
		}
	})
	size := 0
	if cache {
		size = 1024
	}
	for i := range pp.servers {
		s, err := loadgen.StartWsauth(loadgen.ServerOptions{
			TokenCacheSize: size,
			Configure:      func(o *wsauth.Options) { o.TokenPerMessage = i == perMessageOn },
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := s.Close(); err != nil {
				b.Error(err)
			}
		})
		pp.servers[i] = s
	}
	return pp
}

// poolPair returns conns connections to each server, {off, on}, the
// second putting its token in every message; it checks that both
// servers answer every message.
func (pp *perMessagePair) poolPair(b *testing.B, conns int) [2]*loadgen.Pool {
	b.Helper()
	if pair, ok := pp.pools[conns]; ok {
		return pair
	}
	var pair [2]*loadgen.Pool
	for i, s := range pp.servers {
		p, err := loadgen.Dial(benchCtx(b), s.Target(), conns, loadgen.DialOptions{TokenPerMessage: i == perMessageOn})
		if err != nil {
			if i > 0 {
				pair[0].Close()
			}
			b.Fatal(err)
		}
		pair[i] = p
	}
	pp.pools[conns] = pair
	// A refused message gets an error frame instead of its echo, and the
	// phase would wait for that echo until benchCtx ends: fail fast.
	ctx, cancel := context.WithTimeout(benchCtx(b), 10*time.Second)
	defer cancel()
	for i, p := range pair {
		if _, err := p.Echo(ctx, int64(2*conns), 64); err != nil {
			b.Fatal(perMessageErr(i, err))
		}
	}
	return pair
}

func benchPerMessageEcho(b *testing.B, pair *perMessagePair, conns int) {
	ctx := benchCtx(b)
	pools := pair.poolPair(b, conns)
	b.ResetTimer()
	total := interleaveFine(b, int64(b.N), func(i int, n int64) (loadgen.Stats, error) {
		st, err := pools[i].Echo(ctx, n, 64)
		return st, perMessageErr(i, err)
	})
	b.StopTimer()
	for i, p := range pools {
		for _, c := range p.Conns {
			if n := c.ErrorFrames.Load(); n > 0 {
				b.Fatal(perMessageErr(i, fmt.Errorf("connection %d got %d error frames", c.Index, n)))
			}
		}
	}
	reportOnOff(b, total, "msg/s")
}

// perMessageErr names the server in an error.
func perMessageErr(i int, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("token per message %s: %w", [...]string{perMessageOff: "off", perMessageOn: "on"}[i], err)
}
