package bench_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wsauth/wsauth/bench/internal/loadgen"
)

// BenchmarkHandshake measures connect + upgrade + auth + auth_ok with RS256
// and ES256 tokens, against three references measured in the same rounds:
// the bare jwt.Parse of the same token with the same public key (the
// verification bound), jwks.Verifier.Verify (what wsauth calls), and a gws
// connect + upgrade + hello without any token. workers handshakes run at
// once; each reference runs with as many goroutines. One op is one
// handshake on each target plus one Parse and one Verify.
//
// With cache=on the verifier has a cache of verified tokens
// (jwks.Options.TokenCacheSize) and, the token being the same every time,
// every handshake after the first is a cache hit: a reconnect storm of
// clients that still hold valid tokens.
//
// The Centrifuge baseline runs in the same rounds: connect with the same
// token, verified with golang-jwt on every connect (it has no cache), up
// to the connect reply.
//
// Metrics: x-bound is wsauth's time per handshake over jwt.Parse's;
// x-gws-plus-parse compares it with the sum of the gws handshake and
// jwt.Parse, the bound of a server that must do both (goal <= 1.2);
// x-gws with the gws handshake alone (time, goal <= 1.25, that is a rate
// of at least 0.8x); rate-x-centrifuge is wsauth's handshake rate over
// Centrifuge's (goal >= 1.2).
func BenchmarkHandshake(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		for _, cache := range []int{0, 1024} {
			t := startTargetsWith(b, loadgen.ServerOptions{Algorithm: alg, TokenCacheSize: cache}, true)
			onOff := map[bool]string{false: "off", true: "on"}[cache > 0]
			for _, workers := range []int{1, 16} {
				b.Run(fmt.Sprintf("alg=%s/cache=%s/workers=%d", alg, onOff, workers), func(b *testing.B) {
					benchHandshake(b, t, alg, workers)
				})
			}
		}
	}
}

func benchHandshake(b *testing.B, t *targets, alg string, workers int) {
	ctx := benchCtx(b)
	target := t.ws.Target()
	token, err := target.Token(ctx, "bench-0")
	if err != nil {
		b.Fatal(err)
	}
	pub := t.ws.IdP.PublicKey()
	keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
	parser := jwt.NewParser(jwt.WithValidMethods([]string{alg}))
	if _, err := parser.Parse(token, keyfunc); err != nil {
		b.Fatal(err)
	}
	// parallel runs f n times on workers goroutines.
	parallel := func(n int64, f func() error) (loadgen.Stats, error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		var firstErr atomic.Value
		start := time.Now()
		for range workers {
			wg.Go(func() {
				for next.Add(1) <= n {
					if err := f(); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err, ok := firstErr.Load().(error); ok {
			return loadgen.Stats{}, err
		}
		return loadgen.Stats{Msgs: n, Elapsed: time.Since(start), Hist: new(loadgen.Histogram)}, nil
	}
	var parse, verify loadgen.Stats
	servers := t.servers()
	b.ResetTimer()
	total := interleaveN(b, int64(b.N), len(servers), func(i int, n int64) (loadgen.Stats, error) {
		if i != targetGws {
			return loadgen.Handshakes(ctx, servers[i].Target(), n, 0, workers, loadgen.DialOptions{}, nil)
		}
		st, err := loadgen.Handshakes(ctx, t.raw.Target(), n, 0, workers, loadgen.DialOptions{}, nil)
		if err != nil {
			return st, err
		}
		// The references run right after the gws baseline, in the
		// same rounds.
		p, err := parallel(n, func() error { _, err := parser.Parse(token, keyfunc); return err })
		if err != nil {
			return st, err
		}
		parse.Add(p)
		v, err := parallel(n, func() error { _, err := t.ws.Verifier.Verify(context.Background(), token); return err })
		if err != nil {
			return st, err
		}
		verify.Add(v)
		return st, nil
	})
	b.StopTimer()
	gws, ws := total[targetGws], total[targetWsauth]
	b.ReportMetric(ws.Rate(), "wsauth-hs/s")
	b.ReportMetric(gws.Rate(), "gws-hs/s")
	b.ReportMetric(parse.Rate(), "parse/s")
	b.ReportMetric(verify.Rate(), "verify/s")
	b.ReportMetric(us(ws.Hist.Quantile(0.50)), "wsauth-p50-us")
	b.ReportMetric(us(ws.Hist.Quantile(0.99)), "wsauth-p99-us")
	perOp := func(s loadgen.Stats) float64 { return float64(s.Elapsed) / float64(max(s.Msgs, 1)) }
	if parse.Msgs > 0 {
		b.ReportMetric(perOp(ws)/perOp(parse), "x-bound")
		b.ReportMetric(perOp(ws)/(perOp(parse)+perOp(gws)), "x-gws-plus-parse")
		b.ReportMetric(perOp(verify)/perOp(parse), "verify-x-parse")
	}
	if gws.Msgs > 0 {
		b.ReportMetric(perOp(ws)/perOp(gws), "x-gws")
	}
	if len(total) > targetCentrifuge {
		cf := total[targetCentrifuge]
		b.ReportMetric(cf.Rate(), "centrifuge-hs/s")
		if cf.Rate() > 0 {
			b.ReportMetric(ws.Rate()/cf.Rate(), "rate-x-centrifuge")
		}
	}
}
