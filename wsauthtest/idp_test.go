package wsauthtest_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/wsauthtest"
)

// get fetches url and returns status and body.
func get(t *testing.T, ctx context.Context, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}

// parse verifies token against the JWK Set jwks.
func parse(t *testing.T, jwks []byte, token string, opts ...jwt.ParserOption) (*jwt.Token, error) {
	t.Helper()
	kf, err := keyfunc.NewJWKSetJSON(jwks)
	require.NoError(t, err)
	return jwt.Parse(token, kf.Keyfunc, opts...)
}

func kids(t *testing.T, jwks []byte) []string {
	t.Helper()
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
			ALG string `json:"alg"`
			USE string `json:"use"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(jwks, &set))
	var out []string
	for _, k := range set.Keys {
		assert.Empty(t, k.D, "private key material published")
		assert.Equal(t, "sig", k.USE)
		assert.NotEmpty(t, k.ALG)
		out = append(out, k.KID)
	}
	return out
}

func TestIdPTokens(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{"", "RS256", "PS256", "ES256", "EdDSA"} {
		t.Run("alg="+alg, func(t *testing.T) {
			t.Parallel()
			p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Algorithm: alg})
			now := time.Unix(1_700_000_000, 0)
			p.SetNow(func() time.Time { return now })
			assert.True(t, strings.HasPrefix(p.Issuer(), "http://127.0.0.1:"), "default issuer: the test server's URL, got %q", p.Issuer())
			assert.Equal(t, wsauthtest.DefaultAudience, p.Audience())
			assert.Equal(t, p.Issuer()+wsauthtest.JWKSPath, p.JWKSURL())

			status, body := get(t, t.Context(), p.JWKSURL())
			require.Equal(t, http.StatusOK, status)
			assert.JSONEq(t, string(p.JWKS()), string(body))
			assert.Equal(t, 1, p.Fetches())
			assert.Equal(t, []string{p.KID()}, kids(t, p.JWKS()))

			tok, err := parse(t, p.JWKS(), p.Token("alice", time.Hour),
				jwt.WithTimeFunc(func() time.Time { return now }), jwt.WithExpirationRequired(),
				jwt.WithIssuer(p.Issuer()), jwt.WithAudience(p.Audience()))
			require.NoError(t, err)
			want := jwt.MapClaims{
				"iss": p.Issuer(), "aud": p.Audience(), "sub": "alice",
				"iat": float64(now.Unix()), "nbf": float64(now.Unix()), "exp": float64(now.Unix() + 3600),
			}
			assert.Equal(t, want, tok.Claims)
			assert.Equal(t, p.KID(), tok.Header["kid"])
			if alg != "" {
				assert.Equal(t, alg, tok.Header["alg"])
			}
		})
	}
}

func TestIdPOptions(t *testing.T) {
	t.Parallel()
	p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Issuer: "https://issuer.example/", Audience: "my-api"})
	assert.Equal(t, "https://issuer.example/", p.Issuer())
	assert.Equal(t, "my-api", p.Audience())
	assert.True(t, strings.HasPrefix(p.JWKSURL(), "http://127.0.0.1:"), "the JWKS is served by the test server, not at the issuer: %q", p.JWKSURL())

	tok, err := parse(t, p.JWKS(), p.Token("bob", time.Minute))
	require.NoError(t, err)
	assert.Equal(t, "https://issuer.example/", tok.Claims.(jwt.MapClaims)["iss"])
	assert.Equal(t, "my-api", tok.Claims.(jwt.MapClaims)["aud"])
}

func TestIdPSignWith(t *testing.T) {
	t.Parallel()
	p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{})
	claims := jwt.MapClaims{"sub": "x", "exp": time.Now().Add(time.Hour).Unix()}
	headerOf := func(token string) map[string]any {
		tok, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
		require.NoError(t, err)
		return tok.Header
	}

	signed := p.Sign(claims)
	_, err := parse(t, p.JWKS(), signed)
	require.NoError(t, err)
	tok, _, err := jwt.NewParser().ParseUnverified(signed, jwt.MapClaims{})
	require.NoError(t, err)
	assert.Len(t, tok.Claims.(jwt.MapClaims), 2, "Sign adds no claim")

	h := headerOf(p.SignWith(nil, nil, map[string]any{"kid": nil, "jku": "https://evil.example/"}, claims))
	assert.NotContains(t, h, "kid")
	assert.Equal(t, "https://evil.example/", h["jku"])
	assert.Equal(t, "RS256", h["alg"])

	h = headerOf(p.SignWith(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, claims))
	assert.Equal(t, "none", h["alg"])
	assert.Equal(t, p.KID(), h["kid"])

	// The algorithm-confusion token: HS256 keyed with the public key PEM.
	block, _ := pem.Decode(p.PublicKeyPEM())
	require.NotNil(t, block)
	assert.Equal(t, "PUBLIC KEY", block.Type)
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	require.NoError(t, err)
	assert.True(t, pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(p.PublicKey()))
	confused := p.SignWith(jwt.SigningMethodHS256, p.PublicKeyPEM(), nil, claims)
	_, err = jwt.Parse(confused, func(*jwt.Token) (any, error) { return p.PublicKeyPEM(), nil })
	require.NoError(t, err, "a naive HMAC verifier accepts it")

	assert.Panics(t, func() { p.SignWith(jwt.SigningMethodES256, nil, nil, claims) }, "RSA key for ES256")
}

func TestIdPRotateRetire(t *testing.T) {
	t.Parallel()
	p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Algorithm: "ES256"})
	first := p.KID()
	old := p.Token("alice", time.Hour)

	second := p.Rotate()
	assert.Equal(t, second, p.KID())
	assert.NotEqual(t, first, second)
	assert.ElementsMatch(t, []string{first, second}, kids(t, p.JWKS()))
	_, err := parse(t, p.JWKS(), old)
	require.NoError(t, err, "the old key stays published")
	tok, err := parse(t, p.JWKS(), p.Token("alice", time.Hour))
	require.NoError(t, err)
	assert.Equal(t, second, tok.Header["kid"])

	p.Retire(first)
	assert.Equal(t, []string{second}, kids(t, p.JWKS()))
	_, err = parse(t, p.JWKS(), old)
	require.Error(t, err)
	_, body := get(t, t.Context(), p.JWKSURL())
	assert.Equal(t, []string{second}, kids(t, body), "served set follows")

	p.Retire("no-such-kid")
	p.Retire(second)
	assert.Empty(t, kids(t, p.JWKS()))
	assert.Equal(t, second, p.KID(), "still signs with a retired key")
}

func TestIdPFailureModes(t *testing.T) {
	t.Parallel()
	p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Algorithm: "EdDSA"})

	p.SetDown(true)
	status, _ := get(t, t.Context(), p.JWKSURL())
	assert.Equal(t, http.StatusServiceUnavailable, status)
	p.SetDown(false)
	status, _ = get(t, t.Context(), p.JWKSURL())
	assert.Equal(t, http.StatusOK, status)

	p.SetBody([]byte("garbage"))
	_, body := get(t, t.Context(), p.JWKSURL())
	assert.Equal(t, "garbage", string(body))
	p.SetBody(nil)
	_, body = get(t, t.Context(), p.JWKSURL())
	assert.JSONEq(t, string(p.JWKS()), string(body))

	p.SetDelay(time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.JWKSURL(), nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	require.Eventually(t, func() bool { return p.Fetches() == 5 }, 5*time.Second, time.Millisecond, "request in the handler")
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("a delayed response ignores its request's cancellation")
	}

	p.SetDelay(20 * time.Millisecond)
	start := time.Now()
	status, _ = get(t, t.Context(), p.JWKSURL())
	assert.Equal(t, http.StatusOK, status)
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)

	assert.Equal(t, 6, p.Fetches(), "every request counts, failed and aborted ones too")
}

func TestNewDevIdP(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	for _, bad := range []struct {
		url  string
		opts wsauthtest.IdPOptions
	}{
		{"", wsauthtest.IdPOptions{}},
		{"issuer.example", wsauthtest.IdPOptions{}},
		{"ftp://issuer.example", wsauthtest.IdPOptions{}},
		{"https://", wsauthtest.IdPOptions{}},
		{"https://issuer.example", wsauthtest.IdPOptions{Algorithm: "HS256"}},
		{"https://issuer.example", wsauthtest.IdPOptions{Algorithm: "RS512"}},
		{"https://issuer.example", wsauthtest.IdPOptions{Listener: l}},
	} {
		_, err := wsauthtest.NewDevIdP(bad.url, bad.opts)
		assert.Error(t, err, "url %q options %+v", bad.url, bad.opts)
	}

	p, err := wsauthtest.NewDevIdP("https://id.example.com/", wsauthtest.IdPOptions{})
	require.NoError(t, err)
	assert.Equal(t, "https://id.example.com/", p.Issuer())
	assert.Equal(t, "https://id.example.com/.well-known/jwks.json", p.JWKSURL())
	assert.Equal(t, wsauthtest.DefaultAudience, p.Audience())

	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	_, body := get(t, t.Context(), srv.URL+wsauthtest.JWKSPath)
	assert.Equal(t, []string{p.KID()}, kids(t, body))
	tok, err := parse(t, body, p.Token("carol", time.Hour))
	require.NoError(t, err)
	assert.Equal(t, "RS256", tok.Header["alg"])
	assert.Equal(t, 1, p.Fetches())
}

// TestDevIdPSharedKey: the nodes of a development cluster, each with its
// own URL, one issuer and one key, accept each other's tokens; a key of
// the wrong kind for the algorithm is refused.
func TestDevIdPSharedKey(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	opts := wsauthtest.IdPOptions{Issuer: "https://dev.example.invalid", Audience: "chat", Key: key}
	a, err := wsauthtest.NewDevIdP("http://127.0.0.1:8080", opts)
	require.NoError(t, err)
	b, err := wsauthtest.NewDevIdP("http://127.0.0.1:8081", opts)
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:8081/.well-known/jwks.json", b.JWKSURL(), "each node serves its own JWK Set")
	assert.Equal(t, "https://dev.example.invalid", b.Issuer())
	assert.Equal(t, a.KID(), b.KID(), "one key, one kid")
	assert.Equal(t, a.JWKS(), b.JWKS())

	tok, err := parse(t, b.JWKS(), a.Token("alice", time.Minute), jwt.WithIssuer(opts.Issuer), jwt.WithAudience("chat"))
	require.NoError(t, err, "a token of node a verifies against node b's JWK Set")
	assert.Equal(t, "ES256", tok.Header["alg"], "the algorithm of the key's kind")

	other, err := wsauthtest.NewDevIdP("http://127.0.0.1:8082", wsauthtest.IdPOptions{Algorithm: "ES256"})
	require.NoError(t, err)
	assert.NotEqual(t, a.KID(), other.KID(), "another key, another kid")

	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	for _, bad := range []wsauthtest.IdPOptions{
		{Key: key, Algorithm: "RS256"},
		{Key: edKey, Algorithm: "ES256"},
	} {
		_, err := wsauthtest.NewDevIdP("http://127.0.0.1:8080", bad)
		assert.Error(t, err, "%T for %s", bad.Key, bad.Algorithm)
	}
	ed, err := wsauthtest.NewDevIdP("http://127.0.0.1:8080", wsauthtest.IdPOptions{Key: edKey})
	require.NoError(t, err)
	tok, err = parse(t, ed.JWKS(), ed.Token("bob", time.Minute))
	require.NoError(t, err)
	assert.Equal(t, "EdDSA", tok.Header["alg"])
}

// TestIdPClockAndVerifier: one Clock in IdPOptions stamps the tokens and
// drives the Verifier the IdP makes, so a test sets its fake time in two
// places (the IdP and the server), not four; the IdP can listen where the
// test says.
func TestIdPClockAndVerifier(t *testing.T) {
	t.Parallel()
	clock := wsauthtest.NewClock(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Clock: clock, Listener: l})
	assert.Equal(t, "http://"+l.Addr().String(), p.Issuer(), "served on the given listener")
	v := p.Verifier(t)

	tok := p.Token("alice", time.Minute)
	id, err := v.Verify(t.Context(), tok)
	require.NoError(t, err)
	assert.True(t, clock.Now().Add(time.Minute).Equal(id.ExpiresAt), "exp from the IdP's clock: %v", id.ExpiresAt)
	assert.Equal(t, p.Issuer(), id.Issuer)
	assert.Equal(t, []string{p.Audience()}, id.Audience)

	clock.Advance(time.Minute)
	_, err = v.Verify(t.Context(), tok)
	assert.ErrorIs(t, err, jwt.ErrTokenExpired, "the Verifier reads the same clock")
}
