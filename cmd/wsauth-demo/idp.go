package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"github.com/wsauth/wsauth/wsauthtest"
)

// Limits of a /token request.
const (
	maxTokenTTL     = 24 * time.Hour
	maxSubjectRunes = 128
	maxTokenBody    = 4 << 10
)

// devIdP is the embedded development identity provider: a wsauthtest IdP
// whose JWK Set this server publishes, plus a /token endpoint that mints a
// token for whichever subject is asked. Insecure by design.
type devIdP struct {
	idp        *wsauthtest.IdP
	defaultTTL time.Duration
	logger     *slog.Logger
}

// newDevIdP makes the development IdP of this server, reachable at base.
// With a key file (see loadDevKey) it signs with that key, and its tokens
// have the issuer given: nodes that share both accept each other's tokens.
// Without one it signs with a new key, and issuer defaults to base.
func newDevIdP(base, issuer, audience, keyFile string, defaultTTL time.Duration, logger *slog.Logger) (*devIdP, error) {
	opts := wsauthtest.IdPOptions{Issuer: issuer, Audience: audience}
	if keyFile != "" {
		key, created, err := loadDevKey(keyFile)
		if err != nil {
			return nil, err
		}
		if created {
			logger.Info("development IdP: created a signing key", "file", keyFile)
		}
		opts.Key = key
	}
	idp, err := wsauthtest.NewDevIdP(base, opts)
	if err != nil {
		return nil, err
	}
	return &devIdP{idp: idp, defaultTTL: defaultTTL, logger: logger}, nil
}

// loadDevKey reads the signing key in path (PEM, PKCS #8: RSA, ECDSA P-256
// or Ed25519), or creates an RSA key there, readable by its owner only, if
// there is none. Nodes started together may race to create it: each writes
// a key of its own to a temporary file and links it to path, which fails
// for all but the first; the others read the winner's.
func loadDevKey(path string) (key crypto.Signer, created bool, err error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		created, err = createDevKey(path)
		if err != nil {
			return nil, false, fmt.Errorf("-dev-key: %w", err)
		}
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, false, fmt.Errorf("-dev-key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, false, fmt.Errorf("-dev-key: %s holds no PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("-dev-key: %s: %w", path, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, false, fmt.Errorf("-dev-key: %s: a %T cannot sign", path, k)
	}
	return signer, created, nil
}

// createDevKey writes a new RSA key to path, unless path exists by then; it
// reports whether it wrote it.
func createDevKey(path string) (bool, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".wsauth-demo-key-*") // mode 0600
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	err = pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	switch err := os.Link(tmp.Name(), path); {
	case errors.Is(err, fs.ErrExist):
		return false, nil // another node was first
	case err != nil:
		return false, err
	}
	return true, nil
}

func (d *devIdP) mount(mux *http.ServeMux) {
	mux.Handle("GET "+wsauthtest.JWKSPath, d.idp.Handler())
	mux.HandleFunc("POST /token", d.serveToken)
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
	})
}

type tokenRequest struct {
	Sub string `json:"sub"`
	TTL string `json:"ttl"` // Go duration; empty: the default TTL
}

type tokenResponse struct {
	Token string `json:"token"`
	Exp   int64  `json:"exp"` // unix seconds
}

// serveToken answers POST /token {"sub":"alice","ttl":"5s"} with
// {"token":"…","exp":<unix>}, and refusals with 400 {"error":"…"}.
func (d *devIdP) serveToken(w http.ResponseWriter, r *http.Request) {
	sub, ttl, err := d.parseTokenRequest(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	now := time.Now()
	exp := now.Add(ttl).Unix()
	// Sign the claims ourselves rather than with IdP.Token, so that the exp
	// we answer is exactly the one in the token.
	tok := d.idp.Sign(map[string]any{
		"iss": d.idp.Issuer(),
		"aud": d.idp.Audience(),
		"sub": sub,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": exp,
	})
	d.logger.Debug("dev IdP minted a token", "sub", sub, "ttl", ttl)
	writeJSON(w, http.StatusOK, tokenResponse{Token: tok, Exp: exp})
}

func (d *devIdP) parseTokenRequest(r *http.Request) (sub string, ttl time.Duration, err error) {
	var req tokenRequest
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxTokenBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return "", 0, fmt.Errorf("body must be a JSON object {\"sub\":…,\"ttl\":…}: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", 0, errors.New("body must hold one JSON object")
	}
	switch n := utf8.RuneCountInString(req.Sub); {
	case n == 0:
		return "", 0, errors.New("sub is required")
	case n > maxSubjectRunes:
		return "", 0, fmt.Errorf("sub must be at most %d characters", maxSubjectRunes)
	}
	ttl = d.defaultTTL
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			return "", 0, fmt.Errorf("ttl must be a Go duration such as \"30s\": %w", err)
		}
	}
	if ttl <= 0 || ttl > maxTokenTTL {
		return "", 0, fmt.Errorf("ttl must be positive and at most %s", maxTokenTTL)
	}
	return req.Sub, ttl, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // an error means the client went away
}
