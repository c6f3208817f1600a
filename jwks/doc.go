// Package jwks verifies the JWTs that WebSocket clients send in their auth
// frame against the JWK Sets of trusted identity providers.
//
// A Verifier knows one or more issuers, each with its own JWK Set URL and
// accepted audiences. Verify picks the issuer by the token's "iss", then
// verifies the token with that issuer's keys only, so a key of one provider
// never validates a token claiming to come from another, even when kids
// collide. Only asymmetric algorithms are accepted, every token must carry a
// "kid", an "exp" and a non-empty "sub", and the jku, x5u and jwk headers
// are never followed.
//
// # Keys
//
// New fetches each JWK Set once; a provider that is down then does not fail
// New, its tokens fail with ErrKeysUnavailable until a fetch works. Each set
// is fetched again every Options.RefreshInterval; a failed fetch keeps the
// keys already held, a successful one replaces them (a key the provider
// retired stops working).
//
// Only keys that can verify a signature are kept: RSA, EC (P-256, P-384,
// P-521) and Ed25519 keys whose "use", if present, is "sig" and whose
// "key_ops", if present, include "verify" (RFC 7517 sections 4.2 and 4.3).
// Other keys of a set (for encryption, shared secrets, key types or curves
// jwkset does not support) are skipped, and a set left without any key
// fails the fetch like any other bad answer: "{}", {"keys":[]},
// {"keys":[{}]} or a set of encryption keys never replace the keys held.
//
// A token whose kid is not in its issuer's set triggers an immediate
// refetch, at most once per Options.UnknownKIDRate per issuer, which is how
// a key rotation is picked up without waiting for the next refresh. The
// refetch runs on the Verifier's own context, not the caller's, so a
// client that gives up (or whose auth deadline ends) does not abort it;
// tokens with an unknown kid that arrive while it is in flight wait for
// it rather than being refused by the rate limit.
//
// Fetches are bounded in time and size (Options.HTTPClient,
// Options.MaxJWKSBytes), follow redirects only within the origin of the
// JWK Set URL (never to another host or port, never from https to http),
// and their failures are logged to Options.Logger. Status reports each
// issuer's keys and last fetch error; Health fails while an issuer holds no
// keys, for a server's readiness probe (wsauth.Server.ReadyHandler), and
// fetches such an issuer's set again, so that the probe brings its keys
// back as soon as the provider answers.
//
// # Time
//
// With Leeway L and Now the current time, a token is expired when
// Now >= exp+L: a token is no longer valid at the very instant "exp" names
// (RFC 7519: "on or after"), and with L = 1s it still is at exp+1s-1ns. It
// is not valid yet when Now < nbf-L. "exp" and "nbf" are whole seconds;
// fractions are truncated. "iat" is reported in session.Identity but not
// checked against Now: a provider whose clock runs slightly ahead would
// otherwise have its fresh tokens refused, and "nbf" is the claim meant for
// that check.
//
// "exp", "nbf" and "iat", when present, must be numbers from 0 to
// 253402300799 (1970-01-01 to 9999-12-31T23:59:59Z); anything else is a
// malformed token, refused before any key is looked up (jwt would turn an
// "nbf" of 1e19 into a date in the distant past). An "exp" of 0, which jwt
// reads as no "exp" at all, is 1970 and refused as expired.
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
// New starts one refresh goroutine per issuer (inside jwkset). They run
// until Close is called or the context given to New ends, whichever comes
// first; either aborts the fetches in flight. Verify runs on the caller's
// goroutine and is safe for concurrent use. It does no network I/O itself:
// an unknown kid starts a refetch in a goroutine of the Verifier's, at
// most one per issuer at a time, bounded by the fetch timeout and ended by
// Close, which waits for it; Verify waits for that refetch at most until
// the context it is given ends.
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
//		return err // wraps the close for the client: 4401 "token expired"
//	}
//	log.Printf("authenticated %s", id.Subject)
package jwks
