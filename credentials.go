package wsauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/protocol"
)

// Credentials on the upgrade request. Besides the auth frame, a client may
// authenticate before the socket exists, so that strangers are refused
// with plain HTTP and no socket or pending slot is spent on them:
//
//   - a single-use ticket (?ticket=...), exchanged for a token at
//     TicketHandler: what browsers use;
//   - with Options.TokenInHeader, "Authorization: Bearer <JWT>": servers,
//     mobile and command-line clients;
//   - with Options.TokenInSubprotocol, the token as a second
//     Sec-WebSocket-Protocol value beside wsauth.v1 (a browser's
//     new WebSocket(url, ["wsauth.v1", token])).
//
// A bad credential gets 401 before the upgrade; a good one starts the
// session authenticated: auth_ok is its first frame, and reauthentication
// goes on in-band as for every session.

// ticketKeyPrefix namespaces tickets among the broker's values.
const ticketKeyPrefix = "ticket."

// ticket is what a ticket stands for, kept until it is used or expires.
type ticket struct {
	Identity Identity  `json:"identity"`
	Origin   string    `json:"origin,omitempty"` // the Origin of the exchange, if any
	IP       string    `json:"ip,omitempty"`     // with Options.TicketBindIP
	Expires  time.Time `json:"expires"`
}

// ticketResponse is TicketHandler's answer.
type ticketResponse struct {
	Ticket  string `json:"ticket"`
	Expires int64  `json:"expires"` // unix seconds
}

// TicketHandler returns the handler that exchanges a token for an upgrade
// ticket: POST, with the token in "Authorization: Bearer <JWT>", answers
// {"ticket":"...","expires":<unix s>}. The client then opens the socket at
// the endpoint's URL with ?ticket=<ticket>. A ticket is random (256 bits),
// valid once, for Options.TicketTTL (default 30 s, never past the token's
// exp), on any node of the cluster, only from a page of the same Origin as
// the exchange (when the exchange had one), and with Options.TicketBindIP
// only from the same client IP. Refusals: 405 for another method, 403 for
// an Origin not allowed, 401 for a missing or refused token (the body
// names the check, as a close reason would), 503 while the identity
// provider's keys or the broker are unavailable. Answers are never cached.
func (srv *Server) TicketHandler() http.Handler {
	return http.HandlerFunc(srv.serveTicket)
}

func (srv *Server) serveTicket(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		srv.refuseJSON(w, http.StatusMethodNotAllowed, "method", "use POST")
		return
	}
	if !srv.opts.originAllowed(r) {
		srv.refuseJSON(w, http.StatusForbidden, "origin", "origin not allowed")
		return
	}
	token, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer`)
		srv.refuseJSON(w, http.StatusUnauthorized, "credential", "missing bearer token")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), srv.opts.AuthTimeout)
	defer cancel()
	ident, ce := srv.check(ctx, "ticket", token, slog.String("remote", r.RemoteAddr))
	if ce != nil {
		srv.refuseCredential(w, ce)
		return
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	id := base64.RawURLEncoding.EncodeToString(b[:])
	now := srv.opts.Clock.Now()
	t := ticket{Identity: ident, Origin: r.Header.Get("Origin"), Expires: now.Add(srv.opts.TicketTTL)}
	if !ident.ExpiresAt.IsZero() && ident.ExpiresAt.Before(t.Expires) {
		t.Expires = ident.ExpiresAt
	}
	if srv.opts.TicketBindIP {
		t.IP = srv.opts.ClientIP(r)
	}
	value, err := json.Marshal(t)
	if err == nil {
		err = srv.once.PutOnce(ctx, ticketKeyPrefix+id, value, t.Expires.Sub(now))
	}
	if err != nil {
		srv.opts.Logger.Warn("wsauth: keeping a ticket failed", "err", err)
		w.Header().Set("Retry-After", "1")
		srv.refuseJSON(w, http.StatusServiceUnavailable, "ticket", "tickets unavailable")
		return
	}
	writeJSON(w, http.StatusOK, ticketResponse{Ticket: id, Expires: t.Expires.Unix()})
}

// preAuthenticate checks the credential of an upgrade request, if it has
// one: it returns the identity to start the session with (authed), or
// writes the refusal and reports ok false. The caller passes on to gws the
// request it returns: without a token among its subprotocols.
func (srv *Server) preAuthenticate(w http.ResponseWriter, r *http.Request) (ident Identity, authed bool, out *http.Request, ok bool) {
	out = r
	ctx, cancel := context.WithTimeout(r.Context(), srv.opts.AuthTimeout)
	defer cancel()
	if id := r.URL.Query().Get("ticket"); id != "" {
		ident, ce := srv.redeem(ctx, r, id)
		if ce != nil {
			srv.refuseCredential(w, ce)
			return Identity{}, false, r, false
		}
		return ident, true, r, true
	}
	var token string
	switch {
	case srv.opts.TokenInHeader && r.Header.Get("Authorization") != "":
		var found bool
		if token, found = bearer(r); !found {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request"`)
			srv.refuseJSON(w, http.StatusUnauthorized, "credential", "malformed Authorization header")
			return Identity{}, false, r, false
		}
	case srv.opts.TokenInSubprotocol:
		var protos []string
		for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
			for _, p := range strings.Split(v, ",") {
				if p = strings.TrimSpace(p); p != "" && p != protocol.Subprotocol {
					protos = append(protos, p)
				}
			}
		}
		if len(protos) == 0 {
			return Identity{}, false, r, true
		}
		if len(protos) > 1 || !headerHasToken(r.Header, "Sec-WebSocket-Protocol", protocol.Subprotocol) {
			// One token, beside wsauth.v1, which the server answers with:
			// never the token, never an empty header.
			srv.refuseJSON(w, http.StatusBadRequest, "subprotocol", "offer wsauth.v1 and one token")
			return Identity{}, false, r, false
		}
		token = protos[0]
		r2 := *r
		r2.Header = r.Header.Clone()
		r2.Header.Set("Sec-WebSocket-Protocol", protocol.Subprotocol)
		out = &r2
	default:
		return Identity{}, false, r, true
	}
	ident, ce := srv.check(ctx, "upgrade", token, slog.String("remote", r.RemoteAddr))
	if ce != nil {
		srv.refuseCredential(w, ce)
		return Identity{}, false, r, false
	}
	return ident, true, out, true
}

// redeem takes the ticket id and checks it against the request.
func (srv *Server) redeem(ctx context.Context, r *http.Request, id string) (Identity, *protocol.CloseError) {
	value, err := srv.once.TakeOnce(ctx, ticketKeyPrefix+id)
	switch {
	case errors.Is(err, broker.ErrNotFound):
		return Identity{}, closeBadTicket
	case err != nil:
		srv.opts.Logger.Warn("wsauth: taking a ticket failed", "err", err)
		return Identity{}, closeTicketsUnavailable
	}
	var t ticket
	if json.Unmarshal(value, &t) != nil {
		return Identity{}, closeBadTicket
	}
	now := srv.opts.Clock.Now()
	switch {
	case !now.Before(t.Expires),
		t.Origin != "" && r.Header.Get("Origin") != t.Origin,
		t.IP != "" && srv.opts.ClientIP(r) != t.IP:
		return Identity{}, closeBadTicket
	case srv.revoked.refuses(t.Identity, now):
		return Identity{}, closeTokenRevoked
	}
	return t.Identity, nil
}

// bearer returns the token of "Authorization: Bearer <token>".
func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	return token, ok && strings.EqualFold(scheme, "Bearer") && token != "" && !strings.ContainsAny(token, " ,")
}

// refuseCredential answers a refused credential: 401 naming the check (as
// a close reason would), 503 when it could not be judged now.
func (srv *Server) refuseCredential(w http.ResponseWriter, ce *protocol.CloseError) {
	switch ce.Code {
	case protocol.CloseTryAgainLater, protocol.CloseAuthTimeout:
		w.Header().Set("Retry-After", "1")
		srv.refuseJSON(w, http.StatusServiceUnavailable, "credential", ce.Reason)
	default:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		srv.refuseJSON(w, http.StatusUnauthorized, "credential", ce.Reason)
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// nopHandler is the Handler of the private broker a server without one
// keeps its tickets in: nothing is ever sent to it.
type nopHandler struct{}

func (nopHandler) Deliver(broker.Message)            {}
func (nopHandler) Broadcast(json.RawMessage)         {}
func (nopHandler) Send(string, json.RawMessage) bool { return false }
func (nopHandler) Revoke(broker.Revocation)          {}

// onceStore keeps tickets: the cluster's broker, or a private one.
type onceStore interface {
	PutOnce(ctx context.Context, key string, value []byte, ttl time.Duration) error
	TakeOnce(ctx context.Context, key string) ([]byte, error)
}

// startAuthenticated makes s, upgraded with a credential that proved
// ident, active: the same as a first auth frame that proved it. It runs on
// the read goroutine before the read loop.
func (s *Session) startAuthenticated(ident Identity) {
	if !s.bind(ident, true, Identity{}) {
		return
	}
	s.activate(ident, true, Identity{}, nil)
}
