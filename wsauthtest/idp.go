package wsauthtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/reauth"
)

// JWKSPath is where an IdP's Handler serves its JWK Set.
const JWKSPath = "/.well-known/jwks.json"

// DefaultAudience is the "aud" of the tokens an IdP mints by default.
const DefaultAudience = "wsauth-test"

// IdPOptions configures an IdP.
type IdPOptions struct {
	// Issuer is the "iss" of minted tokens. Default: the test server's URL.
	Issuer string
	// Audience is the "aud" of tokens minted by Token. Default DefaultAudience.
	Audience string
	// Algorithm signs the tokens: "RS256" (default), "PS256", "ES256" or
	// "EdDSA". Rotate makes keys of the same kind.
	Algorithm string
	// Key is the first signing key: RSA for RS256 and PS256, ECDSA P-256
	// for ES256, Ed25519 for EdDSA (Algorithm defaults to RS256, ES256 or
	// EdDSA by its type). Its kid is derived from its public key, so IdPs
	// given the same Key publish the same kid and accept each other's
	// tokens: the nodes of a development cluster. Default: a new key.
	Key crypto.Signer
	// Clock stamps minted tokens ("iat", "exp") and drives the Verifier
	// the IdP makes: give the server and clients under test the same one.
	// Default: the system clock.
	Clock reauth.Clock
	// Listener is where the IdP's test server listens. Default: a new
	// loopback listener. NewIdP closes it when the test ends; NewDevIdP,
	// which serves nothing, refuses it.
	Listener net.Listener
}

// IdP is a test identity provider: it publishes a JWK Set over HTTP and
// mints tokens signed with its current key. Tests drive its failures
// (SetDown, SetDelay, SetBody), its keys (Rotate, Retire) and its clock
// (SetNow). All methods are safe for concurrent use.
type IdP struct {
	issuer, audience string
	url, jwksURL     string
	alg              string
	method           jwt.SigningMethod
	stop             chan struct{} // closed on cleanup: ends delayed responses
	fetches          atomic.Int64

	mu        sync.Mutex
	published []idpKey
	signing   idpKey
	jwks      []byte // published, as JSON
	now       func() time.Time
	down      bool
	delay     time.Duration
	body      []byte
}

type idpKey struct {
	kid  string
	priv crypto.Signer
	jwk  jwkset.JWK
}

// NewIdP starts an IdP on an httptest.Server, serving its JWK Set at
// JWKSPath, and closes the server when the test ends. It fails
// the test if opts are invalid.
func NewIdP(t testing.TB, opts IdPOptions) *IdP {
	t.Helper()
	p, err := newIdP(opts)
	if err != nil {
		t.Fatalf("wsauthtest: NewIdP: %v", err)
	}
	srv := httptest.NewUnstartedServer(p.Handler())
	if opts.Listener != nil {
		_ = srv.Listener.Close()
		srv.Listener = opts.Listener
	}
	srv.Start()
	t.Cleanup(func() {
		close(p.stop)
		srv.Close()
	})
	p.url = srv.URL
	p.jwksURL = srv.URL + JWKSPath
	if p.issuer == "" {
		p.issuer = srv.URL
	}
	return p
}

// NewDevIdP returns an IdP without a server, for a development server that
// mounts Handler itself. baseURL must be the http(s) URL at which the
// Handler is reachable: JWKSURL is baseURL (without a trailing slash) +
// JWKSPath. For a baseURL with a path, mount Handler under that prefix with
// http.StripPrefix. opts.Issuer defaults to baseURL; give the nodes of a
// development cluster one Issuer and one Key, and each its own baseURL.
// opts.Listener must be nil.
func NewDevIdP(baseURL string, opts IdPOptions) (*IdP, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("wsauthtest: NewDevIdP: %q is not an http(s) URL", baseURL)
	}
	if opts.Listener != nil {
		return nil, errors.New("wsauthtest: NewDevIdP: a development IdP serves nothing itself: Listener must be nil")
	}
	if opts.Issuer == "" {
		opts.Issuer = baseURL
	}
	p, err := newIdP(opts)
	if err != nil {
		return nil, fmt.Errorf("wsauthtest: NewDevIdP: %w", err)
	}
	p.url = strings.TrimSuffix(baseURL, "/")
	p.jwksURL = p.url + JWKSPath
	return p, nil
}

// newIdP makes an IdP of opts, without its URLs; an empty Issuer is left
// for the caller to set.
func newIdP(opts IdPOptions) (*IdP, error) {
	audience, alg := opts.Audience, opts.Algorithm
	if audience == "" {
		audience = DefaultAudience
	}
	if alg == "" {
		alg = defaultAlgorithm(opts.Key)
	}
	var method jwt.SigningMethod
	switch alg {
	case "RS256", "PS256", "ES256", "EdDSA":
		method = jwt.GetSigningMethod(alg)
	default:
		return nil, fmt.Errorf("unsupported algorithm %q (want RS256, PS256, ES256 or EdDSA)", alg)
	}
	p := &IdP{
		issuer:   opts.Issuer,
		audience: audience,
		alg:      alg,
		method:   method,
		stop:     make(chan struct{}),
		now:      time.Now,
	}
	if opts.Clock != nil {
		p.now = opts.Clock.Now
	}
	var k idpKey
	var err error
	if opts.Key != nil {
		k, err = p.keyOf(opts.Key)
	} else {
		k, err = p.newKey()
	}
	if err != nil {
		return nil, err
	}
	p.published = []idpKey{k}
	p.signing = k
	p.jwks = p.encode()
	return p, nil
}

// defaultAlgorithm is the algorithm of key's kind, RS256 without a key.
func defaultAlgorithm(key crypto.Signer) string {
	switch key.(type) {
	case *ecdsa.PrivateKey:
		return "ES256"
	case ed25519.PrivateKey:
		return "EdDSA"
	default:
		return "RS256"
	}
}

func (p *IdP) newKey() (idpKey, error) {
	var priv crypto.Signer
	var err error
	switch p.alg {
	case "RS256", "PS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return idpKey{}, fmt.Errorf("generating %s key: %w", p.alg, err)
	}
	return p.keyOf(priv)
}

// keyOf makes priv a signing key of the IdP's algorithm. Its kid is the
// algorithm and the start of the SHA-256 of its public key: the same key
// has the same kid in every IdP.
func (p *IdP) keyOf(priv crypto.Signer) (idpKey, error) {
	ok := false
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		ok = (p.alg == "RS256" || p.alg == "PS256") && k.N.BitLen() >= 2048
	case *ecdsa.PrivateKey:
		ok = p.alg == "ES256" && k.Curve == elliptic.P256()
	case ed25519.PrivateKey:
		ok = p.alg == "EdDSA"
	}
	if !ok {
		return idpKey{}, fmt.Errorf("a %T cannot sign %s (want RSA of 2048 bits or more for RS256 and PS256, ECDSA P-256 for ES256, Ed25519 for EdDSA)", priv, p.alg)
	}
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return idpKey{}, fmt.Errorf("encoding public key: %w", err)
	}
	sum := sha256.Sum256(der)
	kid := strings.ToLower(p.alg) + "-" + hex.EncodeToString(sum[:6])
	jwk, err := jwkset.NewJWKFromKey(priv.Public(), jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: jwkset.ALG(p.alg), USE: jwkset.UseSig},
	})
	if err != nil {
		return idpKey{}, fmt.Errorf("building JWK: %w", err)
	}
	return idpKey{kid: kid, priv: priv, jwk: jwk}, nil
}

// encode renders the published keys as a JWK Set. Callers hold p.mu (or
// own p exclusively).
func (p *IdP) encode() []byte {
	store := jwkset.NewMemoryStorage()
	for _, k := range p.published {
		_ = store.KeyWrite(context.Background(), k.jwk) // memory storage: cannot fail
	}
	raw, err := store.JSONPublic(context.Background())
	if err != nil {
		panic("wsauthtest: encoding JWK Set: " + err.Error()) // keys we built ourselves
	}
	return raw
}

// Issuer returns the "iss" of the tokens the IdP mints.
func (p *IdP) Issuer() string { return p.issuer }

// Audience returns the "aud" of the tokens Token mints.
func (p *IdP) Audience() string { return p.audience }

// JWKSURL returns the URL of the IdP's JWK Set.
func (p *IdP) JWKSURL() string { return p.jwksURL }

// KID returns the kid of the current signing key.
func (p *IdP) KID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signing.kid
}

// JWKS returns the JWK Set the IdP currently publishes (what SetBody may
// replace on the wire).
func (p *IdP) JWKS() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.jwks)
}

// PublicKey returns the public half of the current signing key.
func (p *IdP) PublicKey() crypto.PublicKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signing.priv.Public()
}

// PublicKeyPEM returns PublicKey as a PEM "PUBLIC KEY" block: what an
// attacker would use as the HMAC secret of an algorithm-confusion token.
func (p *IdP) PublicKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(p.PublicKey())
	if err != nil {
		panic("wsauthtest: encoding public key: " + err.Error()) // keys we built ourselves
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Token mints a token for sub valid for ttl (negative for an expired one):
// iss, aud and sub, iat and nbf set to now, exp to now+ttl, in whole
// seconds, now being the IdP's clock (see SetNow). It is signed with the
// current key and carries its kid.
func (p *IdP) Token(sub string, ttl time.Duration) string {
	p.mu.Lock()
	now := p.now()
	p.mu.Unlock()
	return p.Sign(jwt.MapClaims{
		"iss": p.issuer,
		"aud": p.audience,
		"sub": sub,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	})
}

// Sign signs claims, exactly as given, with the current key; the header
// holds alg, typ and the current kid.
func (p *IdP) Sign(claims jwt.MapClaims) string {
	return p.SignWith(nil, nil, nil, claims)
}

// SignWith signs claims with any method and key, for hostile tests: a nil
// method or key means the IdP's own. The header starts as alg (of method),
// typ and the current kid; header entries then override it, and a nil
// entry removes one (header{"kid": nil} for a token without kid). It panics
// if signing fails, e.g. when key does not suit method. For "none", pass
// jwt.SigningMethodNone and jwt.UnsafeAllowNoneSignatureType.
func (p *IdP) SignWith(method jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	p.mu.Lock()
	cur := p.signing
	p.mu.Unlock()
	if method == nil {
		method = p.method
	}
	if key == nil {
		key = cur.priv
	}
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = cur.kid
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		panic("wsauthtest: signing token: " + err.Error())
	}
	return s
}

// Rotate makes a new key, publishes it and signs with it from now on. The
// previous keys stay published until retired. It returns the new kid.
func (p *IdP) Rotate() (kid string) {
	k, err := p.newKey()
	if err != nil {
		panic("wsauthtest: " + err.Error()) // crypto/rand failing
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.published = append(p.published, k)
	p.signing = k
	p.jwks = p.encode()
	return k.kid
}

// Retire removes the key kid from the published JWK Set; an unknown kid is
// ignored. Retiring the current signing key keeps signing with it: its
// tokens then carry a kid the JWK Set lacks.
func (p *IdP) Retire(kid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.published = slices.DeleteFunc(p.published, func(k idpKey) bool { return k.kid == kid })
	p.jwks = p.encode()
}

// Verifier returns a jwks.Verifier that trusts the IdP (its issuer, JWK Set
// and audience) and reads time from the IdP's clock (IdPOptions.Clock or
// SetNow), for a wsauth server under test. It fails the test if it cannot
// be made, and is closed when the test ends.
func (p *IdP) Verifier(t testing.TB) *jwks.Verifier {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	v, err := jwks.New(ctx, jwks.Options{
		Issuers: []jwks.Issuer{{Issuer: p.issuer, JWKSURL: p.jwksURL, Audience: []string{p.audience}}},
		Now:     func() time.Time { return p.clock()() },
	})
	if err != nil {
		cancel()
		t.Fatalf("wsauthtest: IdP.Verifier: %v", err)
	}
	t.Cleanup(func() {
		v.Close()
		cancel()
	})
	return v
}

// clock returns the IdP's current time source.
func (p *IdP) clock() func() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.now
}

// SetNow sets the clock of minted tokens; nil restores time.Now.
func (p *IdP) SetNow(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.now = now
}

// SetDown makes the JWK Set endpoints answer 503 Service Unavailable while
// down is true.
func (p *IdP) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// SetDelay delays every JWK Set response by d (0 for none). A delayed
// request whose client gives up ends at once.
func (p *IdP) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// SetBody makes the JWK Set endpoints serve b, with status 200, instead of
// the JWK Set: garbage, a huge body, a set of someone else's keys. nil
// restores the JWK Set.
func (p *IdP) SetBody(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.body = slices.Clone(b)
}

// Fetches returns how many requests the JWK Set endpoints have received,
// failed and delayed ones included.
func (p *IdP) Fetches() int { return int(p.fetches.Load()) }

// Handler serves the JWK Set at JWKSPath.
func (p *IdP) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+JWKSPath, p.serveJWKS)
	return mux
}

func (p *IdP) serveJWKS(w http.ResponseWriter, r *http.Request) {
	p.fetches.Add(1)
	p.mu.Lock()
	delay := p.delay
	p.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-p.stop:
			http.Error(w, "identity provider stopped", http.StatusServiceUnavailable)
			return
		}
	}

	p.mu.Lock()
	down, body := p.down, p.body
	if body == nil {
		body = p.jwks
	}
	p.mu.Unlock()
	if down {
		http.Error(w, "identity provider down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body) // an error means the client went away
}
