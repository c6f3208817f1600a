package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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

func newDevIdP(issuer, audience string, defaultTTL time.Duration, logger *slog.Logger) (*devIdP, error) {
	idp, err := wsauthtest.NewDevIdP(issuer, audience, "")
	if err != nil {
		return nil, err
	}
	return &devIdP{idp: idp, defaultTTL: defaultTTL, logger: logger}, nil
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
