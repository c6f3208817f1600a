package wsauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/protocol"
)

// counter is an HTTP server that counts the requests it gets and serves
// body to all of them: an attacker's JWK Set, to make a followed jku or x5u
// header succeed if the verifier ever fetched one.
func counter(t *testing.T, body []byte) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// attackerKey is an ES256 key the identity providers never published, with
// its public JWK.
type attackerKey struct {
	priv *ecdsa.PrivateKey
	kid  string
	jwk  map[string]any // public JWK, as a header value
	jwks []byte         // a JWK Set of it
}

func newAttackerKey(t *testing.T) attackerKey {
	priv := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	a := attackerKey{priv: priv, kid: "attacker-1"}
	jwk := must(jwkset.NewJWKFromKey(priv.Public(), jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: a.kid, ALG: jwkset.AlgES256, USE: jwkset.UseSig},
	}))
	raw := must(json.Marshal(jwk.Marshal()))
	require.NoError(t, json.Unmarshal(raw, &a.jwk))
	a.jwks = must(json.Marshal(map[string]any{"keys": []any{a.jwk}}))
	return a
}

// tamper replaces the payload of tok by payload, keeping its header and
// signature.
func tamper(tok string, payload map[string]any) string {
	parts := strings.Split(tok, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString(must(json.Marshal(payload)))
	return strings.Join(parts, ".")
}

// authFrameOfSize returns an auth frame carrying tok, padded with an
// ignored member to exactly size bytes.
func authFrameOfSize(t *testing.T, tok string, size int) string {
	frame := fmt.Sprintf(`{"type":"auth","token":%q,"pad":""}`, tok)
	pad := size - len(frame)
	require.GreaterOrEqual(t, pad, 0, "token too long for a %d-byte frame", size)
	frame = fmt.Sprintf(`{"type":"auth","token":%q,"pad":"%s"}`, tok, strings.Repeat("x", pad))
	require.Len(t, frame, size)
	return frame
}

// TestHostileTokens sends every kind of bad token as the first auth frame.
// Each one closes the socket with 4401 and the fixed reason jwks.Reason gives
// for the verifier's error, before any application code runs, and no token
// appears in a reason or a log line. Two issuers are trusted, each with its
// own key set.
func TestHostileTokens(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{issuers: 2})
	idp, other := h.idps[0], h.idps[1]
	now := h.clock.Now()
	valid := func(edit func(c map[string]any)) jwt.MapClaims {
		c := h.claimsFor(idp, "mallory")
		if edit != nil {
			edit(c)
		}
		return c
	}
	attacker := newAttackerKey(t)
	fetchSrv, fetched := counter(t, attacker.jwks)
	es256 := jwt.SigningMethodES256
	otherJWK := func() map[string]any {
		var set struct{ Keys []map[string]any }
		require.NoError(t, json.Unmarshal(other.JWKS(), &set))
		return set.Keys[0]
	}()

	const maxFrame = wsauth.DefaultMaxPreAuthFrame
	// A token that fills a frame of the pre-auth cap: a padding claim, then
	// a signature that does not match.
	huge := tamper(idp.Sign(valid(func(c map[string]any) { c["pad"] = strings.Repeat("p", 5600) })),
		valid(func(c map[string]any) { c["pad"] = strings.Repeat("q", 5600) }))

	cases := []struct {
		name   string
		token  string
		frame  string // the whole frame, when it is not a plain auth frame
		code   protocol.CloseCode
		reason string
	}{
		{name: "alg none", reason: "algorithm not allowed",
			token: idp.SignWith(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, valid(nil))},
		{name: "alg none without kid", reason: "missing kid",
			token: idp.SignWith(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, map[string]any{"kid": nil}, valid(nil))},
		{name: "HS256 keyed with the IdP public key PEM", reason: "algorithm not allowed",
			token: idp.SignWith(jwt.SigningMethodHS256, idp.PublicKeyPEM(), nil, valid(nil))},
		{name: "PS256 with the kid of an RS256 key", reason: "algorithm not allowed",
			token: idp.SignWith(jwt.SigningMethodPS256, nil, nil, valid(nil))},
		{name: "no kid", reason: "missing kid",
			token: idp.SignWith(nil, nil, map[string]any{"kid": nil}, valid(nil))},
		{name: "empty kid", reason: "missing kid",
			token: idp.SignWith(nil, nil, map[string]any{"kid": ""}, valid(nil))},
		{name: "kid not a string", reason: "missing kid",
			token: idp.SignWith(nil, nil, map[string]any{"kid": 7}, valid(nil))},
		{name: "unknown kid", reason: "unknown key",
			token: idp.SignWith(nil, nil, map[string]any{"kid": "no-such-key"}, valid(nil))},
		{name: "kid of another trusted issuer, signed by it", reason: "unknown key",
			token: other.Sign(valid(nil))},
		{name: "iss of the other issuer, kid and key of the first", reason: "unknown key",
			token: idp.Sign(valid(func(c map[string]any) { c["iss"] = other.Issuer() }))},
		{name: "expired", reason: "token expired",
			token: idp.Sign(valid(func(c map[string]any) { c["exp"] = now.Add(-time.Second).Unix() }))},
		{name: "exp equal to now (leeway 0)", reason: "token expired",
			token: idp.Sign(valid(func(c map[string]any) { c["exp"] = now.Unix() }))},
		{name: "nbf in the future", reason: "token not valid yet",
			token: idp.Sign(valid(func(c map[string]any) { c["nbf"] = now.Add(time.Second).Unix() }))},
		{name: "no exp", reason: "missing exp",
			token: idp.Sign(valid(func(c map[string]any) { delete(c, "exp") }))},
		{name: "exp not a number", reason: "malformed token",
			token: idp.Sign(valid(func(c map[string]any) { c["exp"] = "tomorrow" }))},
		{name: "wrong iss", reason: "unknown issuer",
			token: idp.Sign(valid(func(c map[string]any) { c["iss"] = "https://evil.example/" }))},
		{name: "no iss", reason: "unknown issuer",
			token: idp.Sign(valid(func(c map[string]any) { delete(c, "iss") }))},
		{name: "wrong aud", reason: "wrong audience",
			token: idp.Sign(valid(func(c map[string]any) { c["aud"] = "another-service" }))},
		{name: "no aud", reason: "wrong audience",
			token: idp.Sign(valid(func(c map[string]any) { delete(c, "aud") }))},
		{name: "tampered payload", reason: "invalid signature",
			token: tamper(idp.Sign(valid(nil)), valid(func(c map[string]any) { c["sub"] = "admin" }))},
		{name: "tampered signature", reason: "invalid signature",
			token: func() string {
				tok := []byte(idp.Sign(valid(nil)))
				if i := len(tok) - 5; tok[i] == 'A' {
					tok[i] = 'B'
				} else {
					tok[i] = 'A'
				}
				return string(tok)
			}()},
		{name: "truncated to header.payload", reason: "malformed token",
			token: func() string {
				tok := idp.Sign(valid(nil))
				return tok[:strings.LastIndex(tok, ".")]
			}()},
		{name: "truncated signature", reason: "invalid signature",
			token: func() string {
				tok := idp.Sign(valid(nil))
				return tok[:len(tok)-4]
			}()},
		{name: "truncated mid-payload", reason: "malformed token",
			token: func() string {
				tok := idp.Sign(valid(nil))
				return tok[:strings.Index(tok, ".")+10]
			}()},
		{name: "crit header", reason: "malformed token",
			token: idp.SignWith(nil, nil, map[string]any{"crit": []string{"exp"}}, valid(nil))},
		{name: "jku to an attacker JWK Set", reason: "unknown key",
			token: idp.SignWith(es256, attacker.priv, map[string]any{"kid": attacker.kid, "jku": fetchSrv.URL + "/jwks.json"}, valid(nil))},
		{name: "x5u to an attacker URL", reason: "unknown key",
			token: idp.SignWith(es256, attacker.priv, map[string]any{"kid": attacker.kid, "x5u": fetchSrv.URL + "/cert.pem"}, valid(nil))},
		{name: "embedded attacker jwk", reason: "unknown key",
			token: idp.SignWith(es256, attacker.priv, map[string]any{"kid": attacker.kid, "jwk": attacker.jwk}, valid(nil))},
		{name: "embedded jwk with the IdP kid", reason: "invalid signature",
			token: other.SignWith(nil, nil, map[string]any{"kid": idp.KID(), "jwk": otherJWK, "jku": fetchSrv.URL}, valid(nil))},
		{name: "jku, x5u and jwk together", reason: "unknown key",
			token: idp.SignWith(es256, attacker.priv, map[string]any{"kid": attacker.kid, "jwk": attacker.jwk,
				"jku": fetchSrv.URL + "/a", "x5u": fetchSrv.URL + "/b"}, valid(nil))},
		{name: "huge token, frame at the pre-auth cap", reason: "invalid signature", token: huge,
			frame: authFrameOfSize(t, huge, maxFrame)},
		{name: "huge token, frame one byte over the cap", code: protocol.CloseTooLarge, reason: "frame too large", token: huge,
			frame: authFrameOfSize(t, huge, maxFrame+1)},
		{name: "garbage", reason: "malformed token", token: "not-a-jwt"},
	}
	var minted []string
	for _, tc := range cases {
		minted = append(minted, tc.token)
		t.Run(tc.name, func(t *testing.T) {
			if tc.code == 0 {
				tc.code = protocol.CloseUnauthorized
			}
			frame := tc.frame
			if frame == "" {
				frame = string(must(json.Marshal(map[string]string{"type": "auth", "token": tc.token})))
			}
			c := h.open(t, nil)
			require.NoError(t, c.WriteText(frame))
			reason := h.refused(t, c, tc.code, tc.reason)
			if tc.code == protocol.CloseUnauthorized {
				// The reason is exactly the close the verifier's error
				// for this token carries.
				_, err := h.verifier.Verify(context.Background(), tc.token)
				require.Error(t, err)
				var ce *protocol.CloseError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, ce.Reason, reason)
				noSecret(t, []string{tc.token}, err.Error())
			}
			noSecret(t, []string{tc.token}, reason, h.logs.String())
		})
	}
	h.noApplication(t)
	assert.Zero(t, fetched.Load(), "the verifier fetched a URL named by a token header")
	noSecret(t, minted, h.logs.String())

	// Leeway boundaries, on the fake clock shared by the IdP, the verifier
	// and the server: exp one second after now is still valid; nbf == now
	// is valid.
	t.Run("exp one second after now is accepted", func(t *testing.T) {
		h.loginT(t, idp.Sign(valid(func(c map[string]any) { c["exp"] = now.Add(time.Second).Unix() })))
	})
	t.Run("nbf equal to now is accepted", func(t *testing.T) {
		h.loginT(t, idp.Sign(valid(func(c map[string]any) { c["nbf"] = now.Unix() })))
	})
	t.Run("a token of the second issuer is accepted", func(t *testing.T) {
		_, ok := h.loginT(t, other.Token("oscar", time.Hour))
		assert.Equal(t, "oscar", ok["sub"])
	})
	// Past the pre-auth cap the verifier's own 64 KiB bound applies: a huge
	// token sent as a reauth is refused as malformed before it is decoded,
	// with an error frame (a refused reauth leaves the session as it was).
	t.Run("token over 64 KiB as a reauth", func(t *testing.T) {
		c, _ := h.loginT(t, idp.Token("mallory", time.Hour))
		h.clock.Advance(time.Second) // past the reauth budget
		big := "e30." + strings.Repeat("A", 70<<10) + ".sig"
		require.NoError(t, c.Auth(big))
		ef, err := c.ReadJSON()
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"type": "error", "code": float64(4401), "message": "malformed token"}, ef)
		noSecret(t, []string{big}, h.logs.String())
	})
}
