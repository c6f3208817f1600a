// Package wsauth runs authenticated WebSocket endpoints in a Go app server.
//
// Browsers cannot put an Authorization header on a WebSocket upgrade. wsauth
// authenticates with an explicit message instead: a connection opens
// unauthenticated, under an absolute deadline and resource caps, and its
// first frame must be an auth frame carrying a JWT, which is verified against
// the identity provider's JWKS (package jwks). The verified identity is bound
// to the session. Before the token expires the server asks for a fresh one
// (reauth_required) and the client sends it on the same socket; outbound
// messages are buffered, bounded, while the token is expired and delivered in
// order once a fresh one arrives. What the server could not write to a session
// is handed to the application (Options.OnUndelivered). Delivery is at most
// once: a message written just before a connection drops may still be lost.
//
// The wire protocol, with its close codes, is specified in docs/protocol.md;
// the threat model in docs/security.md.
//
// # Use
//
// A chat endpoint that sends every message to the user it names. Package
// jwks provides the Verifier (jwks.New with your IdP's issuer, JWKS URL and
// audience); the package Example runs this code against a test IdP.
//
//	srv, err := wsauth.New(wsauth.Options{
//		Verifier: verifier,
//		OnMessage: func(ctx context.Context, s *wsauth.Session, m wsauth.Message) error {
//			var in struct{ To, Text string }
//			if err := json.Unmarshal(m.Data, &in); err != nil || in.To == "" {
//				return &wsauth.MessageError{Code: 4000, Message: "want {to, text}"}
//			}
//			from := s.Principal()
//			out, _ := json.Marshal(map[string]string{"from": from.Subject, "text": in.Text})
//			to := wsauth.Principal{Issuer: from.Issuer, Subject: in.To}
//			// With the handler's ctx, a receiver that is behind slows
//			// this sender down instead of losing the message.
//			_, err := s.Server().SendToPrincipals(ctx, out, to)
//			return err
//		},
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer srv.Shutdown(ctx)
//	mux.Handle("/ws", srv)
//
// Serve it with an http.Server that sets ReadHeaderTimeout, IdleTimeout and
// MaxHeaderBytes (docs/security.md says why). Shutdown closes every session
// with 1001; clients reconnect elsewhere.
//
// # Goroutines
//
// Each connection has one read goroutine (ServeHTTP returns once it has
// upgraded the request): it reads frames and calls OnAuthenticated,
// OnMessage and OnClose, one at a time per session. A slow hook delays only its own session.
// Outbound frames are written by a short-lived per-connection writer that
// exists only while frames are queued, except replies: Session.Reply called
// from OnMessage is written by the read goroutine when the handler returns,
// which saves a goroutine handoff per request/response round-trip. All deadlines of all sessions (auth
// timeout, reauth, expiry, grace) live in one scheduler
// driven by a single timer; nothing runs a goroutine or timer per session.
// Every Server and Session method is safe for concurrent use.
package wsauth
