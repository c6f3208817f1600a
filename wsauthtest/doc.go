// Package wsauthtest provides test helpers for wsauth and for the users of
// wsauth who test their own servers and clients.
//
//   - IdP is an identity provider for tests: NewIdP serves its JWK Set on
//     an httptest.Server and mints tokens with its current key (Token, or
//     Sign and SignWith for hand-made and hostile ones). Tests rotate and
//     retire its keys, set its clock, and make its JWK Set endpoint fail,
//     slow or lie (SetDown, SetDelay, SetBody), counting the fetches it
//     received. NewDevIdP makes one without a server, whose Handler a
//     development server mounts itself.
//   - Clock is a fake clock implementing reauth.Clock: tests advance time
//     instead of sleeping.
//
// Everything here is safe for concurrent use. An IdP made by NewIdP runs
// its server's goroutines until the test's cleanup closes it.
//
// Example:
//
//	idp := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Algorithm: "ES256"})
//	v, err := jwks.New(t.Context(), jwks.Options{Issuers: []jwks.Issuer{{
//		Issuer: idp.Issuer(), JWKSURL: idp.JWKSURL(), Audience: []string{idp.Audience()},
//	}}})
//	...
//	id, err := v.Verify(ctx, idp.Token("alice", time.Hour))
package wsauthtest
