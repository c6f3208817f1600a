package jwks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

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
}

// issuer is one trusted provider with its own key set and refetch limit.
type issuer struct {
	Issuer
	kf        keyfunc.Keyfunc
	unknown   *rate.Limiter // unknown-kid refetches, driven by cfg.now
	parseOpts []jwt.ParserOption
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
	kf, err := keyfunc.NewDefaultOverrideCtx(v.ctx, []string{iss.JWKSURL}, keyfunc.Override{
		Client:      cfg.client,
		HTTPTimeout: cfg.fetchTimeout,
		// keyfunc's own limiter would make Verify wait for a token (up to
		// RateLimitWaitMax) and runs on the real clock. We gate unknown-kid
		// refetches in Verify with issuer.unknown instead, failing at once,
		// and let every refetch that gate allows through.
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
		// Besides the limiter wait, RateLimitWaitMax bounds the whole
		// unknown-kid refetch (jwkset derives the fetch's context from it),
		// so it must be the fetch timeout, not something small.
		RateLimitWaitMax:        cfg.fetchTimeout,
		RefreshInterval:         cfg.refreshInterval,
		RefreshErrorHandlerFunc: v.refreshErrorHandler(iss.Issuer),
	})
	if err != nil {
		return nil, fmt.Errorf("jwks: issuer %q: %w", iss.Issuer, err)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(cfg.algorithms),
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
		kf:        kf,
		unknown:   rate.NewLimiter(rate.Every(cfg.unknownKIDRate), 1),
		parseOpts: opts,
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

// Close stops the refresh goroutines, aborting fetches in flight, and
// releases idle connections of the default HTTP client. Verify fails with
// ErrKeysUnavailable afterwards. Close is idempotent.
func (v *Verifier) Close() {
	v.cancel()
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
// Errors wrap the package's sentinels and jwt's (see ErrMissingKID) and
// never contain the token or any part of it. Reason maps them to a close
// reason.
func (v *Verifier) Verify(ctx context.Context, token string) (session.Identity, error) {
	if len(token) > maxTokenBytes {
		return session.Identity{}, fail(nil, jwt.ErrTokenMalformed)
	}
	claims := jwt.MapClaims{}
	unverified, _, err := jwt.NewParser().ParseUnverified(token, claims)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenUnverifiable) {
			// ParseUnverified's only such failure: no alg, or one jwt does
			// not know (not even "none" then).
			return session.Identity{}, fail(err, ErrAlgorithm)
		}
		return session.Identity{}, fail(err, jwt.ErrTokenMalformed)
	}
	if _, ok := unverified.Header["crit"]; ok {
		// RFC 7515 4.1.11: we understand no extension, so a token that
		// marks any as critical must be refused. jwt ignores "crit".
		return session.Identity{}, fail(nil, jwt.ErrTokenMalformed)
	}
	kid, _ := unverified.Header[jwkset.HeaderKID].(string)
	if kid == "" {
		return session.Identity{}, fail(nil, ErrMissingKID)
	}
	alg := unverified.Method.Alg()
	if !slices.Contains(v.cfg.algorithms, alg) {
		return session.Identity{}, fail(nil, ErrAlgorithm)
	}
	if err := checkClaimTypes(claims); err != nil {
		return session.Identity{}, fail(err, jwt.ErrTokenMalformed)
	}
	if _, ok := claims["exp"]; !ok {
		return session.Identity{}, fail(nil, ErrMissingExp, jwt.ErrTokenRequiredClaimMissing)
	}
	iss, _ := claims.GetIssuer()
	is := v.issuerFor(iss)
	if is == nil {
		return session.Identity{}, fail(nil, ErrUnknownIssuer, jwt.ErrTokenInvalidIssuer)
	}
	if v.ctx.Err() != nil {
		return session.Identity{}, fail(nil, ErrKeysUnavailable)
	}

	keys, _ := is.kf.Storage().KeyReadAll(ctx) // in memory: no network
	i := slices.IndexFunc(keys, func(k jwkset.JWK) bool { return k.Marshal().KID == kid })
	switch {
	case i >= 0:
		// keyfunc checks this too, but its error does not say what
		// failed; checking here lets the error name it.
		if a := keys[i].Marshal().ALG.String(); a != "" && a != alg {
			return session.Identity{}, fail(nil, ErrAlgorithm)
		}
	case ctx.Err() != nil:
		return session.Identity{}, fail(ctx.Err(), ErrUnknownKID)
	case !is.unknown.AllowN(v.cfg.now(), 1):
		return session.Identity{}, fail(nil, is.missing(ctx))
	}

	verified, err := jwt.Parse(token, is.keyfunc(ctx), is.parseOpts...)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenRequiredClaimMissing) {
			// exp was checked above and iss was matched exactly, so the
			// missing claim is "aud".
			return session.Identity{}, fail(err, jwt.ErrTokenInvalidAudience)
		}
		return session.Identity{}, fail(err)
	}
	return identity(verified.Claims.(jwt.MapClaims)), nil
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
			return nil, is.missing(ctx)
		default:
			// With kid and alg checked before, keyfunc's only other
			// failure is a key whose "alg" differs from the token's.
			return nil, ErrAlgorithm
		}
	}
}

// missing tells an unknown kid from an issuer without any key.
func (is *issuer) missing(ctx context.Context) error {
	keys, _ := is.kf.Storage().KeyReadAll(ctx)
	if len(keys) == 0 {
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
