package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/wsauth/wsauth/protocol"
)

// Credentials on the upgrade (docs/protocol.md, section 1.1). By default
// the token goes in the first auth frame. With Options.TokenInHeader it
// goes in the upgrade request's Authorization header; with
// Options.TicketURL the client first exchanges it for a single-use ticket
// and opens the socket with ?ticket=. Either way the server refuses a bad
// credential with HTTP 401 before the upgrade, and a good one starts the
// session authenticated: auth_ok is its first frame. Reauthentication
// then goes on in-band as always.
//
// Such a session starts at the head of the user's stream: resuming takes
// the auth frame's resume member. So a connection made while the client
// holds a position (it has talked to a server that keeps streams, or
// Options.Resume is set) authenticates with the auth frame instead, which
// every wsauth server accepts.

// credential is what an upgrade request carries to authenticate: nothing
// (the auth frame does), the token in the Authorization header, or a
// ticket in the query.
type credential struct {
	bearer string
	ticket string
}

func (cr credential) inBand() bool { return cr.bearer == "" && cr.ticket == "" }

// kind names the credential for logs: never its value.
func (cr credential) kind() string {
	switch {
	case cr.bearer != "":
		return "header"
	case cr.ticket != "":
		return "ticket"
	}
	return "auth frame"
}

// maxAnswerBody bounds what the client reads of the body of an HTTP
// answer: the ticket exchange's, a refused upgrade's. The server's are
// about 100 bytes.
const maxAnswerBody = 4 << 10

// maxReasonLen is the longest refusal reason the client keeps, as long as
// a close frame's reason may be.
const maxReasonLen = 123

// credentialFor returns how the next connection authenticates with tok:
// the ticket exchange (its errors are the connection attempt's) happens
// here, bounded by ctx.
func (c *Client) credentialFor(ctx context.Context, tok string) (credential, error) {
	if _, resuming := c.read.get(); resuming {
		return credential{}, nil
	}
	switch {
	case c.opts.TokenInHeader:
		return credential{bearer: tok}, nil
	case c.ticketURL != nil:
		t, err := c.exchange(ctx, tok)
		if err != nil {
			return credential{}, err
		}
		return credential{ticket: t}, nil
	}
	return credential{}, nil
}

// exchange trades tok for an upgrade ticket at Options.TicketURL: POST,
// the token as a bearer, the answer {"ticket":"…","expires":<unix s>}.
// A refusal is a *HandshakeError with Exchange set.
func (c *Client) exchange(ctx context.Context, tok string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.ticketURL.String(), nil)
	if err != nil {
		return "", fmt.Errorf("client: ticket exchange: %w", err)
	}
	// The server binds the ticket to the exchange's Origin: send the
	// upgrade's headers, Origin among them, with both requests.
	for k, v := range c.opts.Header {
		if k == "Host" && len(v) > 0 {
			req.Host = v[0]
			continue
		}
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", ctxErr(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBody))
	if err != nil {
		return "", ctxErr(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		he := newHandshakeError(resp, body, tok)
		he.Exchange = true
		return "", he
	}
	var answer struct {
		Ticket string `json:"ticket"`
		// Expires is not checked: the ticket is used at once, and the
		// server's clock, not the client's, decides.
		Expires int64 `json:"expires"`
	}
	if json.Unmarshal(body, &answer) != nil || answer.Ticket == "" {
		return "", fmt.Errorf("client: the ticket exchange answered no ticket: %w", protocol.ErrMalformed)
	}
	return answer.Ticket, nil
}

// upgradeURL returns the URL to open the socket at: the endpoint's, with
// ?ticket= added to its query (replacing a ticket already there).
func (c *Client) upgradeURL(ticket string) string {
	if ticket == "" {
		return c.url.String()
	}
	u := *c.url
	q := u.Query()
	if q.Has("ticket") {
		q.Set("ticket", ticket)
		u.RawQuery = q.Encode()
		return u.String()
	}
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += "ticket=" + url.QueryEscape(ticket)
	return u.String()
}

// parseTicketURL checks Options.TicketURL against the endpoint's URL: an
// absolute http(s) URL, https unless the endpoint itself is plain ws, so
// that the token never travels in the clear where the socket would not.
func parseTicketURL(raw string, endpoint *url.URL) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("client: bad Options.TicketURL: %w", err)
	}
	switch {
	case u.Host == "":
		return nil, errors.New("client: Options.TicketURL has no host")
	case u.Scheme == "https", u.Scheme == "http" && endpoint.Scheme == "ws":
		return u, nil
	case u.Scheme == "http":
		return nil, errors.New("client: Options.TicketURL must be https for a wss endpoint")
	}
	return nil, errors.New("client: Options.TicketURL scheme must be http or https")
}

// newTicketClient returns the HTTP client of the ticket exchange: the
// same TLS configuration as the socket, dialed directly as the socket is
// (no proxy), no redirects (the token goes nowhere else), and no idle
// connections: an exchange comes once per connection, minutes apart.
func newTicketClient(o Options) *http.Client {
	var d net.Dialer
	return &http.Client{
		Transport: &http.Transport{
			DialContext:       d.DialContext,
			TLSClientConfig:   o.TLSConfig.Clone(),
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// refusalReason returns the "error" member of a refusal's JSON body (the
// check that failed, e.g. "token expired"), cut to a close reason's
// length; "" if there is none, or if it repeats one of secrets (a hostile
// server echoing the token must not get it into the client's logs).
func refusalReason(body []byte, secrets ...string) string {
	var v struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	r := strings.ToValidUTF8(v.Error, "")
	for _, s := range secrets {
		if s != "" && strings.Contains(r, s) {
			return ""
		}
	}
	if len(r) > maxReasonLen {
		r = r[:maxReasonLen]
		for !utf8.ValidString(r) {
			r = r[:len(r)-1]
		}
	}
	return r
}
