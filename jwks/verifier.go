package jwks

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/wsauth/wsauth/session"
)

// maxTokenBytes bounds the tokens Verify parses. Real JWTs, even with many
// group claims, stay well below it; anything longer is refused as malformed
// before it is decoded.
const maxTokenBytes = 64 << 10

// Verifier verifies JWTs against the JWK Sets of trusted issuers. It is safe
// for concurrent use.
type Verifier struct {
	cfg     *config
	ctx     context.Context // ends on Close or when New's ctx ends
	cancel  context.CancelFunc
	issuers []*issuer
	byIss   map[string]*issuer
	parser  *jwt.Parser // claims are validated by the issuer's validator
	cache   *tokenCache // nil without Options.TokenCacheSize

	// mu guards issuer.refetching and closed, so that no refetch starts
	// (refetches.Add) once Close has begun to wait for them.
	mu        sync.Mutex
	closed    bool
	refetches sync.WaitGroup // unknown-kid refetches in flight

	// signatureChecks counts the signatures Verify checked: cache hits do
	// not add to it. For tests.
	signatureChecks atomic.Int64
}

// issuer is one trusted provider with its own key set and refetch limit.
type issuer struct {
	Issuer
	keys      *keyStore      // the set, indexed by kid
	storage   jwkset.Storage // reads keys; a kid it lacks refetches the set
	unknown   *rate.Limiter  // unknown-kid refetches, driven by cfg.now
	validator *jwt.Validator

	// refetching is closed when the unknown-kid refetch in flight ends;
	// nil when there is none. Guarded by Verifier.mu.
	refetching chan struct{}
	// While the issuer holds no key, refetches are not rate limited by
	// unknown but retried with backoff: at most one per keylessBackoff
	// after retryAt. Guarded by Verifier.mu.
	keylessBackoff time.Duration
	retryAt        time.Time
}

// Backoff of the refetches of an issuer that holds no key (its provider
// was unreachable when New ran, or has served no usable key since): users
// are in within seconds of the provider's return, and a provider that is
// down gets at most one request per maxKeylessBackoff.
const (
	minKeylessBackoff = time.Second
	maxKeylessBackoff = 5 * time.Second
)

// New returns a Verifier for opts.Issuers. It fetches every JWK Set once, in
// parallel, each bounded by the fetch timeout (see Options.HTTPClient); a
// set that cannot be fetched does not fail New: the failure is logged and
// that issuer's tokens fail with ErrKeysUnavailable until a later fetch
// works.
//
// ctx owns the Verifier: when it ends, the refresh goroutines stop and
// Verify fails with ErrKeysUnavailable, as after Close. Pass a long-lived
// context, not a request's. New fails if ctx ends before it returns, and if
// opts are invalid.
func New(ctx context.Context, opts Options) (*Verifier, error) {
	if ctx == nil {
		return nil, errors.New("jwks: New: nil context")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("jwks: New: %w", err)
	}
	v := &Verifier{
		cfg:     cfg,
		issuers: make([]*issuer, len(cfg.issuers)),
		byIss:   make(map[string]*issuer, len(cfg.issuers)),
		// No WithValidMethods: keyFor refuses algorithms outside the
		// allowlist, so that the error can say so.
		parser: jwt.NewParser(jwt.WithoutClaimsValidation()),
	}
	if cfg.tokenCacheSize > 0 {
		v.cache = newTokenCache(cfg.tokenCacheSize)
	}
	v.ctx, v.cancel = context.WithCancel(ctx)

	errs := make([]error, len(cfg.issuers))
	var wg sync.WaitGroup
	for i, iss := range cfg.issuers {
		wg.Go(func() { v.issuers[i], errs[i] = v.newIssuer(iss) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		v.Close()
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		v.Close()
		return nil, fmt.Errorf("jwks: New: %w", err)
	}
	for _, is := range v.issuers {
		v.byIss[is.Issuer.Issuer] = is
	}
	return v, nil
}

func (v *Verifier) newIssuer(iss Issuer) (*issuer, error) {
	cfg := v.cfg
	// What keyfunc.NewDefaultOverrideCtx builds, with our keyStore as the
	// storage of the fetched set. Verify reads keys from the keyStore's
	// index, and refetches through the HTTP client storage (see
	// startRefetch), so keyfunc itself is not needed.
	keys := newKeyStore()
	fetched, err := jwkset.NewStorageFromHTTP(iss.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:      cfg.client,
		Ctx:         v.ctx,
		HTTPTimeout: cfg.fetchTimeout,
		// New must not fail while a provider is down.
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       v.refreshErrorHandler(iss.Issuer, keys)(iss.JWKSURL),
		RefreshInterval:           cfg.refreshInterval,
		Storage:                   keys,
	})
	if err != nil {
		return nil, fmt.Errorf("jwks: issuer %q: %w", iss.Issuer, err)
	}
	storage, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: map[string]jwkset.Storage{iss.JWKSURL: fetched},
		// jwkset's own limiter would make a refetch wait for a token (up
		// to RateLimitWaitMax) and runs on the real clock. We gate
		// unknown-kid refetches in Verify with issuer.unknown instead,
		// failing at once, and let every refetch that gate allows through.
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
		// Besides the limiter wait, RateLimitWaitMax bounds the whole
		// unknown-kid refetch (jwkset derives the fetch's context from it),
		// so it must be the fetch timeout, not something small.
		RateLimitWaitMax: cfg.fetchTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("jwks: issuer %q: %w", iss.Issuer, err)
	}
	opts := []jwt.ParserOption{
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.leeway),
		jwt.WithTimeFunc(cfg.now),
	}
	if iss.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(iss.Issuer))
	}
	if len(iss.Audience) > 0 {
		// In jwt v5.3.1 WithAudience accepts a token that carries any one
		// of the values (WithAllAudiences would require all of them).
		opts = append(opts, jwt.WithAudience(iss.Audience...))
	}
	return &issuer{
		Issuer:    iss,
		keys:      keys,
		storage:   storage,
		unknown:   rate.NewLimiter(rate.Every(cfg.unknownKIDRate), 1),
		validator: jwt.NewValidator(opts...),
	}, nil
}

// refreshErrorHandler logs failed fetches of one issuer's JWK Set, whether
// from New, the refresh goroutine or an unknown-kid refetch, a set without
// a usable key (errNoUsableKeys, from keyStore.KeyReplaceAll) included,
// and keeps the error for Status and Health.
func (v *Verifier) refreshErrorHandler(iss string, keys *keyStore) func(string) func(context.Context, error) {
	return func(url string) func(context.Context, error) {
		return func(ctx context.Context, err error) {
			// Cancellation is not the provider's fault: the Verifier is
			// closing, or New's ctx ended. Every fetch runs on v.ctx, none
			// on a Verify caller's.
			if v.ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return
			}
			keys.fetches.failed(err)
			v.cfg.logger.LogAttrs(context.WithoutCancel(ctx), slog.LevelError, "jwks: fetching JWK Set failed",
				slog.String("issuer", iss), slog.String("url", url), slog.Any("err", err))
		}
	}
}

// Close stops the refresh goroutines, aborting fetches in flight, waits
// for the unknown-kid refetches in flight to end, empties the token cache
// and releases idle connections of the default HTTP client. Verify fails
// with ErrKeysUnavailable afterwards, and so do the Verify calls that were
// waiting for a refetch. Close is idempotent.
func (v *Verifier) Close() {
	v.cancel()
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	// Aborted by v.cancel, each ends as soon as the HTTP client returns.
	v.refetches.Wait()
	if v.cache != nil {
		v.cache.clear()
	}
	if t := v.cfg.ownTransport; t != nil {
		t.CloseIdleConnections()
	}
}

// Verify checks token and returns the identity it carries. The checks that
// need no key come first, so a malformed token, a missing kid, a refused
// algorithm, a missing "exp" or "sub" (ErrMissingSubject: absent or
// empty), a date claim out of range or an untrusted issuer never cause
// network traffic. "exp", "nbf" and "iat", when present, must be numbers
// from 0 to 253402300799 (9999-12-31T23:59:59Z); any other value is
// refused as jwt.ErrTokenMalformed. Then the token is verified with the
// keys of the issuer its "iss" names, and only those: its signature, "exp"
// (required; "exp": 0 names 1970 and is refused as expired), "nbf", the
// issuer and the audience. "iat" is not otherwise checked (see the package
// documentation for the time semantics). The jku, x5u and jwk headers are
// ignored.
//
// A kid the issuer's key set lacks triggers a refetch of that set, at most
// once per Options.UnknownKIDRate; a token with an unknown kid that arrives
// while a refetch is in flight waits for that one. The refetch belongs to
// the Verifier, bounded by the fetch timeout (see Options.HTTPClient), not
// to the caller that triggered it: ctx bounds only how long Verify waits
// for it, and if ctx ends first the error wraps ErrUnknownKID and
// ctx.Err() while the refetch goes on, for the tokens that come next. A
// token longer than 64 KiB is refused as malformed.
//
// With Options.TokenCacheSize, a token that Verify accepted before is
// accepted again without a signature check while "exp", "nbf" and its key
// still allow it; otherwise it is verified afresh (see TokenCacheSize).
//
// Errors wrap the package's sentinels and jwt's (see ErrMissingKID) and
// never contain the token or any part of it. They wrap the
// *protocol.CloseError the client is told (see ErrMissingKID).
func (v *Verifier) Verify(ctx context.Context, token string) (session.Identity, error) {
	if len(token) > maxTokenBytes {
		return session.Identity{}, fail(nil, jwt.ErrTokenMalformed)
	}
	if v.cache == nil {
		id, _, err := v.verify(ctx, token)
		return id, err
	}
	sum := tokenKey(sha256.Sum256([]byte(token)))
	if e := v.cache.get(sum); e != nil {
		if id, ok := v.hit(e); ok {
			return id, nil
		}
		// Verified afresh, the token gets the error it deserves now.
		v.cache.remove(sum, e)
	}
	id, vs, err := v.verify(ctx, token)
	if err == nil && vs.key != nil {
		v.cache.put(v.entry(sum, id, vs), v.cfg.now())
	}
	return id, err
}

// verification is what the keyfunc of one verify (keyFor) learnt about the
// token.
type verification struct {
	parsed bool  // the keyfunc ran: the token parsed
	failed error // the keyfunc refused the token: verify's error, as is
	is     *issuer
	kid    string
	key    *publicKey // the key the keyfunc returned, when the index has it
}

// verify parses token once: jwt decodes it and calls the keyfunc, which
// makes every check that needs no key (in the order the errors document)
// before it picks the key, then jwt checks the signature. The claims are
// validated last, by the issuer's validator.
func (v *Verifier) verify(ctx context.Context, token string) (session.Identity, *verification, error) {
	vs := &verification{}
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		return v.keyFor(ctx, t, vs)
	})
	switch {
	case vs.failed != nil:
		return session.Identity{}, nil, vs.failed
	case err == nil:
	case !vs.parsed:
		if errors.Is(err, jwt.ErrTokenUnverifiable) {
			// The only such failure before the keyfunc: no alg, or one
			// jwt does not know (not even "none" then).
			return session.Identity{}, nil, fail(err, ErrAlgorithm)
		}
		return session.Identity{}, nil, fail(err, jwt.ErrTokenMalformed)
	default:
		// The signature (jwt.ErrTokenSignatureInvalid), or a key of a type
		// that does not suit the algorithm.
		return session.Identity{}, nil, fail(err)
	}
	if exp, ok := claims["exp"].(float64); ok && exp == 0 {
		// jwt reads an "exp" of 0 as no "exp" at all (and would report
		// a missing claim), but it names 1970-01-01T00:00:00Z: expired.
		return session.Identity{}, nil, fail(nil, jwt.ErrTokenInvalidClaims, jwt.ErrTokenExpired)
	}
	if err := vs.is.validator.Validate(claims); err != nil {
		if errors.Is(err, jwt.ErrTokenRequiredClaimMissing) {
			// exp was checked before (present, and not the 0 that jwt
			// reads as absent) and iss was matched exactly, so the
			// missing claim is "aud" (absent, empty, or [""]).
			return session.Identity{}, nil, fail(err, jwt.ErrTokenInvalidClaims, jwt.ErrTokenInvalidAudience)
		}
		return session.Identity{}, nil, fail(err, jwt.ErrTokenInvalidClaims)
	}
	return identity(claims), vs, nil
}

// keyFor is verify's keyfunc. t is the decoded token, not verified yet.
// An error it records in vs.failed is verify's error as is.
func (v *Verifier) keyFor(ctx context.Context, t *jwt.Token, vs *verification) (any, error) {
	vs.parsed = true
	refuse := func(cause error, sentinels ...error) (any, error) {
		vs.failed = fail(cause, sentinels...)
		return nil, vs.failed
	}
	if _, ok := t.Header["crit"]; ok {
		// RFC 7515 4.1.11: we understand no extension, so a token that
		// marks any as critical must be refused. jwt ignores "crit".
		return refuse(nil, jwt.ErrTokenMalformed)
	}
	kid, _ := t.Header[jwkset.HeaderKID].(string)
	if kid == "" {
		return refuse(nil, ErrMissingKID)
	}
	alg := t.Method.Alg()
	if !slices.Contains(v.cfg.algorithms, alg) {
		return refuse(nil, ErrAlgorithm)
	}
	claims := t.Claims.(jwt.MapClaims)
	if err := checkClaimTypes(claims); err != nil {
		return refuse(err, jwt.ErrTokenMalformed)
	}
	if _, ok := claims["exp"]; !ok {
		return refuse(nil, ErrMissingExp, jwt.ErrTokenRequiredClaimMissing)
	}
	if sub, _ := claims.GetSubject(); sub == "" {
		return refuse(nil, ErrMissingSubject, jwt.ErrTokenRequiredClaimMissing)
	}
	iss, _ := claims.GetIssuer()
	is := v.issuerFor(iss)
	if is == nil {
		return refuse(nil, ErrUnknownIssuer, jwt.ErrTokenInvalidIssuer)
	}
	if v.ctx.Err() != nil {
		return refuse(nil, ErrKeysUnavailable)
	}
	vs.is, vs.kid = is, kid

	pk := is.keys.lookup(kid)
	if pk == nil {
		if ctx.Err() != nil {
			return refuse(ctx.Err(), ErrUnknownKID)
		}
		done := v.startRefetch(is, kid)
		if done == nil {
			// Refused by the rate limit, or the Verifier is closing;
			// the kid may have come in meanwhile.
			if pk = is.keys.lookup(kid); pk == nil {
				return refuse(nil, v.missing(is))
			}
		} else {
			select {
			case <-done:
			case <-ctx.Done():
				return refuse(ctx.Err(), ErrUnknownKID)
			}
			if v.ctx.Err() != nil {
				return refuse(nil, ErrKeysUnavailable) // closed meanwhile
			}
			if pk = is.keys.lookup(kid); pk == nil {
				return refuse(nil, v.missing(is))
			}
		}
	}
	// A JWK's own "alg" binds: a key published for RS256 does not verify
	// a PS256 signature.
	if pk.alg != "" && pk.alg != alg {
		return refuse(nil, ErrAlgorithm)
	}
	vs.key = pk
	v.signatureChecks.Add(1)
	return pk.key, nil
}

// startRefetch returns a channel that is closed when an unknown-kid
// refetch of is's set ends: the one in flight, or else a new one, if the
// issuer's rate limit allows it. It returns nil when it starts none (the
// rate limit, a closed Verifier) or when kid is in the set by now.
//
// The refetch runs in a goroutine of its own on v.ctx, bounded by the
// fetch timeout, so that a caller whose ctx ends early (a client sending
// an unknown kid just before its auth deadline) cannot abort the one
// refetch per UnknownKIDRate; every caller waits for it at most until its
// own ctx ends. Close waits for it.
func (v *Verifier) startRefetch(is *issuer, kid string) <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	if is.refetching != nil {
		return is.refetching
	}
	// The refetch that just ended (it replaced the set before taking
	// v.mu to clear is.refetching) may have brought kid.
	if is.keys.lookup(kid) != nil || v.closed || v.ctx.Err() != nil || !v.mayRefetchLocked(is) {
		return nil
	}
	done := make(chan struct{})
	is.refetching = done
	v.refetches.Add(1)
	go func() {
		defer v.refetches.Done()
		ctx, cancel := context.WithTimeout(v.ctx, v.cfg.fetchTimeout)
		// A kid the storage lacks makes it fetch the set again, into
		// is.keys; a failed fetch goes to the RefreshErrorHandler, which
		// logs it. The key itself is read from the index by the waiters.
		_, _ = is.storage.KeyRead(ctx, kid)
		cancel()
		v.mu.Lock()
		is.refetching = nil
		v.mu.Unlock()
		close(done)
	}()
	return done
}

// mayRefetchLocked reports whether an unknown-kid refetch of is's set may
// start now, and counts it if so. An issuer that holds keys gets one per
// UnknownKIDRate. One without any key is not rate limited so: "no keys" is
// the provider's fault, not the token's, and every login fails until a
// fetch works, so it is retried with a backoff from minKeylessBackoff to
// maxKeylessBackoff instead, which ends when a fetch brings keys.
func (v *Verifier) mayRefetchLocked(is *issuer) bool {
	now := v.cfg.now()
	if !is.keys.empty() {
		is.keylessBackoff = 0
		return is.unknown.AllowN(now, 1)
	}
	if now.Before(is.retryAt) {
		return false
	}
	is.keylessBackoff = min(max(2*is.keylessBackoff, minKeylessBackoff), maxKeylessBackoff)
	is.retryAt = now.Add(is.keylessBackoff)
	return true
}

// hit returns the identity of a cached token if it still holds: the
// Verifier is open, the key that verified the token is still published
// under its kid, and Now is within "nbf" and "exp" (leeway included).
func (v *Verifier) hit(e *cached) (session.Identity, bool) {
	if v.ctx.Err() != nil || e.is.keys.lookup(e.kid) != e.key {
		return session.Identity{}, false
	}
	now := v.cfg.now()
	if !now.Before(e.expires) || e.hasNBF && now.Before(e.notBefore) {
		return session.Identity{}, false
	}
	return copyIdentity(e.id), true
}

// entry makes the cache entry of a token that verify accepted.
func (v *Verifier) entry(sum tokenKey, id session.Identity, vs *verification) *cached {
	e := &cached{
		sum:     sum,
		is:      vs.is,
		kid:     vs.kid,
		key:     vs.key,
		expires: id.ExpiresAt.Add(v.cfg.leeway),
		id:      copyIdentity(id),
	}
	if nbf, _ := jwt.MapClaims(id.Claims).GetNotBefore(); nbf != nil {
		e.notBefore, e.hasNBF = nbf.Add(-v.cfg.leeway), true
	}
	return e
}

func (v *Verifier) issuerFor(iss string) *issuer {
	if len(v.issuers) == 1 && v.issuers[0].Issuer.Issuer == "" {
		return v.issuers[0]
	}
	return v.byIss[iss]
}

// missing tells an unknown kid from an issuer without any key, or from a
// Verifier closed meanwhile.
func (v *Verifier) missing(is *issuer) error {
	if is.keys.empty() || v.ctx.Err() != nil {
		return ErrKeysUnavailable
	}
	return ErrUnknownKID
}

// checkClaimTypes refuses registered claims of the wrong JSON type, which
// jwt would only notice after the signature check, or never (sub without
// WithSubject), and date claims out of range (see checkNumericDates).
func checkClaimTypes(c jwt.MapClaims) error {
	if _, err := c.GetExpirationTime(); err != nil {
		return err
	}
	if _, err := c.GetNotBefore(); err != nil {
		return err
	}
	if _, err := c.GetIssuedAt(); err != nil {
		return err
	}
	if _, err := c.GetIssuer(); err != nil {
		return err
	}
	if _, err := c.GetSubject(); err != nil {
		return err
	}
	if _, err := c.GetAudience(); err != nil {
		return err
	}
	return checkNumericDates(c)
}

// maxNumericDate is the last second of year 9999, the latest NumericDate
// accepted.
const maxNumericDate = 253402300799

// errNumericDate refuses a date claim out of range.
var errNumericDate = errors.New("jwks: exp, nbf or iat is not a number of seconds from 1970 to 9999")

// checkNumericDates refuses "exp", "nbf" and "iat" values (already known
// to be JSON numbers) outside [0, maxNumericDate]. jwt converts seconds to
// time.Time through int64 without a range check: an "nbf" of 1e19, or of
// 9.2e18 (within int64 but past what time.Unix can represent), turned into
// a date in the distant past, so the token passed as "valid since
// forever". Negative dates (before 1970) and dates after year 9999 are no
// more legitimate in a token than those, and refusing them keeps every
// time computation (leeway, the token cache, an Identity marshalled as
// RFC 3339) in range.
func checkNumericDates(c jwt.MapClaims) error {
	for _, name := range [...]string{"exp", "nbf", "iat"} {
		var f float64
		switch raw := c[name].(type) {
		case nil:
			continue // absent: a null was refused by the type checks
		case float64:
			f = raw
		case json.Number:
			var err error
			if f, err = raw.Float64(); err != nil {
				return errNumericDate
			}
		default:
			return errNumericDate
		}
		if math.IsNaN(f) || f < 0 || f > maxNumericDate {
			return errNumericDate
		}
	}
	return nil
}

func identity(c jwt.MapClaims) session.Identity {
	// checkClaimTypes passed on the same payload: the getters cannot fail.
	id := session.Identity{Claims: c}
	id.Subject, _ = c.GetSubject()
	id.Issuer, _ = c.GetIssuer()
	if aud, _ := c.GetAudience(); len(aud) > 0 {
		id.Audience = []string(aud)
	}
	if exp, _ := c.GetExpirationTime(); exp != nil {
		id.ExpiresAt = exp.Time
	}
	if iat, _ := c.GetIssuedAt(); iat != nil {
		id.IssuedAt = iat.Time
	}
	return id
}
