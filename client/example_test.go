package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/client"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/wsauthtest"
)

// An echo server and its identity provider on one local server; the client
// authenticates, sends a message and receives the echo.
func ExampleDial() {
	mux := http.NewServeMux()
	hs := httptest.NewServer(mux)
	defer hs.Close()
	idp, err := wsauthtest.NewDevIdP(hs.URL, wsauthtest.IdPOptions{Audience: "chat", Algorithm: "ES256"})
	if err != nil {
		log.Fatal(err)
	}
	mux.Handle("/.well-known/", idp.Handler())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := jwks.New(ctx, jwks.Options{Issuers: []jwks.Issuer{{
		Issuer: idp.Issuer(), JWKSURL: idp.JWKSURL(), Audience: []string{"chat"},
	}}})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	srv, err := wsauth.New(wsauth.Options{
		Verifier: v,
		OnMessage: func(_ context.Context, s *wsauth.Session, m wsauth.Message) error {
			return s.Send(m.Data) // echo
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	mux.Handle("/ws", srv)

	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", client.Options{
		Token: client.TokenFunc(func(context.Context) (string, error) {
			return idp.Token("alice", time.Hour), nil // your OAuth client here
		}),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println("subject:", c.Subject(), "state:", c.State())

	if err := c.Send(ctx, json.RawMessage(`{"text":"hi"}`)); err != nil {
		log.Fatal(err)
	}
	data, err := c.Receive(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("echo:", string(data))
	// Output:
	// subject: alice state: active
	// echo: {"text":"hi"}
}
