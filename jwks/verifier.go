package jwks

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
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

	// signatureChecks counts the signatures Verify checked: cache hits do
	// not add to it. For tests.
	signatureChecks atomic.Int64
}

// issuer is one trusted provider with its own key set and refetch limit.
type issuer struct {
	Issuer
	keys      *keyStore       // the set, indexed by kid
	kf        keyfunc.Keyfunc // reads keys, and refetches on an unknown kid
	unknown   *rate.Limiter   // unknown-kid refetches, driven by cfg.now
	validator *jwt.Validator
}

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
		// No WithValidMethods: the keyfunc refuses algorithms outside
		// the allowlist, so that the error can say so.
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
	// storage of the fetched set.
	keys := newKeyStore()
	fetched, err := jwkset.NewStorageFromHTTP(iss.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:      cfg.client,
		Ctx:         v.ctx,
		HTTPTimeout: cfg.fetchTimeout,
		// New must not fail while a provider is down.
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       v.refreshErrorHandler(iss.Issuer)(iss.JWKSURL),
		RefreshInterval:           cfg.refreshInterval,
		Storage:                   keys,
	})
	if err != nil {
		return nil, fmt.Errorf("jwks: issuer %q: %w", iss.Issuer, err)
	}
	storage, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: map[string]jwkset.Storage{iss.JWKSURL: fetched},
		// jwkset's own limiter would make Verify wait for a token (up to
		// RateLimitWaitMax) and runs on the real clock. We gate unknown-kid
		// refetches in Verify with issuer.unknown instead, failing at once,
		// and let every refetch that gate allows through.
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
		// Besides the limiter wait, RateLimitWaitMax bounds the whole
		// unknown-kid refetch (jwkset derives the fetch's context from it),
		// so it must be the fetch timeout, not something small.
		RateLimitWaitMax: cfg.fetchTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("jwks: issuer %q: %w", iss.Issuer, err)
	}
	kf, err := keyfunc.New(keyfunc.Options{Ctx: v.ctx, Storage: storage})
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
		kf:        kf,
		unknown:   rate.NewLimiter(rate.Every(cfg.unknownKIDRate), 1),
		validator: jwt.NewValidator(opts...),
	}, nil
}

// refreshErrorHandler logs failed fetches of one issuer's JWK Set, whether
// from New, the refresh goroutine or an unknown-kid refetch.
func (v *Verifier) refreshErrorHandler(iss string) func(string) func(context.Context, error) {
	return func(url string) func(context.Context, error) {
		return func(ctx context.Context, err error) {
			// Cancellation is not the provider's fault: the Verifier is
			// closing or the Verify caller went away.
			if v.ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return
			}
			v.cfg.logger.LogAttrs(context.WithoutCancel(ctx), slog.LevelError, "jwks: fetching JWK Set failed",
				slog.String("issuer", iss), slog.String("url", url), slog.Any("err", err))
		}
	}
}

// Close stops the refresh goroutines, aborting fetches in flight, empties
// the token cache and releases idle connections of the default HTTP
// client. Verify fails with ErrKeysUnavailable afterwards. Close is
// idempotent.
func (v *Verifier) Close() {
	v.cancel()
	if v.cache != nil {
		v.cache.clear()
	}
	if t := v.cfg.ownTransport; t != nil {
		t.CloseIdleConnections()
	}
}

// Verify checks token and returns the identity it carries. The checks that
// need no key come first, so a malformed token, a missing kid, a refused
// algorithm or an untrusted issuer never cause network traffic. Then the
// token is verified with the keys of the issuer its "iss" names, and only
// those: its signature, "exp" (required), "nbf", the issuer and the
// audience. "iat" is not checked (see the package documentation for the
// time semantics). The jku, x5u and jwk headers are ignored.
//
// A kid the issuer's key set lacks triggers a refetch of that set, at most
// once per Options.UnknownKIDRate; ctx bounds it, and if ctx ends first the
// error wraps ctx.Err(). A token longer than 64 KiB is refused as malformed.
//
// With Options.TokenCacheSize, a token that Verify accepted before is
// accepted again without a signature check while "exp", "nbf" and its key
// still allow it; otherwise it is verified afresh (see TokenCacheSize).
//
// Errors wrap the package's sentinels and jwt's (see ErrMissingKID) and
// never contain the token or any part of it. Reason maps them to a close
// reason.
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

// verification is what the keyfunc of one verify learnt about the token.
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
		// The signature, or the keyfunc after a refetch (jwt wraps its
		// error in jwt.ErrTokenUnverifiable).
		return session.Identity{}, nil, fail(err)
	}
	if err := vs.is.validator.Validate(claims); err != nil {
		if errors.Is(err, jwt.ErrTokenRequiredClaimMissing) {
			// exp was checked before and iss was matched exactly, so the
			// missing claim is "aud".
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
	iss, _ := claims.GetIssuer()
	is := v.issuerFor(iss)
	if is == nil {
		return refuse(nil, ErrUnknownIssuer, jwt.ErrTokenInvalidIssuer)
	}
	if v.ctx.Err() != nil {
		return refuse(nil, ErrKeysUnavailable)
	}
	vs.is, vs.kid = is, kid

	if pk := is.keys.lookup(kid); pk != nil {
		// keyfunc would check this too, but its error does not say what
		// failed.
		if pk.alg != "" && pk.alg != alg {
			return refuse(nil, ErrAlgorithm)
		}
		vs.key = pk
		v.signatureChecks.Add(1)
		return pk.key, nil
	}
	switch {
	case ctx.Err() != nil:
		return refuse(ctx.Err(), ErrUnknownKID)
	case !is.unknown.AllowN(v.cfg.now(), 1):
		return refuse(nil, is.missing())
	}
	// keyfunc reads the set, refetches it, reads it again and checks the
	// key's alg.
	key, err := is.keyfunc(ctx)(t)
	if err != nil {
		return nil, err
	}
	if pk := is.keys.lookup(kid); pk != nil && sameKey(pk.key, key) {
		vs.key = pk
	}
	v.signatureChecks.Add(1)
	return key, nil
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

// keyfunc wraps keyfunc's so that its errors become our sentinels.
func (is *issuer) keyfunc(ctx context.Context) jwt.Keyfunc {
	inner := is.kf.KeyfuncCtx(ctx)
	return func(t *jwt.Token) (any, error) {
		key, err := inner(t)
		switch {
		case err == nil:
			return key, nil
		case ctx.Err() != nil:
			return nil, errors.Join(ErrUnknownKID, ctx.Err())
		case errors.Is(err, jwkset.ErrKeyNotFound):
			return nil, is.missing()
		default:
			// With kid and alg checked before, keyfunc's only other
			// failure is a key whose "alg" differs from the token's.
			return nil, ErrAlgorithm
		}
	}
}

// missing tells an unknown kid from an issuer without any key.
func (is *issuer) missing() error {
	if is.keys.empty() {
		return ErrKeysUnavailable
	}
	return ErrUnknownKID
}

// checkClaimTypes refuses registered claims of the wrong JSON type, which
// jwt would only notice after the signature check, or never (sub without
// WithSubject).
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
	_, err := c.GetAudience()
	return err
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
