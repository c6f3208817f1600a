package bench_test

import (
	"fmt"
	"testing"

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
		size := 0
		if cache == "on" {
			size = 1024
		}
		server := func(perMessage bool) loadgen.ServerOptions {
			return loadgen.ServerOptions{
				TokenCacheSize: size,
				Configure:      func(o *wsauth.Options) { o.TokenPerMessage = perMessage },
			}
		}
		pair := startOnOffPair(b, "token per message",
			[2]loadgen.ServerOptions{off: server(false), on: server(true)},
			[2]loadgen.DialOptions{on: {TokenPerMessage: true}})
		for _, conns := range []int{1, 100} {
			b.Run(fmt.Sprintf("cache=%s/conns=%d/payload=64", cache, conns), func(b *testing.B) {
				pair.echo(b, conns)
			})
		}
	}
}
