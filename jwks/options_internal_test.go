package jwks

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestCapTransport covers bodies of unknown length (the IdP always sends
// Content-Length) and bodies that are not a JWK Set with keys.
func TestCapTransport(t *testing.T) {
	t.Parallel()
	set := `{"keys":[{"kty":"oct"}]}` // 24 bytes
	tests := []struct {
		name    string
		status  int
		body    string
		max     int64
		wantErr error
	}{
		{"set within the cap", 200, set, 100, nil},
		{"set exactly at the cap", 200, set, int64(len(set)), nil},
		{"one byte over", 200, set, int64(len(set)) - 1, errBodyTooLarge},
		{"huge body", 200, strings.Repeat("x", 5000), 100, errBodyTooLarge},
		{"empty object", 200, `{}`, 100, errNoKeys},
		{"null", 200, `null`, 100, errNoKeys},
		{"keys null", 200, `{"keys":null}`, 100, errNoKeys},
		{"no keys", 200, `{"keys":[]}`, 100, errNoKeys},
		{"keys not an array", 200, `{"keys":{}}`, 100, errNoKeys},
		{"garbage", 200, `<html>`, 100, errNoKeys},
		{"error status passes through", 503, `down`, 100, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := roundTripFunc(func(*http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: tt.status, ContentLength: -1,
					Body: io.NopCloser(strings.NewReader(tt.body))}, nil
			})
			tr := &capTransport{base: base, max: tt.max}
			resp, err := tr.RoundTrip(&http.Request{})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			got, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tt.body, string(got))
		})
	}
}

// TestCapClientRedirects: the client that fetches JWK Sets follows a
// redirect only within the origin (scheme, host, port) of the request
// that started the chain, compared case-insensitively and with default
// ports made explicit.
func TestCapClientRedirects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		via    []string // the chain so far, first the JWKSURL
		to     string
		wantOK bool
	}{
		{"same origin, other path", []string{"https://id.example/jwks"}, "https://id.example/keys", true},
		{"host case, explicit default port", []string{"https://id.example/jwks"}, "https://ID.Example:443/keys", true},
		{"http default port", []string{"http://id.example:80/jwks"}, "http://id.example/keys", true},
		{"IPv6 literal", []string{"https://[::1]:443/jwks"}, "https://[::1]/keys", true},
		{"second hop, still home", []string{"https://id.example/a", "https://id.example/b"}, "https://id.example/c", true},
		{"https to http", []string{"https://id.example/jwks"}, "http://id.example/jwks", false},
		{"https to http on port 443", []string{"https://id.example/jwks"}, "http://id.example:443/jwks", false},
		{"http to https", []string{"http://id.example/jwks"}, "https://id.example/jwks", false},
		{"other host", []string{"https://id.example/jwks"}, "https://evil.example/jwks", false},
		{"suffix host", []string{"https://id.example/jwks"}, "https://id.example.evil.example/jwks", false},
		{"subdomain", []string{"https://id.example/jwks"}, "https://cdn.id.example/jwks", false},
		{"other port", []string{"https://id.example/jwks"}, "https://id.example:8443/jwks", false},
		{"ten hops", slices.Repeat([]string{"https://id.example/a"}, 10), "https://id.example/b", false},
	}
	c, _ := capClient(nil, 1<<10)
	require.NotNil(t, c.CheckRedirect, "capClient sets a redirect policy")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var via []*http.Request
			for _, u := range tt.via {
				via = append(via, httptest.NewRequest(http.MethodGet, u, nil))
			}
			err := c.CheckRedirect(httptest.NewRequest(http.MethodGet, tt.to, nil), via)
			if tt.wantOK {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

// TestCapClientKeepsCallersCheckRedirect: capClient works on a copy, and
// the caller's own CheckRedirect runs after the origin check.
func TestCapClientKeepsCallersCheckRedirect(t *testing.T) {
	t.Parallel()
	refuse := errors.New("caller says no")
	var calls int
	caller := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { calls++; return refuse }}
	c, _ := capClient(caller, 1<<10)
	via := []*http.Request{httptest.NewRequest(http.MethodGet, "https://id.example/jwks", nil)}

	err := c.CheckRedirect(httptest.NewRequest(http.MethodGet, "https://id.example/keys", nil), via)
	require.ErrorIs(t, err, refuse)
	assert.Equal(t, 1, calls)
	err = c.CheckRedirect(httptest.NewRequest(http.MethodGet, "https://evil.example/keys", nil), via)
	require.Error(t, err)
	assert.NotErrorIs(t, err, refuse)
	assert.Equal(t, 1, calls, "another origin is refused before the caller is asked")
	assert.Error(t, caller.CheckRedirect(nil, nil), "the caller's client is not modified")
	assert.Nil(t, caller.Transport, "the caller's client is not modified")
}
