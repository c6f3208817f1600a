package jwks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is one trusted identity provider.
type Issuer struct {
	// Issuer is the "iss" a token from this provider carries, matched
	// exactly. It may be empty only when it is the only Issuer in Options:
	// then any "iss" (or none) is accepted.
	Issuer string
	// JWKSURL is the http or https URL of the provider's JWK Set. Required.
	// Only this URL is ever fetched: the jku, x5u and jwk headers of tokens
	// are ignored.
	JWKSURL string
	// Audience, if not empty, lists the audiences this service answers to:
	// a token's "aud" must contain at least one of them. Empty means "aud"
	// is not checked, which is only safe when the provider issues tokens
	// for this service alone.
	Audience []string
}

// Options configures a Verifier. The zero value of each field is its
// documented default; New copies the Options and never modifies them.
type Options struct {
	// Issuers are the trusted identity providers. At least one is required.
	// Each gets its own key set, refresh goroutine and unknown-kid rate
	// limit: a key published by one never verifies a token of another.
	Issuers []Issuer

	// Algorithms is the allowlist of JWS "alg" values. Default:
	// RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA.
	// "none" and the HMAC algorithms (HS256, HS384, HS512) are refused by
	// New: a public JWK Set cannot hold a shared secret.
	Algorithms []string

	// Leeway is the clock skew tolerated on "exp" and "nbf". Default 0.
	Leeway time.Duration

	// Now is the clock for token times ("exp", "nbf") and for the
	// unknown-kid rate limit. Default time.Now.
	Now func() time.Time

	// RefreshInterval is how often each JWK Set is fetched again in the
	// background. Default 1 hour.
	RefreshInterval time.Duration

	// UnknownKIDRate is the minimum interval, per issuer, between the
	// refetches that a token with an unknown kid may trigger. A token with
	// an unknown kid arriving while a refetch is in flight waits for that
	// refetch; one arriving sooner, with none in flight, fails at once,
	// without waiting and without network. Default 5 minutes. While an
	// issuer holds no key at all (its provider was down when New ran, and
	// since), its tokens fail with ErrKeysUnavailable and refetch with a
	// backoff of 1 to 5 seconds instead, so users get in within seconds of
	// the provider's return.
	UnknownKIDRate time.Duration

	// HTTPClient fetches the JWK Sets. Default: a client of its own with a
	// 10 second timeout. The client's Timeout, when set, also bounds every
	// fetch; otherwise fetches are bounded by 10 seconds.
	//
	// New uses a copy of it, whose redirects stay within the origin
	// (scheme, host and port) of the JWK Set URL: a redirect to another
	// host or port, or from https to http, fails that fetch, and the keys
	// already held are kept. A redirect within the origin is followed,
	// after the client's own CheckRedirect, if set, allows it.
	HTTPClient *http.Client

	// MaxJWKSBytes caps the size of a JWK Set response, in bytes. A larger
	// response fails that fetch and the keys already held are kept, as they
	// are when a response is not a JWK Set with at least one key ("{}",
	// "null", {"keys":[]}), or holds no usable key: none that is an RSA,
	// EC (P-256, P-384, P-521) or Ed25519 key whose "use", if any, is "sig"
	// and whose "key_ops", if any, include "verify". Unusable keys next to
	// usable ones are skipped. Default 1 MiB.
	MaxJWKSBytes int64

	// Logger receives the failed fetches of JWK Sets (at New, by the
	// refresh goroutine or for an unknown kid), with the keys "issuer",
	// "url" and "err". Tokens are never logged. Default slog.Default().
	Logger *slog.Logger

	// TokenCacheSize, if positive, is the number of verified tokens Verify
	// remembers, so that a token presented again (a client reconnecting)
	// is accepted without a second signature check. Default 0: no cache.
	//
	// An entry is keyed by the SHA-256 of the token's bytes (the token
	// itself is never stored) and holds a private copy of its Identity;
	// every hit returns a fresh copy. Only tokens Verify accepted are
	// stored. A hit holds only while Now is within the token's "nbf" and
	// "exp", with Leeway, exactly as for a fresh verification, and while
	// the key that verified the token is still in its issuer's JWK Set,
	// as last fetched, under the same kid (a key retired, or replaced
	// under that kid, ends the hits). When a hit does not hold, the token
	// is verified afresh and Verify returns that verification's result.
	// Close empties the cache. A full cache makes room CLOCK-wise: going
	// round from where it last stopped, it evicts the first token that
	// has expired or was not presented again since it last came round.
	//
	// A hit costs 1 to 2 µs (hashing the token and copying the Identity)
	// where a verification costs about 40 µs (RS256) or 70 µs (ES256).
	// An entry takes about 1 KiB for a token with only the registered
	// claims, and roughly 3 times the token's length in general. The
	// cache is off by default because it only pays when the same tokens
	// come back within their lifetime, its right size is the number of
	// clients that may reconnect at once, which only the application
	// knows, and it keeps claims (often personal data) in memory after
	// their sessions end, until evicted or expired. A size of about the
	// number of concurrent sessions suits a reconnect storm.
	TokenCacheSize int
}

// Defaults of Options.
const (
	defaultRefreshInterval = time.Hour
	defaultUnknownKIDRate  = 5 * time.Minute
	defaultHTTPTimeout     = 10 * time.Second
	defaultMaxJWKSBytes    = 1 << 20
)

// defaultAlgorithms is the default of Options.Algorithms, and every algorithm
// it may hold.
var defaultAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// config is Options after defaults and validation: a private copy.
type config struct {
	issuers         []Issuer
	algorithms      []string
	leeway          time.Duration
	now             func() time.Time
	refreshInterval time.Duration
	unknownKIDRate  time.Duration
	client          *http.Client
	ownTransport    *http.Transport // non-nil when client is ours: Close drops its idle connections
	fetchTimeout    time.Duration
	logger          *slog.Logger
	tokenCacheSize  int
}

func newConfig(opts Options) (*config, error) {
	if len(opts.Issuers) == 0 {
		return nil, errors.New("jwks: Options.Issuers is empty")
	}
	c := &config{
		issuers:         make([]Issuer, len(opts.Issuers)),
		algorithms:      slices.Clone(opts.Algorithms),
		leeway:          opts.Leeway,
		now:             opts.Now,
		refreshInterval: opts.RefreshInterval,
		unknownKIDRate:  opts.UnknownKIDRate,
		logger:          opts.Logger,
	}
	seen := make(map[string]bool, len(opts.Issuers))
	for i, iss := range opts.Issuers {
		if iss.Issuer == "" && len(opts.Issuers) > 1 {
			return nil, fmt.Errorf("jwks: Issuers[%d]: empty Issuer is only allowed when it is the only issuer", i)
		}
		if seen[iss.Issuer] {
			return nil, fmt.Errorf("jwks: Issuers[%d]: issuer %q listed twice", i, iss.Issuer)
		}
		seen[iss.Issuer] = true
		if err := checkJWKSURL(iss.JWKSURL); err != nil {
			return nil, fmt.Errorf("jwks: Issuers[%d] (%q): %w", i, iss.Issuer, err)
		}
		c.issuers[i] = Issuer{Issuer: iss.Issuer, JWKSURL: iss.JWKSURL, Audience: slices.Clone(iss.Audience)}
	}

	if len(c.algorithms) == 0 {
		c.algorithms = slices.Clone(defaultAlgorithms)
	}
	for _, alg := range c.algorithms {
		if err := checkAlgorithm(alg); err != nil {
			return nil, err
		}
	}

	if c.leeway < 0 {
		return nil, fmt.Errorf("jwks: negative Leeway %v", c.leeway)
	}
	if c.now == nil {
		c.now = time.Now
	}
	switch {
	case c.refreshInterval < 0:
		return nil, fmt.Errorf("jwks: negative RefreshInterval %v", c.refreshInterval)
	case c.refreshInterval == 0:
		c.refreshInterval = defaultRefreshInterval
	}
	switch {
	case c.unknownKIDRate < 0:
		return nil, fmt.Errorf("jwks: negative UnknownKIDRate %v", c.unknownKIDRate)
	case c.unknownKIDRate == 0:
		c.unknownKIDRate = defaultUnknownKIDRate
	}
	maxBytes := opts.MaxJWKSBytes
	switch {
	case maxBytes < 0:
		return nil, fmt.Errorf("jwks: negative MaxJWKSBytes %d", maxBytes)
	case maxBytes == 0:
		maxBytes = defaultMaxJWKSBytes
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if opts.TokenCacheSize < 0 {
		return nil, fmt.Errorf("jwks: negative TokenCacheSize %d", opts.TokenCacheSize)
	}
	c.tokenCacheSize = opts.TokenCacheSize
	c.client, c.ownTransport = capClient(opts.HTTPClient, maxBytes)
	c.fetchTimeout = defaultHTTPTimeout
	if c.client.Timeout > 0 {
		c.fetchTimeout = c.client.Timeout
	}
	return c, nil
}

func checkJWKSURL(raw string) error {
	if raw == "" {
		return errors.New("JWKSURL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("JWKSURL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("JWKSURL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("JWKSURL %q: no host", raw)
	}
	return nil
}

func checkAlgorithm(alg string) error {
	switch {
	case alg == "none" || strings.HasPrefix(alg, "HS"):
		return fmt.Errorf("jwks: algorithm %q refused: a JWK Set verifier accepts asymmetric algorithms only", alg)
	case !slices.Contains(defaultAlgorithms, alg):
		// jwt knows no other asymmetric algorithm, and a name it does not
		// know would reject every token: say so now.
		return fmt.Errorf("jwks: unknown algorithm %q", alg)
	case jwt.GetSigningMethod(alg) == nil:
		return fmt.Errorf("jwks: algorithm %q is not registered with jwt", alg)
	}
	return nil
}

// capClient returns a copy of client (or of a default one) whose successful
// responses are read in full, at most maxBytes, and checked to be a JWK Set
// with at least one key before jwkset sees them, and which follows
// redirects within the origin of the JWK Set URL only (see
// sameOriginRedirects).
func capClient(client *http.Client, maxBytes int64) (*http.Client, *http.Transport) {
	var own *http.Transport
	var c http.Client
	if client != nil {
		c = *client
	} else {
		own = http.DefaultTransport.(*http.Transport).Clone()
		c = http.Client{Timeout: defaultHTTPTimeout, Transport: own}
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = &capTransport{base: base, max: maxBytes}
	c.CheckRedirect = sameOriginRedirects(c.CheckRedirect)
	return &c, own
}

// maxRedirects is http.Client's own limit, which a CheckRedirect of ours
// must apply when it replaces the default policy.
const maxRedirects = 10

// errRedirect fails a JWK Set fetch that a redirect would take to another
// origin.
var errRedirect = errors.New("jwks: JWK Set redirect to another origin refused")

// sameOriginRedirects returns a CheckRedirect that refuses any redirect
// out of the origin (scheme, host and port) of the chain's first request,
// the JWK Set URL: the keys of an issuer come from the URL configured for
// it, not from wherever a redirect (an open redirect at the provider, a
// compromised proxy or DNS name on the way) points. As the scheme is part
// of the origin, an https URL is never downgraded to http. A redirect
// within the origin is then passed to next, the caller's own CheckRedirect,
// if any, or else to http.Client's default limit of 10 redirects.
func sameOriginRedirects(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) > 0 {
			if from, to := origin(via[0].URL), origin(req.URL); from != to {
				return fmt.Errorf("%w: from %s to %s", errRedirect, from, to)
			}
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("jwks: JWK Set fetch stopped after %d redirects", maxRedirects)
		}
		return nil
	}
}

// origin returns u's scheme, host and port, in lower case and with the
// scheme's default port made explicit, as "https://[::1]:443".
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

var (
	// errBodyTooLarge fails a JWK Set fetch whose body exceeds MaxJWKSBytes.
	errBodyTooLarge = errors.New("jwks: JWK Set response larger than MaxJWKSBytes")
	// errNoKeys fails a fetch whose body is not a JWK Set with keys. jwkset
	// would decode "{}", "null" or {"keys":[]} as an empty set and replace
	// every cached key with it: one bad answer from the IdP or a proxy would
	// then refuse every login until the next successful refresh.
	errNoKeys = errors.New("jwks: JWK Set response has no keys")
)

type capTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *capTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return resp, nil // jwkset fails the fetch on the status itself
	}
	defer resp.Body.Close()
	if resp.ContentLength > t.max {
		return nil, errBodyTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, t.max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > t.max {
		return nil, errBodyTooLarge
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if json.Unmarshal(body, &set) != nil || len(set.Keys) == 0 {
		return nil, errNoKeys
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// wrapped transport.
func (t *capTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
