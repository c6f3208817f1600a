package jwks_test

import (
	"context"
	"testing"
	"time"

	"github.com/wsauth/wsauth/jwks"
)

// BenchmarkVerifyCache compares, in the same run, a bare jwt.Parse of a
// token with its key (parse), Verify without a token cache (cold), Verify
// with a cache that always misses (miss: a one-entry cache and two tokens
// taking turns, so every call also hashes, copies and evicts), and Verify
// answered by the cache (hit). The x-parse metrics are times over Parse's.
func BenchmarkVerifyCache(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run("alg="+alg, func(b *testing.B) {
			s := newBenchSetup(b, alg)
			other := s.idp.Token("bob", 2*time.Hour)
			cold := newBenchVerifier(b, s.idp, jwks.Options{})
			missing := newBenchVerifier(b, s.idp, jwks.Options{TokenCacheSize: 1})
			cached := newBenchVerifier(b, s.idp, jwks.Options{TokenCacheSize: 1024})
			ctx := context.Background()
			flip := false
			fs := []func() error{
				s.parse,
				func() error { _, err := cold.Verify(ctx, s.token); return err },
				func() error {
					tok := s.token
					if flip = !flip; flip {
						tok = other
					}
					_, err := missing.Verify(ctx, tok)
					return err
				},
				func() error { _, err := cached.Verify(ctx, s.token); return err },
			}
			for _, f := range fs {
				if err := f(); err != nil {
					b.Fatal(err)
				}
			}
			checks := jwks.SignatureChecks(cached)
			b.ReportAllocs()
			ns := interleave(b, fs...)
			if got := jwks.SignatureChecks(cached); got != checks {
				b.Fatalf("the cached verifier checked %d signatures", got-checks)
			}
			for i, name := range []string{"parse", "cold", "miss", "hit"} {
				b.ReportMetric(ns[i], name+"-ns")
				if i > 0 {
					b.ReportMetric(ns[i]/ns[0], name+"-x-parse")
				}
			}
		})
	}
}

// BenchmarkVerifyCacheHitParallel measures cache hits from all Ps at once
// (run with -cpu 1,2,... to see contention), over 64 tokens.
func BenchmarkVerifyCacheHitParallel(b *testing.B) {
	s := newBenchSetup(b, "ES256")
	v := newBenchVerifier(b, s.idp, jwks.Options{TokenCacheSize: 1024})
	tokens := make([]string, 64)
	for i := range tokens {
		tokens[i] = s.idp.Token("user-"+string(rune('A'+i)), time.Hour)
		if _, err := v.Verify(context.Background(), tokens[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := v.Verify(context.Background(), tokens[i%len(tokens)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
