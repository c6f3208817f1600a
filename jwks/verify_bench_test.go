package jwks_test

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/wsauthtest"
)

// benchChunk is how many calls of one function run back to back before
// the next function's turn: the functions compared take turns all through
// the benchmark, so that load from other processes hits them alike.
const benchChunk = 32

// interleave runs each of fs b.N times, taking turns in chunks of
// benchChunk, and returns each one's mean time per call in ns.
func interleave(b *testing.B, fs ...func() error) []float64 {
	b.Helper()
	elapsed := make([]time.Duration, len(fs))
	b.ResetTimer()
	for done := 0; done < b.N; done += benchChunk {
		n := min(benchChunk, b.N-done)
		for i, f := range fs {
			start := time.Now()
			for range n {
				if err := f(); err != nil {
					b.Fatal(err)
				}
			}
			elapsed[i] += time.Since(start)
		}
	}
	b.StopTimer()
	ns := make([]float64, len(fs))
	for i, d := range elapsed {
		ns[i] = float64(d.Nanoseconds()) / float64(max(b.N, 1))
	}
	return ns
}

// benchSetup is an IdP, a token of it, and jwt.Parse of that token with
// the IdP's public key, the bound Verify is measured against.
type benchSetup struct {
	idp   *wsauthtest.IdP
	token string
	parse func() error
}

func newBenchSetup(b *testing.B, alg string) benchSetup {
	p := wsauthtest.NewIdP(b, wsauthtest.IdPOptions{Algorithm: alg})
	token := p.Token("alice", time.Hour)
	pub := p.PublicKey()
	keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
	parser := jwt.NewParser(jwt.WithValidMethods([]string{alg}))
	parse := func() error { _, err := parser.Parse(token, keyfunc); return err }
	if err := parse(); err != nil {
		b.Fatal(err)
	}
	return benchSetup{idp: p, token: token, parse: parse}
}

func newBenchVerifier(b *testing.B, p *wsauthtest.IdP, opts jwks.Options) *jwks.Verifier {
	opts.Issuers = []jwks.Issuer{{Issuer: p.Issuer(), JWKSURL: p.JWKSURL(), Audience: []string{p.Audience()}}}
	opts.Logger = quiet
	v, err := jwks.New(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	return v
}

// BenchmarkVerify compares Verify (no token cache) with a bare jwt.Parse of
// the same token with the same key, in the same run. x-parse is Verify's
// time over Parse's.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run("alg="+alg, func(b *testing.B) {
			s := newBenchSetup(b, alg)
			v := newBenchVerifier(b, s.idp, jwks.Options{})
			ctx := context.Background()
			verify := func() error { _, err := v.Verify(ctx, s.token); return err }
			if err := verify(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			ns := interleave(b, s.parse, verify)
			b.ReportMetric(ns[0], "parse-ns")
			b.ReportMetric(ns[1], "verify-ns")
			b.ReportMetric(ns[1]/ns[0], "x-parse")
		})
	}
}
