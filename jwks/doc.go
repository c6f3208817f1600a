// Package jwks verifies the JWTs that WebSocket clients send in their auth
// frame against the JWK Sets of trusted identity providers.
//
// A Verifier knows one or more issuers, each with its own JWK Set URL and
// accepted audiences. Verify picks the issuer by the token's "iss", then
// verifies the token with that issuer's keys only, so a key of one provider
// never validates a token claiming to come from another, even when kids
// collide. Only asymmetric algorithms are accepted, every token must carry a
// "kid" and an "exp", and the jku, x5u and jwk headers are never followed.
//
// # Keys
//
// New fetches each JWK Set once; a provider that is down then does not fail
// New, its tokens fail with ErrKeysUnavailable until a fetch works. Each set
// is fetched again every Options.RefreshInterval; a failed fetch keeps the
// keys already held, a successful one replaces them (a key the provider
// retired stops working). A token whose kid is not in its issuer's set
// triggers an immediate refetch, at most once per Options.UnknownKIDRate per
// issuer, which is how a key rotation is picked up without waiting for the
// next refresh. Fetches are bounded in time and size (Options.HTTPClient,
// Options.MaxJWKSBytes) and failures are logged to Options.Logger.
//
// # Time
//
// With Leeway L and Now the current time, a token is expired when
// Now >= exp+L: a token is no longer valid at the very instant "exp" names
// (RFC 7519: "on or after"), and with L = 1s it still is at exp+1s-1ns. It
// is not valid yet when Now < nbf-L. "exp" and "nbf" are whole seconds;
// fractions are truncated. "iat" is reported in session.Identity but not
// checked: a provider whose clock runs slightly ahead would otherwise have
// its fresh tokens refused, and "nbf" is the claim meant for that check.
//
// # Token cache
//
// With Options.TokenCacheSize, Verify remembers the tokens it accepted, by
// their SHA-256, so that a client reconnecting with the same token skips
// the signature check. A remembered token still has its "exp" and "nbf"
// checked on every use, and is verified afresh once the key that signed it
// is no longer published under its kid. The cache is off by default.
//
// # Goroutines
//
// New starts one refresh goroutine per issuer (inside keyfunc/jwkset). They
// run until Close is called or the context given to New ends, whichever
// comes first; either aborts the fetches in flight. Verify runs on the
// caller's goroutine, is safe for concurrent use, and does network I/O only
// for an unknown-kid refetch, bounded by the context it is given.
//
// # Example
//
//	v, err := jwks.New(ctx, jwks.Options{
//		Issuers: []jwks.Issuer{{
//			Issuer:   "https://id.example.com/",
//			JWKSURL:  "https://id.example.com/.well-known/jwks.json",
//			Audience: []string{"chat-api"},
//		}},
//	})
//	if err != nil {
//		return err
//	}
//	defer v.Close()
//
//	id, err := v.Verify(authCtx, token)
//	if err != nil {
//		return protocol.NewCloseError(protocol.CloseUnauthorized, jwks.Reason(err))
//	}
//	log.Printf("authenticated %s", id.Subject)
package jwks
