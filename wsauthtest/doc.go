// Package wsauthtest provides test helpers for wsauth and for the users of
// wsauth who test their own servers and clients.
//
//   - IdP is an identity provider for tests: NewIdP serves its JWK Set on
//     an httptest.Server and mints tokens with its current key (Token, or
//     Sign and SignWith for hand-made and hostile ones). Tests rotate and
//     retire its keys, set its clock, and make its JWK Set endpoint fail,
//     slow or lie (SetDown, SetDelay, SetBody), counting the fetches it
//     received. Its Verifier is a jwks.Verifier that trusts it, on the
//     IdP's clock. NewDevIdP makes one without a server, whose Handler a
//     development server mounts itself; development nodes given one Issuer
//     and one Key (IdPOptions) accept each other's tokens.
//   - Clock is a fake clock implementing reauth.Clock: tests advance time
//     instead of sleeping.
//
// Everything here is safe for concurrent use. An IdP made by NewIdP runs
// its server's goroutines until the test's cleanup closes it.
//
// Example: a wsauth server under test, on fake time.
//
//	clock := wsauthtest.NewClock(time.Now())
//	idp := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Clock: clock})
//	srv, err := wsauth.New(wsauth.Options{Verifier: idp.Verifier(t), Clock: clock})
//	...
//	token := idp.Token("alice", time.Minute)
//	clock.Advance(time.Minute - 30*time.Second) // the server sends reauth_required
package wsauthtest
