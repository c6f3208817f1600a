package jwks_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/wsauthtest"
)

func ExampleNew() {
	// A development identity provider on a local server.
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	idp, err := wsauthtest.NewDevIdP(srv.URL, wsauthtest.IdPOptions{Audience: "chat-api", Algorithm: "ES256"})
	if err != nil {
		log.Fatal(err)
	}
	mux.Handle("/", idp.Handler())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := jwks.New(ctx, jwks.Options{
		Issuers: []jwks.Issuer{{
			Issuer:   idp.Issuer(),
			JWKSURL:  idp.JWKSURL(),
			Audience: []string{"chat-api"},
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	id, err := v.Verify(ctx, idp.Token("alice", time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("subject:", id.Subject)

	_, err = v.Verify(ctx, idp.Token("alice", -time.Minute))
	// The error carries what the client is told: wsauth closes with it.
	var ce *protocol.CloseError
	if errors.As(err, &ce) {
		fmt.Println("close:", int(ce.Code), ce.Reason)
	}
	// Output:
	// subject: alice
	// close: 4401 token expired
}
