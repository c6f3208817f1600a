package prommetrics_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/client"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/prommetrics"
	"github.com/wsauth/wsauth/wsauthtest"
)

// A server with metrics, a readiness and a liveness probe; one client
// logs in, and the scrape shows its session and its token's verification.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	public, internal := http.NewServeMux(), http.NewServeMux()
	hs, ops := httptest.NewServer(public), httptest.NewServer(internal)
	defer hs.Close()
	defer ops.Close()

	// A development identity provider; in production, your IdP's JWKS.
	idp, err := wsauthtest.NewDevIdP(hs.URL, wsauthtest.IdPOptions{Audience: "chat"})
	if err != nil {
		log.Fatal(err)
	}
	public.Handle("/.well-known/", idp.Handler())
	verifier, err := jwks.New(ctx, jwks.Options{Issuers: []jwks.Issuer{{
		Issuer: idp.Issuer(), JWKSURL: idp.JWKSURL(), Audience: []string{"chat"},
	}}})
	if err != nil {
		log.Fatal(err)
	}
	defer verifier.Close()

	reg := prometheus.NewRegistry()
	obs, err := prommetrics.New(reg, prommetrics.Options{})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := wsauth.New(wsauth.Options{Verifier: verifier, Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	public.Handle("/ws", srv)
	// On a port of their own, for the infrastructure only.
	internal.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	internal.Handle("GET /readyz", srv.ReadyHandler())
	internal.Handle("GET /livez", srv.LiveHandler())

	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", client.Options{
		Token: client.StaticToken(idp.Token("alice", time.Hour)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	for _, path := range []string{"/readyz", "/metrics"} {
		resp, err := http.Get(ops.URL + path)
		if err != nil {
			log.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := sc.Text(); path == "/readyz" || strings.HasPrefix(line, "wsauth_sessions{") ||
				strings.HasPrefix(line, "wsauth_token_verifications_total{") {
				fmt.Println(line)
			}
		}
		resp.Body.Close()
	}
	// Output:
	// {"status":"ok","checks":{"server":"ok","verifier":"ok"}}
	// wsauth_sessions{state="active"} 1
	// wsauth_sessions{state="expired"} 0
	// wsauth_sessions{state="pending"} 0
	// wsauth_token_verifications_total{reason="",result="accepted",stage="auth"} 1
}
