package wsauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/client"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/wsauthtest"
)

// exampleIdP serves a development identity provider's JWKS on mux and
// returns it with a verifier that trusts it. In production the verifier
// points at your IdP: jwks.Issuer{Issuer, JWKSURL, Audience}.
func exampleIdP(ctx context.Context, mux *http.ServeMux, url string) (*wsauthtest.IdP, *jwks.Verifier) {
	idp, err := wsauthtest.NewDevIdP(url, wsauthtest.IdPOptions{Audience: "chat"})
	if err != nil {
		log.Fatal(err)
	}
	mux.Handle("/.well-known/", idp.Handler())
	v, err := jwks.New(ctx, jwks.Options{Issuers: []jwks.Issuer{{
		Issuer: idp.Issuer(), JWKSURL: idp.JWKSURL(), Audience: []string{"chat"},
	}}})
	if err != nil {
		log.Fatal(err)
	}
	return idp, v
}

// A chat endpoint: every message is sent to all sessions of the user it
// names, stamped with the verified sender. A user is a Principal: a subject
// of one issuer; here there is one issuer, so the sender's.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mux := http.NewServeMux()
	hs := httptest.NewServer(mux)
	defer hs.Close()
	idp, verifier := exampleIdP(ctx, mux, hs.URL)
	defer verifier.Close()

	srv, err := wsauth.New(wsauth.Options{
		Verifier: verifier,
		OnMessage: func(ctx context.Context, s *wsauth.Session, m wsauth.Message) error {
			var in struct{ To, Text string }
			if err := json.Unmarshal(m.Data, &in); err != nil || in.To == "" {
				return &wsauth.MessageError{Code: 4000, Message: "want {to, text}"}
			}
			from := s.Principal()
			out, _ := json.Marshal(map[string]string{"from": from.Subject, "text": in.Text})
			to := wsauth.Principal{Issuer: from.Issuer, Subject: in.To}
			// With the handler's ctx, a receiver that is behind slows
			// this sender down instead of losing the message.
			_, err := s.Server().SendToPrincipals(ctx, out, to)
			return err
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	mux.Handle("/ws", srv)

	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	dial := func(sub string) *client.Client {
		c, err := client.Dial(ctx, url, client.Options{Token: client.TokenFunc(
			func(context.Context) (string, error) { return idp.Token(sub, time.Hour), nil })})
		if err != nil {
			log.Fatal(err)
		}
		return c
	}
	alice, bob := dial("alice"), dial("bob")
	defer alice.Close()
	defer bob.Close()

	if err := alice.Send(ctx, json.RawMessage(`{"to":"bob","text":"hi bob"}`)); err != nil {
		log.Fatal(err)
	}
	got, err := bob.Receive(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(got))
	// Output: {"from":"alice","text":"hi bob"}
}

// Revoke closes every session of a user with 4403; clients see a typed
// close error and do not reconnect.
func ExampleServer_Revoke() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mux := http.NewServeMux()
	hs := httptest.NewServer(mux)
	defer hs.Close()
	idp, verifier := exampleIdP(ctx, mux, hs.URL)
	defer verifier.Close()

	closed := make(chan *protocol.CloseError, 1)
	srv, err := wsauth.New(wsauth.Options{
		Verifier: verifier,
		OnClose:  func(s *wsauth.Session, ce *protocol.CloseError) { closed <- ce },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	mux.Handle("/ws", srv)

	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", client.Options{
		Token: client.StaticToken(idp.Token("mallory", time.Hour)),
	})
	if err != nil {
		log.Fatal(err)
	}
	n, _ := srv.Revoke(ctx, wsauth.Principal{Issuer: idp.Issuer(), Subject: "mallory"})
	fmt.Println("revoked sessions:", n)
	fmt.Println("server:", <-closed)
	<-c.Done()
	var ce *protocol.CloseError
	if errors.As(c.Err(), &ce) {
		fmt.Println("client:", ce.Code, ce.Reason)
	}
	// Output:
	// revoked sessions: 1
	// server: wsauth: closed 4403 (forbidden): session revoked
	// client: forbidden session revoked
}

// ExpiryPolicy is an encoding.TextUnmarshaler, so a flag (or a JSON or YAML
// configuration) can set it by name.
func ExampleExpiryPolicy() {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var opts wsauth.Options
	fs.TextVar(&opts.Expiry, "expiry", wsauth.ExpiryReauth, "reauth, close or ignore")
	fmt.Println(fs.Parse([]string{"-expiry", "close"}), opts.Expiry)
	fmt.Println(fs.Parse([]string{"-expiry", "sometimes"}))
	// Output:
	// <nil> close
	// invalid value "sometimes" for flag -expiry: wsauth: unknown expiry policy "sometimes" (want reauth, close or ignore)
}

// Reply answers a client's message from OnMessage: the answer is written
// when the handler returns, on the connection's own goroutine.
func ExampleSession_Reply() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mux := http.NewServeMux()
	hs := httptest.NewServer(mux)
	defer hs.Close()
	idp, verifier := exampleIdP(ctx, mux, hs.URL)
	defer verifier.Close()

	srv, err := wsauth.New(wsauth.Options{
		Verifier: verifier,
		OnMessage: func(_ context.Context, s *wsauth.Session, m wsauth.Message) error {
			var req struct{ N int }
			if err := json.Unmarshal(m.Data, &req); err != nil {
				return &wsauth.MessageError{Code: 4000, Message: "want {n}"}
			}
			return s.Reply(json.RawMessage(fmt.Sprintf(`{"double":%d}`, 2*req.N)))
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	mux.Handle("/ws", srv)

	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", client.Options{
		Token: client.StaticToken(idp.Token("alice", time.Hour)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, n := range []int{1, 21} {
		if err := c.Send(ctx, json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))); err != nil {
			log.Fatal(err)
		}
		got, err := c.Receive(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(got))
	}
	// Output:
	// {"double":2}
	// {"double":42}
}

// TestDocSnippetIsExample proves that the snippet under "# Use" in doc.go
// compiles and runs: it must be the code of Example, line for line.
func TestDocSnippetIsExample(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	src, err := os.ReadFile("example_test.go")
	require.NoError(t, err)
	_, use, ok := strings.Cut(string(doc), "// # Use\n")
	require.True(t, ok, "doc.go has no # Use section")
	use, _, _ = strings.Cut(use, "\n//\n// Serve it")
	var snippet []string
	for _, line := range strings.Split(use, "\n") {
		if code, ok := strings.CutPrefix(line, "//\t"); ok {
			snippet = append(snippet, code)
		}
	}
	require.Greater(t, len(snippet), 10, "the snippet is gone")
	_, example, ok := strings.Cut(string(src), "\nfunc Example() {\n")
	require.True(t, ok)
	example, _, _ = strings.Cut(example, "\n}\n")
	var body []string
	for _, line := range strings.Split(example, "\n") {
		body = append(body, strings.TrimPrefix(line, "\t"))
	}
	assert.Contains(t, strings.Join(body, "\n"), strings.Join(snippet, "\n"), "doc.go's snippet is not Example's code")
}
